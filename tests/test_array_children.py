"""Array children exist as soon as their parent leaves SUBMITTED, also while the parent waits on a dependency.

Dependencies are held open with file gates (jobkit.Gate), so everything checked "before the dependency ends"
is checked while it provably still runs. Children that must never start run a command that would leave a
marker file; markers are looked at only once every child is finished, when nothing can start them any more.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest

from conftest import TEST_STORE, wait_for
from jobkit import describe, make_ce, make_queue, register, submit, wait_status

SUMMARY_KEYS = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
ZEROS = dict.fromkeys(SUMMARY_KEYS, 0)


def _queue(batch, vcpus: int = 4, state: str = "ENABLED") -> str:
    return make_queue(batch, [make_ce(batch, vcpus=vcpus, state=state)])


def _summary(job: dict) -> dict[str, int]:
    return job["arrayProperties"].get("statusSummary") or {}


def _many(batch, ids: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for i in range(0, len(ids), 100):
        out.update({j["jobId"]: j for j in batch.describe_jobs(jobs=ids[i : i + 100])["jobs"]})
    return out


def _list_all(batch, **kw) -> list[dict]:
    out, token = [], None
    while True:
        page = batch.list_jobs(**kw, maxResults=1000, **({"nextToken": token} if token else {}))
        out += page["jobSummaryList"]
        token = page.get("nextToken")
        if not token:
            return out


def _health(srv) -> dict:
    with urllib.request.urlopen(srv.url + "/health", timeout=10) as resp:
        return json.load(resp)


def _never_started(job: dict) -> None:
    assert job["attempts"] == [], job["attempts"]
    assert "startedAt" not in job
    assert "logStreamName" not in (job.get("container") or {})


def _marking_jd(batch, marks: Path, then: str = "true", **kw) -> str:
    """A definition whose job touches `marks/<array index>` when it runs."""
    marks.mkdir(exist_ok=True)
    return register(batch, ["sh", "-c", f"touch {marks}/$AWS_BATCH_JOB_ARRAY_INDEX; {then}"], **kw)


def _left_submitted(batch, parent: str, timeout: float = 60, interval: float = 0.05) -> dict:
    """The parent's first record past SUBMITTED."""
    def past() -> dict | None:
        job = describe(batch, parent)
        return None if job["status"] == "SUBMITTED" else job

    return wait_for(past, timeout=timeout, interval=interval, message=f"{parent} past SUBMITTED")


def test_children_of_a_waiting_parent_exist_pending_counted_and_listed(batch, gates, tmp_path):
    queue = _queue(batch)
    gate = gates()
    dep = submit(batch, queue, register(batch, gate.command()))
    marks = tmp_path / "kids"
    parent = submit(batch, queue, _marking_jd(batch, marks), arrayProperties={"size": 4}, dependsOn=[{"jobId": dep}])
    kids = [f"{parent}:{i}" for i in range(4)]
    wait_status(batch, dep, "RUNNING")
    job = _left_submitted(batch, parent)
    # All of this while the dependency still runs (it waits for the gate).
    assert job["status"] == "PENDING"
    assert _summary(job) == {**ZEROS, "PENDING": 4}
    states = _many(batch, kids)
    assert sorted(states) == sorted(kids)
    for i, kid in enumerate(kids):
        assert states[kid]["status"] == "PENDING" and states[kid]["arrayProperties"] == {"index": i}
        _never_started(states[kid])
    listed = _list_all(batch, arrayJobId=parent, jobStatus="PENDING")
    assert sorted(s["jobId"] for s in listed) == sorted(kids)
    assert describe(batch, dep)["status"] == "RUNNING"
    gate.open()
    job = wait_status(batch, parent, ("SUCCEEDED", "FAILED"))
    assert job["status"] == "SUCCEEDED", job.get("statusReason")
    dep_stopped = describe(batch, dep)["stoppedAt"]
    done = _many(batch, kids)
    assert all(done[k]["status"] == "SUCCEEDED" and done[k]["startedAt"] >= dep_stopped for k in kids)
    assert sorted(p.name for p in marks.iterdir()) == ["0", "1", "2", "3"]


