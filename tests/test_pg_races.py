"""Several servers on one PostgreSQL database: a scheduler step never overwrites what another server wrote.

Each test holds a job's row in one transaction (another server's CancelJob, attempt end, ...: it locks the row
and changes it, not committed yet) while a scheduler step runs on a second connection, in a thread. The test
waits until that step either finished or is blocked on the held row (seen in `pg_locks`), then commits the
first transaction and checks that the other server's write stands. Before the scheduler's reads locked the rows
they change, the step read the old row, waited in its UPDATE, and then wrote its stale decision over the
committed one (a FAILED job became RUNNABLE again). Two more tests check that an attempt's start or end
reported by a server the job is no longer assigned to (same attempt number) is not recorded.

SQLite has one server per database and runs every transaction on one thread: there is no such race to test.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from batchd.config import Settings
from batchd.domain import jobs as J
from batchd.scheduler import arrays, lifecycle
from batchd.scheduler.scheduler import Scheduler
from batchd.scheduler.settle import Started
from batchd.store import jobs as store
from batchd.store.db import Database
from batchd.store.schema import events
from conftest import TEST_STORE, wait_for

pytestmark = pytest.mark.skipif(
    TEST_STORE != "postgresql",
    reason="races between servers need PostgreSQL: SQLite has one server and one writer (BATCHD_TEST_STORE)")

ACCOUNT, REGION = "123456789012", "us-east-1"
QUEUE = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/q"
CE = f"arn:aws:batch:{REGION}:{ACCOUNT}:compute-environment/ce"


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[Database, Database, str]]:
    """Two connections to one fresh database: the scheduling server's and another server's."""
    from pgtest import fresh_database

    url = fresh_database()
    first, second = Database(url), Database(url)
    first.migrate()
    try:
        yield first, second, url
    finally:
        first.close()
        second.close()


def _scheduler(db: Database, tmp_path: Path) -> Scheduler:
    """A scheduler on `db` that is not started (no loop, no cluster traffic): its steps are called directly."""
    settings = Settings(data_dir=tmp_path / "data", server_id="scheduling-server")
    return Scheduler(SimpleNamespace(settings=settings, executor=None, db=db, data_dir=tmp_path / "data"))


def _job(**extra: Any) -> dict[str, Any]:
    row = {
        "id": str(uuid.uuid4()), "account": ACCOUNT, "region": REGION, "queue_arn": QUEUE, "name": "j",
        "status": J.SUBMITTED, "created_at": 1000, "jd_arn": f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/jd:1",
        "spec": {"jobDefinitionName": "jd", "container": {"image": "busybox", "command": ["true"]}}, "runtime": {},
    }
    row.update(extra)
    return row


def _insert(db: Database, *rows: dict[str, Any]) -> None:
    with db.tx() as conn:
        store.insert_jobs(conn, list(rows))


def _backend_pid(db: Database) -> int:
    db.conn.commit()  # nothing open, so the step starts its own transaction
    return db.conn.connection.driver_connection.info.backend_pid


def _waits_for_a_lock(url: str, pid: int) -> bool:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
        return c.execute("SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", (pid,)).fetchone() is not None


class Other:
    """Another server's write on its own connection: `first` runs in its transaction before the scheduler step
    starts, `then` (when given) once the step finished or waits for a row that `first` holds; then it commits."""

    def __init__(self, db: Database, first: Callable[[Any], None], then: Callable[[Any], None] | None = None):
        self.db, self.first, self.then = db, first, then


def _race(scheduling: Database, url: str, step: Callable[[], object], other: Other) -> None:
    pid = _backend_pid(scheduling)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            step()
        except BaseException as exc:  # noqa: BLE001 - raised again below, in the test's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="scheduler-step", daemon=True)
    with other.db.tx() as conn:
        other.first(conn)
        thread.start()
        wait_for(lambda: not thread.is_alive() or _waits_for_a_lock(url, pid),
                 message="the scheduler step to finish or to wait for a row the other server holds")
        if other.then is not None:
            other.then(conn)
    thread.join(timeout=120)
    assert not thread.is_alive(), "the scheduler step never finished"
    if failure:
        raise failure[0]


def _events_of(db: Database, job_id: str) -> list[str]:
    db.conn.commit()
    rows = db.conn.execute(select(events.c.detail).where(events.c.job_id == job_id).order_by(events.c.seq)).all()
    return [(orjson.loads(r.detail) if isinstance(r.detail, str | bytes) else r.detail)["status"] for r in rows]


def _stored(db: Database, job_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job's row and its stored DescribeJobs record, as committed."""
    db.conn.commit()
    row = store.get(db.conn, job_id)
    [record] = store.describe_many(db.conn, ACCOUNT, REGION, [job_id])
    return row, orjson.loads(record) if isinstance(record, str | bytes) else J.render_detail(record)


