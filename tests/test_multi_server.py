"""Several batchd servers on one PostgreSQL database share the work (one scheduler, elected by lease)."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from conftest import wait_for
from jobkit import describe, make_ce, make_queue, register, submit, wait_status


@pytest.fixture
def pg_url():
    try:
        from pgtest import fresh_database

        return fresh_database()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL is not available here ({exc}); the multi-server tests need it")


def _health(srv) -> dict:
    with urllib.request.urlopen(srv.url + "/health", timeout=30) as resp:
        return json.load(resp)


def _pair(make_server, pg_url, **kw):
    a = make_server(name="a", extra_args=["--db", pg_url], **kw)
    b = make_server(name="b", extra_args=["--db", pg_url], **kw)
    wait_for(lambda: sum(_health(s)["scheduler"] for s in (a, b)) == 1, message="one scheduler elected")
    return a, b


@pytest.mark.slow
def test_two_servers_share_one_view_and_survive_the_scheduler_dying(make_server, pg_url):
    a, b = _pair(make_server, pg_url)
    ba, bb = a.client(), b.client()
    assert _health(a)["serverId"] != _health(b)["serverId"]
    ce = make_ce(ba, vcpus=2)
    queue = make_queue(ba, [ce])
    quick = register(ba, ["sh", "-c", "echo hi"])
    slow = register(ba, ["sleep", "30"])

    # Submit through A, describe through B.
    job = submit(ba, queue, quick)
    assert wait_status(bb, job, ("SUCCEEDED", "FAILED"))["status"] == "SUCCEEDED"
    # Cancel through B a job queued behind a full CE (2 vCPUs held by two sleepers).
    sleepers = [submit(ba, queue, slow) for _ in range(2)]
    for s in sleepers:
        wait_status(bb, s, "RUNNING")
    queued = submit(ba, queue, quick)
    wait_status(bb, queued, "RUNNABLE")
    bb.cancel_job(jobId=queued, reason="cancelled via B")
    done = wait_status(ba, queued, "FAILED", timeout=10)
    assert done["statusReason"] == "cancelled via B" and done.get("attempts") == []
    for s in sleepers:
        bb.terminate_job(jobId=s, reason="stop")
    for s in sleepers:
        assert wait_status(ba, s, "FAILED", timeout=20)["statusReason"] == "stop"

    # Kill the scheduler server with SIGKILL: the other takes over and new jobs still run. (How soon, LEASE +
    # HEARTBEAT seconds, is wall-clock arithmetic in scheduler/cluster.py; timing it here would measure the
    # machine's load, not the code.)
    leader, other = (a, b) if _health(a)["scheduler"] else (b, a)
    oc = other.client()
    leader.stop(sig=9)
    wait_for(lambda: _health(other)["scheduler"], message="takeover")
    job = submit(oc, queue, quick)
    assert wait_status(oc, job, ("SUCCEEDED", "FAILED"), timeout=30)["status"] == "SUCCEEDED"


@pytest.mark.slow
def test_capacity_is_never_overcommitted_across_servers(make_server, pg_url):
    a, b = _pair(make_server, pg_url)
    ba, bb = a.client(), b.client()
    queue = make_queue(ba, [make_ce(ba, vcpus=2)])
    jd = register(ba, ["sleep", "0.7"])
    ids = [submit(ba if i % 2 else bb, queue, jd) for i in range(8)]
    peak = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = ba.describe_jobs(jobs=ids)["jobs"]
        running = sum(j["status"] in ("STARTING", "RUNNING") for j in jobs)
        peak = max(peak, running)
        if all(j["status"] in ("SUCCEEDED", "FAILED") for j in jobs):
            break
        time.sleep(0.05)
    assert peak <= 2
    assert [describe(bb, i)["status"] for i in ids] == ["SUCCEEDED"] * 8


@pytest.mark.slow
def test_job_running_on_a_dead_server_is_reconciled(make_server, pg_url):
    # A serves only "ce-a", B only "ce-b": jobs on ce-a run on A's local executor.
    a = make_server(name="a", extra_args=["--db", pg_url, "--compute-environments", "ce-a"])
    b = make_server(name="b", extra_args=["--db", pg_url, "--compute-environments", "ce-b"])
    ba, bb = a.client(), b.client()
    for name in ("ce-a", "ce-b"):
        ba.create_compute_environment(computeEnvironmentName=name, type="UNMANAGED", unmanagedvCpus=2)
    wait_for(lambda: all(e["status"] == "VALID" for e in ba.describe_compute_environments()["computeEnvironments"]))
    qa = make_queue(ba, ["ce-a"])
    qb = make_queue(ba, ["ce-b"])
    jd = register(ba, ["sleep", "60"])
    on_a = submit(bb, qa, jd)
    on_b = submit(ba, qb, jd)
    wait_status(bb, on_a, "RUNNING")
    wait_status(ba, on_b, "RUNNING")
    a.stop(sig=9)
    job = wait_status(bb, on_a, "FAILED", timeout=30)
    assert job["statusReason"].startswith("Host EC2 (instance batchd-server")
    assert describe(bb, on_b)["status"] == "RUNNING"  # B's own job is untouched
    bb.terminate_job(jobId=on_b, reason="done")
    wait_status(bb, on_b, "FAILED", timeout=20)