@pytest.mark.parametrize("dep_exit", [0, 1], ids=["dependency-succeeds", "dependency-fails"])
def test_cancelling_a_waiting_parent_cancels_each_child_and_none_starts(batch, gates, tmp_path, dep_exit):
    queue = _queue(batch)
    gate = gates()
    dep = submit(batch, queue, register(batch, gate.command(f"exit {dep_exit}")))
    marks = tmp_path / "kids"
    parent = submit(batch, queue, _marking_jd(batch, marks), arrayProperties={"size": 3}, dependsOn=[{"jobId": dep}])
    kids = [f"{parent}:{i}" for i in range(3)]
    assert _summary(_left_submitted(batch, parent)) == {**ZEROS, "PENDING": 3}
    batch.cancel_job(jobId=parent, reason="R4: waiting parent")
    # Each child is cancelled by its own rule (R3: it waits for the dependency); the parent waits for them.
    p = describe(batch, parent)
    assert p["status"] == "PENDING" and p["isCancelled"] is True and p["statusReason"] == "R4: waiting parent"
    for kid in _many(batch, kids).values():
        assert kid["status"] == "PENDING" and kid["isCancelled"] is True
        assert kid["statusReason"] == "R4: waiting parent"
    assert describe(batch, dep)["status"] == "RUNNING"
    gate.open()
    job = wait_status(batch, parent, ("SUCCEEDED", "FAILED"))
    assert job["status"] == "FAILED" and job["statusReason"] == "R4: waiting parent" and job["isCancelled"] is True
    assert _summary(job) == {**ZEROS, "FAILED": 3}
    dep_job = describe(batch, dep)
    assert dep_job["status"] == ("SUCCEEDED" if dep_exit == 0 else "FAILED")
    for kid in _many(batch, kids).values():
        assert kid["status"] == "FAILED" and kid["statusReason"] == "R4: waiting parent"
        assert kid["isCancelled"] is True
        _never_started(kid)
        assert dep_job["stoppedAt"] <= kid["stoppedAt"] <= job["stoppedAt"]
    assert list(marks.iterdir()) == []


def test_a_failed_dependency_fails_each_child_then_the_parent_and_what_waits_on_it(batch, gates, tmp_path):
    queue = _queue(batch)
    gate = gates()
    dep = submit(batch, queue, register(batch, gate.command("exit 1")))
    a = submit(batch, queue, _marking_jd(batch, tmp_path / "a"), arrayProperties={"size": 3},
               dependsOn=[{"jobId": dep}])
    b = submit(batch, queue, _marking_jd(batch, tmp_path / "b"), arrayProperties={"size": 3},
               dependsOn=[{"jobId": a, "type": "N_TO_N"}])
    after_mark = tmp_path / "after"
    after = submit(batch, queue, register(batch, ["touch", str(after_mark)]), dependsOn=[{"jobId": a}])
    assert _summary(_left_submitted(batch, a)) == {**ZEROS, "PENDING": 3}
    assert _summary(_left_submitted(batch, b)) == {**ZEROS, "PENDING": 3}
    gate.open()
    done = wait_status(batch, after, ("SUCCEEDED", "FAILED"))
    assert done["status"] == "FAILED" and done["statusReason"] == "Dependent Job failed"
    _never_started(done)
    parent_a = wait_status(batch, a, ("SUCCEEDED", "FAILED"))
    assert parent_a["status"] == "FAILED" and parent_a["statusReason"] == "Dependent Job failed"
    assert _summary(parent_a) == {**ZEROS, "FAILED": 3}
    parent_b = wait_status(batch, b, ("SUCCEEDED", "FAILED"))
    assert parent_b["status"] == "FAILED" and parent_b["statusReason"] == "Array Child Job failed"
    kids = _many(batch, [f"{p}:{i}" for p in (a, b) for i in range(3)])
    assert len(kids) == 6
    for kid in kids.values():
        assert kid["status"] == "FAILED" and kid["statusReason"] == "Dependent Job failed"
        _never_started(kid)
    assert max(kids[f"{a}:{i}"]["stoppedAt"] for i in range(3)) <= parent_a["stoppedAt"]
    assert not list((tmp_path / "a").iterdir()) and not list((tmp_path / "b").iterdir())
    assert not after_mark.exists()