def _cancel(db: Database, job_id: str, reason: str = "stopped by the user") -> Other:
    """CancelJob as another server serves it: the row locked, then the seed's rules."""
    def write(conn: Any) -> None:
        row = store.get_for_update(conn, job_id)
        assert lifecycle.cancel(conn, row, reason, J.now_ms())

    return Other(db, write)


def test_a_job_cancelled_by_another_server_stays_failed_when_submitted_jobs_move_on(two_servers, tmp_path):
    scheduling, other, url = two_servers
    job = _job()
    _insert(scheduling, job)
    sched = _scheduler(scheduling, tmp_path)
    _race(scheduling, url, lambda: sched._advance_submitted(J.now_ms()), _cancel(other, job["id"]))
    row, record = _stored(scheduling, job["id"])
    assert (row["status"], row["status_reason"]) == (J.FAILED, "stopped by the user")
    assert record["status"] == J.FAILED
    assert _events_of(scheduling, job["id"]) == [J.FAILED]


def test_an_attempt_ended_by_its_server_is_not_overwritten_by_the_timeout(two_servers, tmp_path):
    """The attempt of a RUNNING job ends on its server while the scheduling server marks it timed out."""
    scheduling, other, url = two_servers
    job = _job(status=J.RUNNING, attempt=1, ce_arn=CE, owner="running-server", started_at=2000, deadline_at=3000,
               runtime={"container": {"logStreamName": "jd/default/x"}})
    _insert(scheduling, job)
    sched = _scheduler(scheduling, tmp_path)
    sched._timeouts = [(3000, job["id"], 1)]

    def ended(conn: Any) -> None:
        row = store.get_for_update(conn, job["id"])
        attempts = [{"container": {"exitCode": 1}, "statusReason": J.REASON_EXITED, "stoppedAt": 2500}]
        store.save(conn, row, {"status": J.FAILED, "status_reason": J.REASON_EXITED, "stopped_at": 2500,
                               "runtime": {"attempts": attempts}}, 2500)

    _race(scheduling, url, lambda: sched._fire_timeouts(J.now_ms()), Other(other, ended))
    row, record = _stored(scheduling, job["id"])
    assert row["status"] == J.FAILED
    assert len(row["runtime"]["attempts"]) == 1 and "timedOut" not in row["runtime"]
    assert record["status"] == J.FAILED and len(record["attempts"]) == 1


def test_a_job_cancelled_by_another_server_keeps_its_reason_when_its_queue_is_deleted(two_servers, tmp_path):
    scheduling, other, url = two_servers
    job, waiting = _job(), _job(status=J.PENDING, pending_deps=1)
    _insert(scheduling, job, waiting)
    with scheduling.tx() as conn:
        store.insert_deps(conn, [{"job_id": waiting["id"], "depends_on": job["id"], "type": None}])
    sched = _scheduler(scheduling, tmp_path)
    _race(scheduling, url, lambda: sched.on_queue_deleted(QUEUE), _cancel(other, job["id"]))
    row, record = _stored(scheduling, job["id"])
    assert (row["status"], row["status_reason"]) == (J.FAILED, "stopped by the user")
    assert record["statusReason"] == "stopped by the user"
    assert _events_of(scheduling, job["id"]) == [J.FAILED]  # failed once, so it released its dependent once
    assert store.get(scheduling.conn, waiting["id"])["status"] == J.FAILED


