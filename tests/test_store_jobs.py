"""store/jobs.py: the stored DescribeJobs record (`detail`) always says what the row says.

Run against the real store (SQLite, or PostgreSQL with BATCHD_TEST_STORE=postgresql): every write path either
rewrites the record or clears it, and DescribeJobs' read (`describe_many`) renders a cleared one from the row.
"""

from __future__ import annotations

import uuid

import orjson
import pytest

from batchd.domain import jobs as J
from batchd.store import db as dbmod
from batchd.store import jobs as store
from batchd.store import resources
from conftest import TEST_STORE

ACCOUNT, REGION = "123456789012", "us-east-1"
QUEUE = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/q"


@pytest.fixture
def database(tmp_path):
    if TEST_STORE == "postgresql":
        from pgtest import fresh_database

        url = fresh_database()
    else:
        url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    d = dbmod.Database(url)
    d.migrate()
    yield d
    d.close()


def _job(**extra) -> dict:
    row = {
        "id": str(uuid.uuid4()), "account": ACCOUNT, "region": REGION, "queue_arn": QUEUE, "name": "j",
        "status": J.RUNNABLE, "created_at": 1000, "runnable_at": 1000,
        "jd_arn": f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/jd:1",
        "spec": {"container": {"image": "busybox", "command": ["true"]}, "tags": {"a": "1"}}, "runtime": {},
    }
    row.update(extra)
    return row


def _described(d: dbmod.Database, job_id: str) -> dict:
    """What DescribeJobs answers for one job: the stored record, or the row rendered when there is none."""
    [found] = store.describe_many(d.conn, ACCOUNT, REGION, [job_id])
    return orjson.loads(found) if isinstance(found, str | bytes) else J.render_detail(found)


def _fresh(d: dbmod.Database, job_id: str) -> dict:
    return J.render_detail(store.get(d.conn, job_id))


def test_insert_stores_the_record_and_its_event(database):
    row = _job()
    with database.tx() as tx:
        store.insert_jobs(tx, [row], event_at=1000)
    [stored] = store.describe_many(database.conn, ACCOUNT, REGION, [row["id"]])
    assert isinstance(stored, str | bytes)
    assert orjson.loads(stored) == _fresh(database, row["id"])
    [event] = store.read_events(database.conn, ACCOUNT, REGION, 0, 10, row["id"])
    detail = event["detail"] if isinstance(event["detail"], dict) else orjson.loads(event["detail"])
    assert detail == orjson.loads(stored)


def test_every_save_rewrites_the_record(database):
    row = _job()
    with database.tx() as tx:
        store.insert_jobs(tx, [row])
    with database.tx() as tx:
        got = store.get_for_update(tx, row["id"])
        store.save(tx, got, {"status": J.STARTING, "attempt": 1}, 2000)
        store.save(tx, got, {"status": J.RUNNING, "started_at": 2001,
                             "runtime": {"container": {"logStreamName": "jd/default/x"}}}, 2001)
    described = _described(database, row["id"])
    assert described["status"] == "RUNNING" and described["startedAt"] == 2001
    assert described["container"]["logStreamName"] == "jd/default/x"
    assert described == _fresh(database, row["id"])


def test_bulk_cancel_of_array_children_clears_the_records(database):
    parent = _job(status=J.PENDING, array_size=2, runnable_at=None)
    kids = [_job(id=f"{parent['id']}:{i}", parent_id=parent["id"], array_index=i, array_size=2) for i in range(2)]
    with database.tx() as tx:
        store.insert_jobs(tx, [parent, *kids])
        assert store.mark_children_cancelled(tx, parent["id"], "stop") == 2
    for kid in kids:
        described = _described(database, kid["id"])
        assert described["isCancelled"] is True and described["statusReason"] == "stop"
        assert described == _fresh(database, kid["id"])
    with database.tx() as tx:
        failed = store.fail_cancelled_runnable(tx, [k["id"] for k in kids], 3000)
    assert len(failed) == 2
    for kid in kids:
        [stored] = store.describe_many(database.conn, ACCOUNT, REGION, [kid["id"]])
        assert isinstance(stored, str | bytes)  # written again by the FAILED change
        assert orjson.loads(stored)["status"] == "FAILED"
        assert orjson.loads(stored) == _fresh(database, kid["id"])


def test_tagging_a_job_is_seen_by_describe(database):
    row = _job()
    with database.tx() as tx:
        store.insert_jobs(tx, [row])
        assert resources.set_tags(tx, J.job_arn(QUEUE, row["id"]), {"b": "2"})
    assert _described(database, row["id"])["tags"] == {"b": "2"}


def test_unfinished_array_parent_and_other_accounts(database):
    parent = _job(status=J.PENDING, array_size=3, runnable_at=None)
    other = _job(account="210987654321")
    with database.tx() as tx:
        store.insert_jobs(tx, [parent, other])
    [found] = store.describe_many(database.conn, ACCOUNT, REGION, [parent["id"], other["id"], "missing"])
    assert isinstance(found, dict) and found["id"] == parent["id"]  # rendered at read time (statusSummary)


def test_cached_records_never_outlive_a_write(database):
    """With SQLite, DescribeJobs' records are cached in the server; every write path forgets the jobs it
    touches. Read first (filling the cache), write, read again: always what the row says now."""
    parent = _job(status=J.PENDING, array_size=2, runnable_at=None)
    kids = [_job(id=f"{parent['id']}:{i}", parent_id=parent["id"], array_index=i, array_size=2) for i in range(2)]
    plain, other = _job(), _job()
    with database.tx() as tx:
        store.insert_jobs(tx, [parent, *kids, plain, other])

    def check(job_id: str) -> dict:
        described = _described(database, job_id)
        assert described == _fresh(database, job_id)
        return described

    for job in (*kids, plain, other):
        check(job["id"])  # cached now (SQLite)
    with database.tx() as tx:
        row = store.get_for_update(tx, plain["id"])
        store.save(tx, row, {"status_reason": "saved"}, 2000)
    assert check(plain["id"])["statusReason"] == "saved"
    with database.tx() as tx:
        rows = store.get_many_for_update(tx, [plain["id"], other["id"]])
        store.save_many(tx, [(rows[plain["id"]], {"status": J.STARTING}), (rows[other["id"]], {"status": J.STARTING})],
                        2100)
    assert check(plain["id"])["status"] == check(other["id"])["status"] == J.STARTING
    with database.tx() as tx:
        store.mark_children_cancelled(tx, parent["id"], "stop")
    assert all(check(k["id"])["isCancelled"] for k in kids)
    with database.tx() as tx:
        store.fail_cancelled_runnable(tx, [k["id"] for k in kids], 3000)
    assert all(check(k["id"])["status"] == J.FAILED for k in kids)
    with database.tx() as tx:
        resources.set_tags(tx, J.job_arn(QUEUE, plain["id"]), {"c": "3"})
    assert check(plain["id"])["tags"] == {"c": "3"}


def test_a_read_inside_a_write_transaction_does_not_fill_the_cache(database):
    row = _job()
    with database.tx() as tx:
        store.insert_jobs(tx, [row])
    try:
        with database.tx() as tx:
            current = store.get_for_update(tx, row["id"])
            store.save(tx, current, {"status_reason": "never committed"}, 2000)
            store.describe_many(tx, ACCOUNT, REGION, [row["id"]])  # sees the uncommitted change
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert "statusReason" not in _described(database, row["id"])