def test_a_failed_dependency_fails_each_child_of_a_sequential_array_one_cancelled_too(batch, gates, tmp_path):
    queue = _queue(batch)
    gate = gates()
    dep = submit(batch, queue, register(batch, gate.command("exit 1")))
    marks = tmp_path / "kids"
    parent = submit(batch, queue, _marking_jd(batch, marks), arrayProperties={"size": 5},
                    dependsOn=[{"jobId": dep}, {"type": "SEQUENTIAL"}])
    assert _summary(_left_submitted(batch, parent)) == {**ZEROS, "PENDING": 5}
    batch.cancel_job(jobId=f"{parent}:2", reason="not the middle one")
    gate.open()
    job = wait_status(batch, parent, ("SUCCEEDED", "FAILED"))
    assert job["statusReason"] == "Dependent Job failed" and _summary(job) == {**ZEROS, "FAILED": 5}
    kids = _many(batch, [f"{parent}:{i}" for i in range(5)])
    reasons = [kids[f"{parent}:{i}"]["statusReason"] for i in range(5)]
    assert reasons == ["Dependent Job failed"] * 2 + ["not the middle one"] + ["Dependent Job failed"] * 2
    for kid in kids.values():
        _never_started(kid)
    assert list(marks.iterdir()) == []


def test_an_array_submitted_after_its_dependency_failed_gets_failed_children(batch, tmp_path):
    queue = _queue(batch)
    dep = submit(batch, queue, register(batch, ["false"]))
    assert wait_status(batch, dep, ("SUCCEEDED", "FAILED"))["status"] == "FAILED"
    marks = tmp_path / "kids"
    parent = submit(batch, queue, _marking_jd(batch, marks), arrayProperties={"size": 3}, dependsOn=[{"jobId": dep}])
    job = wait_status(batch, parent, ("SUCCEEDED", "FAILED"))
    assert job["statusReason"] == "Dependent Job failed" and _summary(job) == {**ZEROS, "FAILED": 3}
    kids = _many(batch, [f"{parent}:{i}" for i in range(3)])
    assert len(kids) == 3
    for kid in kids.values():
        assert kid["status"] == "FAILED" and kid["statusReason"] == "Dependent Job failed"
        _never_started(kid)
    assert list(marks.iterdir()) == []


def test_sequential_n_to_n_and_retries_behind_a_dependency(batch, gates, tmp_path):
    queue = _queue(batch, vcpus=6)
    gate = gates()
    dep = submit(batch, queue, register(batch, gate.command()))
    tries = tmp_path / "tries"
    tries.mkdir()
    # Each child of `a` fails its first attempt and succeeds its second.
    flaky = register(batch, ["sh", "-c", f"f={tries}/$AWS_BATCH_JOB_ARRAY_INDEX; test -e $f || {{ touch $f; exit 3; }}"],
                     retryStrategy={"attempts": 2})
    a = submit(batch, queue, flaky, arrayProperties={"size": 3}, dependsOn=[{"jobId": dep}, {"type": "SEQUENTIAL"}])
    b = submit(batch, queue, register(batch, ["true"]), arrayProperties={"size": 3},
               dependsOn=[{"jobId": a, "type": "N_TO_N"}])
    assert _summary(_left_submitted(batch, a)) == {**ZEROS, "PENDING": 3}
    assert _summary(_left_submitted(batch, b)) == {**ZEROS, "PENDING": 3}
    assert describe(batch, dep)["status"] == "RUNNING"
    gate.open()
    for parent in (a, b):
        job = wait_status(batch, parent, ("SUCCEEDED", "FAILED"))
        assert job["status"] == "SUCCEEDED", job.get("statusReason")
    dep_stopped = describe(batch, dep)["stoppedAt"]
    kids = _many(batch, [f"{p}:{i}" for p in (a, b) for i in range(3)])
    for i in range(3):
        ak, bk = kids[f"{a}:{i}"], kids[f"{b}:{i}"]
        assert len(ak["attempts"]) == 2 and ak["attempts"][0]["container"]["exitCode"] == 3
        assert ak["attempts"][0]["startedAt"] >= dep_stopped
        if i:
            assert ak["attempts"][0]["startedAt"] >= kids[f"{a}:{i - 1}"]["stoppedAt"]
        assert bk["startedAt"] >= ak["stoppedAt"]