def test_a_start_is_not_recorded_for_a_job_given_to_another_server_meanwhile(two_servers, tmp_path):
    """A server thought dead records the start of an attempt the scheduling server has given to another server
    since (same attempt number): the start must not be recorded, so that its held process never runs."""
    scheduling, _other, _url = two_servers
    job = _job(status=J.STARTING, attempt=1, ce_arn=CE, owner="another-server")
    _insert(scheduling, job)
    late = _scheduler(scheduling, tmp_path)  # server id "scheduling-server": not the job's owner any more
    started = Started(job["id"], 1, {"pid": 1}, "jd/default/x")
    assert late._settle_batch([started]) == set()
    row, _ = _stored(scheduling, job["id"])
    assert (row["status"], row["owner"]) == (J.STARTING, "another-server")


def _ends_on_another_server(db: Database, job_id: str, parent_id: str) -> Other:
    """A child's attempt ends on its server, in the order every end takes its locks: the child, what waits on
    it, then (once the scheduler step ran or waits) its array parent."""
    def first(conn: Any) -> None:
        row = store.get_for_update(conn, job_id)
        store.save(conn, row, {"status": J.SUCCEEDED, "stopped_at": 30}, 30)
        lifecycle._release_dependents(conn, row, 30)

    return Other(db, first, lambda conn: lifecycle.refresh_parent(conn, parent_id, 30))


def _running(db: Database, job_id: str) -> None:
    with db.tx() as conn:
        row = store.get_for_update(conn, job_id)
        store.save(conn, row, {"status": J.RUNNING, "pending_deps": 0, "attempt": 1, "owner": "running-server"}, 20)


def _array(size: int, depends_on: list[dict[str, Any]]) -> dict[str, Any]:
    return _job(array_size=size, spec={"jobDefinitionName": "jd", "container": {"command": ["true"]},
                                       "dependsOn": depends_on})


def test_a_sequential_child_created_while_its_predecessor_ends_on_another_server_is_released(two_servers, tmp_path):
    """The scheduler creates the next batch of a SEQUENTIAL array while the last child of the previous batch
    ends on another server: the new child sees it ended, or is released by it; it never waits forever."""
    scheduling, other, url = two_servers
    parent = _array(arrays.CHILD_BATCH + 1, [{"type": "SEQUENTIAL"}])
    _insert(scheduling, parent)
    assert arrays.spawn_children(scheduling, 10) is True  # the first batch: child 0 RUNNABLE, the rest wait
    last = f"{parent['id']}:{arrays.CHILD_BATCH - 1}"
    _running(scheduling, last)
    _race(scheduling, url, lambda: arrays.spawn_children(scheduling, 30),
          _ends_on_another_server(other, last, parent["id"]))
    newest, _ = _stored(scheduling, f"{parent['id']}:{arrays.CHILD_BATCH}")
    assert (newest["status"], newest["pending_deps"]) == (J.RUNNABLE, 0)


def test_an_n_to_n_child_created_while_its_partner_ends_on_another_server_is_released(two_servers, tmp_path):
    scheduling, other, url = two_servers
    first = _array(2, [])
    _insert(scheduling, first)
    while arrays.spawn_children(scheduling, 10):
        pass
    _running(scheduling, f"{first['id']}:0")
    second = _array(2, [{"jobId": first["id"], "type": "N_TO_N"}])
    _insert(scheduling, second)
    _race(scheduling, url, lambda: arrays.spawn_children(scheduling, 30),
          _ends_on_another_server(other, f"{first['id']}:0", first["id"]))
    child, _ = _stored(scheduling, f"{second['id']}:0")
    assert (child["status"], child["pending_deps"]) == (J.RUNNABLE, 0)


def _queue_and_definition(db: Database) -> None:
    """A job queue and a job definition, as their Create/Register operations store them."""
    from batchd.store import resources

    queue_arn = QUEUE
    jd_arn = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/jd:1"
    with db.tx() as conn:
        resources.insert_resource(conn, "job-queue", ACCOUNT, REGION, "q", queue_arn, {
            "jobQueueName": "q", "jobQueueArn": queue_arn, "state": "ENABLED", "status": "VALID", "priority": 1,
            "computeEnvironmentOrder": []})
        resources.insert_job_definition(conn, ACCOUNT, REGION, "jd", 1, jd_arn, {
            "jobDefinitionName": "jd", "jobDefinitionArn": jd_arn, "revision": 1, "status": "ACTIVE",
            "type": "container", "containerProperties": {"image": "busybox", "command": ["true"]}})