def test_cancel_or_terminate_one_child_of_a_waiting_parent(batch, gates, tmp_path):
    queue = _queue(batch)
    gate = gates()
    dep = submit(batch, queue, register(batch, gate.command()))
    marks = tmp_path / "kids"
    parent = submit(batch, queue, _marking_jd(batch, marks), arrayProperties={"size": 3}, dependsOn=[{"jobId": dep}])
    _left_submitted(batch, parent)
    batch.cancel_job(jobId=f"{parent}:1", reason="not this one")
    batch.terminate_job(jobId=f"{parent}:2", reason="nor this one")
    for i, reason in ((1, "not this one"), (2, "nor this one")):
        kid = describe(batch, f"{parent}:{i}")
        assert kid["status"] == "PENDING" and kid["isCancelled"] is True and kid["statusReason"] == reason
    assert describe(batch, f"{parent}:0").get("isCancelled") is None
    gate.open()
    job = wait_status(batch, parent, ("SUCCEEDED", "FAILED"))
    assert job["status"] == "FAILED" and job["statusReason"] == "Array Child Job failed"
    assert _summary(job) == {**ZEROS, "SUCCEEDED": 1, "FAILED": 2}
    kids = _many(batch, [f"{parent}:{i}" for i in range(3)])
    assert kids[f"{parent}:0"]["status"] == "SUCCEEDED"
    for i, reason in ((1, "not this one"), (2, "nor this one")):
        assert kids[f"{parent}:{i}"]["status"] == "FAILED" and kids[f"{parent}:{i}"]["statusReason"] == reason
        _never_started(kids[f"{parent}:{i}"])
    assert sorted(p.name for p in marks.iterdir()) == ["0"]


# --- 10,000 children ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_10000_children_of_a_waiting_parent_exist_then_fail_with_their_dependency(make_server, gates):
    srv = make_server()
    batch = srv.client()
    queue = _queue(batch)
    gate = gates()
    dep = submit(batch, queue, register(batch, gate.command("exit 1")))
    parent = submit(batch, queue, register(batch, ["true"]), arrayProperties={"size": 10000},
                    dependsOn=[{"jobId": dep}])
    # The parent leaves SUBMITTED only once every child exists: the first time it is seen past SUBMITTED, all
    # 10,000 are there and counted.
    job = _left_submitted(batch, parent, timeout=300, interval=0.02)
    assert job["status"] == "PENDING"
    assert _summary(job) == {**ZEROS, "PENDING": 10000}
    assert describe(batch, dep)["status"] == "RUNNING"
    pending = _list_all(batch, arrayJobId=parent, jobStatus="PENDING")
    assert len({s["jobId"] for s in pending}) == len(pending) == 10000
    ends = _many(batch, [f"{parent}:0", f"{parent}:9999"])
    assert [ends[f"{parent}:{i}"]["status"] for i in (0, 9999)] == ["PENDING", "PENDING"]
    gate.open()
    job = wait_status(batch, parent, ("SUCCEEDED", "FAILED"), timeout=300)
    assert job["status"] == "FAILED" and job["statusReason"] == "Dependent Job failed"
    assert _summary(job) == {**ZEROS, "FAILED": 10000}
    failed = _list_all(batch, arrayJobId=parent, jobStatus="FAILED")
    assert len(failed) == 10000
    assert all(s["statusReason"] == "Dependent Job failed" and "startedAt" not in s for s in failed)