def test_a_job_submitted_while_its_dependency_ends_on_another_server_is_released(two_servers, tmp_path):
    """SubmitJob counts the dependency unfinished while its end, on another server, finds nothing waiting on it
    yet: without a lock between the two, the new job would wait forever."""
    import asyncio

    from batchd.api.registry import RequestContext
    from batchd.handlers.jobs import submit_job

    scheduling, other, url = two_servers
    _queue_and_definition(scheduling)
    dep = _job(status=J.RUNNING, attempt=1, owner="running-server")
    _insert(scheduling, dep)
    service = SimpleNamespace(db=scheduling, scheduler=SimpleNamespace(notify_jobs=lambda runnable_in=None: None))
    ctx = RequestContext(ACCOUNT, REGION, "request-1", service)
    submitted: list[str] = []

    def submit() -> None:
        reply = asyncio.run(submit_job(ctx, {"jobName": "after", "jobQueue": "q", "jobDefinition": "jd",
                                             "dependsOn": [{"jobId": dep["id"]}]}))
        submitted.append(reply["jobId"])

    def ends(conn: Any) -> None:
        row = store.get_for_update(conn, dep["id"])
        store.save(conn, row, {"status": J.SUCCEEDED, "stopped_at": 30}, 30)
        lifecycle.finished(conn, row, 30)

    _race(scheduling, url, submit, Other(other, ends))
    sched = _scheduler(scheduling, tmp_path)
    sched._advance_submitted(J.now_ms())
    job, _ = _stored(scheduling, submitted[0])
    assert (job["status"], job["pending_deps"]) == (J.RUNNABLE, 0)


def test_a_head_cancelled_by_another_server_keeps_its_reason_when_it_fits_nowhere(two_servers, tmp_path):
    """The head of a queue needs more than any compute environment has: the scheduler notes why it waits, but
    not over the reason of a CancelJob that another server is writing at that moment."""
    scheduling, other, url = two_servers
    job = _job(status=J.RUNNABLE, runnable_at=1000, vcpus=4.0)
    _insert(scheduling, job)
    sched = _scheduler(scheduling, tmp_path)
    ce = {"computeEnvironmentArn": CE, "computeEnvironmentName": "ce", "type": "MANAGED", "state": "ENABLED",
          "status": "VALID", "computeResources": {"maxvCpus": 1}}
    queue = {"jobQueueArn": QUEUE, "jobQueueName": "q", "priority": 1,
             "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": CE}]}
    sched._resources = ([queue], {CE: ce})
    _race(scheduling, url, lambda: sched._dispatch(J.now_ms()), _cancel(other, job["id"]))
    row, record = _stored(scheduling, job["id"])
    assert (row["status"], row["is_cancelled"], row["status_reason"]) == (J.RUNNABLE, True, "stopped by the user")
    assert record["statusReason"] == "stopped by the user"


def test_an_end_is_not_recorded_for_a_job_given_to_another_server_meanwhile(two_servers, tmp_path):
    """The same server's attempt could not start (say, the executor failed) after the job was given to another
    server under the same attempt number: that server's attempt is not ended by it."""
    from batchd.executors.base import AttemptExit
    from batchd.scheduler.settle import Ended

    scheduling, _other, _url = two_servers
    job = _job(status=J.STARTING, attempt=1, ce_arn=CE, owner="another-server")
    _insert(scheduling, job)
    late = _scheduler(scheduling, tmp_path)
    late._settle_batch([Ended(job["id"], 1, AttemptExit(None, "CannotStartContainerError: no such file"))])
    row, _ = _stored(scheduling, job["id"])
    assert (row["status"], row["owner"]) == (J.STARTING, "another-server")
    late._settle_batch([Ended(job["id"], 1, AttemptExit(None, "Host terminated."), retry=False,
                              ran_on="another-server")])  # the scheduling server settling a dead server's job
    row, _ = _stored(scheduling, job["id"])
    assert (row["status"], row["status_reason"]) == (J.FAILED, "Host terminated.")