@pytest.mark.slow
def test_10000_children_released_when_their_dependency_succeeds_then_cancelled(make_server, gates):
    srv = make_server()
    batch = srv.client()
    gate = gates()
    dep = submit(batch, _queue(batch), register(batch, gate.command()))
    # The array's compute environment is disabled: released children stay RUNNABLE.
    queue = _queue(batch, vcpus=2, state="DISABLED")
    parent = submit(batch, queue, register(batch, ["true"]), arrayProperties={"size": 10000},
                    dependsOn=[{"jobId": dep}])
    job = _left_submitted(batch, parent, timeout=300, interval=0.02)
    assert _summary(job) == {**ZEROS, "PENDING": 10000}
    gate.open()
    wait_status(batch, dep, "SUCCEEDED")
    wait_for(lambda: _summary(describe(batch, parent)) == {**ZEROS, "RUNNABLE": 10000}, timeout=300,
             interval=0.2, message="10,000 RUNNABLE children")
    assert describe(batch, parent)["status"] == "PENDING"
    batch.cancel_job(jobId=parent, reason="no capacity anyway")
    job = wait_status(batch, parent, ("SUCCEEDED", "FAILED"), timeout=300)
    assert job["status"] == "FAILED" and job["statusReason"] == "no capacity anyway"
    assert _summary(job) == {**ZEROS, "FAILED": 10000}
    failed = _list_all(batch, arrayJobId=parent, jobStatus="FAILED")
    assert len(failed) == 10000 and all(s["statusReason"] == "no capacity anyway" for s in failed)


# --- restart in the middle of child creation -----------------------------------------------------------------


def _submit_and_create_one_batch(srv, params: dict) -> str:
    """SubmitJob through the real handler, then exactly one batch of children created by the real scheduler
    code, on the stopped server's store: the state a crash between two batches of child creation leaves."""
    import batchd.handlers  # noqa: F401  (registers the operations)
    from batchd.api.registry import HANDLERS, RequestContext
    from batchd.domain import jobs as J
    from batchd.scheduler import arrays
    from batchd.store import jobs as store
    from batchd.store.db import Database

    class _Scheduler:
        def notify_jobs(self, runnable_in: str | None = None) -> None:
            pass

    class _Service:
        def __init__(self, db: Database) -> None:
            self.db, self.scheduler = db, _Scheduler()

    db = Database(srv.db_url or f"sqlite:///{srv.data_dir / 'batchd.sqlite3'}")
    try:
        ctx = RequestContext("123456789012", "us-east-1", "test", _Service(db))
        parent = asyncio.run(HANDLERS["SubmitJob"](ctx, params))["jobId"]
        assert arrays.spawn_children(db, J.now_ms()) is True  # more to create
        row = store.get(db.conn, parent)
        assert row["status"] == "SUBMITTED" and row["runtime"]["childrenCreated"] == arrays.CHILD_BATCH
        assert store.child_status_counts(db.conn, parent) == {"PENDING": arrays.CHILD_BATCH}
    finally:
        db.close()
    return parent


@pytest.mark.slow
def test_restart_in_the_middle_of_child_creation_creates_each_child_once(make_server, gates):
    srv = make_server()
    batch = srv.client()
    queue = _queue(batch, vcpus=64)
    gate = gates()
    dep = submit(batch, queue, register(batch, gate.command()))
    jd = register(batch, ["true"])
    wait_status(batch, dep, "RUNNING")
    srv.stop()  # the dependency's process runs on; the restarted server adopts it
    parent = _submit_and_create_one_batch(srv, {"jobName": "arr", "jobQueue": queue, "jobDefinition": jd,
                                                "arrayProperties": {"size": 10000}, "dependsOn": [{"jobId": dep}]})
    srv.start(port=srv.port)
    batch = srv.client()
    job = _left_submitted(batch, parent, timeout=300, interval=0.02)
    assert job["status"] == "PENDING" and _summary(job) == {**ZEROS, "PENDING": 10000}
    listed = _list_all(batch, arrayJobId=parent, jobStatus="PENDING")
    assert len({s["jobId"] for s in listed}) == len(listed) == 10000
    assert describe(batch, dep)["status"] == "RUNNING"
    gate.open()
    job = wait_status(batch, parent, ("SUCCEEDED", "FAILED"), timeout=600)
    assert job["status"] == "SUCCEEDED", job.get("statusReason")
    assert _summary(job) == {**ZEROS, "SUCCEEDED": 10000}


# --- several servers (PostgreSQL) ----------------------------------------------------------------------------


@pytest.mark.skipif(TEST_STORE != "postgresql", reason="several servers share one PostgreSQL database")
def test_children_exist_when_submitted_through_a_server_that_does_not_schedule(make_server, gates, tmp_path):
    first = make_server(name="first")
    second = make_server(name="second", extra_args=["--db", first.db_url])
    servers = (first, second)
    wait_for(lambda: sum(_health(s)["scheduler"] for s in servers) == 1, message="one scheduler elected")
    leader, other = sorted(servers, key=lambda s: not _health(s)["scheduler"])
    submitter = other.client()  # only the scheduling server creates children: ask the other one
    queue = _queue(submitter)
    gate = gates()
    dep = submit(submitter, queue, register(submitter, gate.command()))
    marks = tmp_path / "kids"
    parent = submit(submitter, queue, _marking_jd(submitter, marks), arrayProperties={"size": 1500},
                    dependsOn=[{"jobId": dep}])
    for client in (leader.client(), submitter):
        job = _left_submitted(client, parent)
        assert job["status"] == "PENDING" and _summary(job) == {**ZEROS, "PENDING": 1500}
    pending = _list_all(submitter, arrayJobId=parent, jobStatus="PENDING")
    assert len({s["jobId"] for s in pending}) == 1500
    submitter.cancel_job(jobId=parent, reason="cancelled through the other server")
    gate.open()
    job = wait_status(submitter, parent, ("SUCCEEDED", "FAILED"), timeout=120)
    assert job["statusReason"] == "cancelled through the other server"
    assert _summary(job) == {**ZEROS, "FAILED": 1500}
    assert list(marks.iterdir()) == []


# --- the dependency decided while children are being created (on the store, step by step) -------------------


@pytest.mark.parametrize("outcome", ["SUCCEEDED", "FAILED"])
def test_dependency_decided_in_the_middle_of_child_creation(tmp_path, outcome):
    """The first batch of children is created gated; then the dependency finishes; the rest are created
    ungated (RUNNABLE, or FAILED), and the gated ones are released the same way: every child once."""
    from batchd.domain import jobs as J
    from batchd.scheduler import arrays, lifecycle
    from batchd.store import jobs as store
    from batchd.store.db import Database

    if TEST_STORE == "postgresql":
        from pgtest import fresh_database

        url = fresh_database()
    else:
        url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    db = Database(url)
    db.migrate()
    size = 2 * arrays.CHILD_BATCH + 500
    base = {
        "account": "123456789012", "region": "us-east-1", "name": "j", "created_at": 1,
        "queue_arn": "arn:aws:batch:us-east-1:123456789012:job-queue/q",
        "jd_arn": "arn:aws:batch:us-east-1:123456789012:job-definition/jd:1", "is_cancelled": False,
        "is_terminated": False, "attempt": 0, "vcpus": 1.0, "memory": 0, "gpus": 0, "pending_deps": 0,
        "spec": {"jobDefinitionName": "jd", "container": {"command": ["true"]}}, "runtime": {},
    }
    try:
        with db.tx() as conn:
            parent = {**base, "id": "p", "status": J.SUBMITTED, "array_size": size, "pending_deps": 1,
                      "spec": {**base["spec"], "dependsOn": [{"jobId": "dep"}]}}
            store.insert_jobs(conn, [{**base, "id": "dep", "status": J.RUNNING}, parent])
            store.insert_deps(conn, [{"job_id": "p", "depends_on": "dep", "type": None}])
        assert arrays.spawn_children(db, 10) is True
        assert store.child_status_counts(db.conn, "p") == {J.PENDING: arrays.CHILD_BATCH}
        with db.tx() as conn:
            dep = store.get(conn, "dep")
            store.save(conn, dep, {"status": outcome, "stopped_at": 20}, 20)
            lifecycle.finished(conn, dep, 20)
        while arrays.spawn_children(db, 30):
            pass
        row = store.get(db.conn, "p")
        kids = store.children(db.conn, "p")
        assert [k["array_index"] for k in kids] == list(range(size))
        if outcome == "SUCCEEDED":
            assert row["status"] == J.PENDING
            assert store.child_status_counts(db.conn, "p") == {J.RUNNABLE: size}
            assert all(k["pending_deps"] == 0 for k in kids)
        else:
            assert (row["status"], row["status_reason"]) == (J.FAILED, J.REASON_DEPENDENCY)
            assert store.child_status_counts(db.conn, "p") == {J.FAILED: size}
            assert {k["status_reason"] for k in kids} == {J.REASON_DEPENDENCY}
    finally:
        db.close()
