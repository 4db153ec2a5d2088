"""CancelJob, rule by rule (docs/scheduling.md R1-R7), with real processes and states watched over time.

Every job that must never start runs a command that would create a marker file; the file must never exist, the
job's attempts[] stays empty and it never gets a startedAt or a log stream. Jobs that must keep running while
the test looks (blockers, dependencies) wait for a gate the test opens (jobkit.Gate), never for a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import REPO, wait_for
from jobkit import Gate, describe, make_ce, make_queue, register, scheduler_passed, submit, wait_status


def _marker(tmp_path: Path, label: str = "m") -> Path:
    return tmp_path / f"{label}-{uuid.uuid4().hex[:8]}"


def _touch_jd(batch, marker: Path, then: str = "true") -> str:
    return register(batch, ["sh", "-c", f"touch {marker}; {then}"])


def _marking_array(batch, queue: str, tmp_path: Path, size: int, then: str = "true", **kw) -> tuple[str, Path]:
    """An array whose child i touches `kids/i` when it runs; returns the parent id and the `kids` directory."""
    marks = tmp_path / "kids"
    marks.mkdir()
    jd = _touch_jd(batch, marks / "$AWS_BATCH_JOB_ARRAY_INDEX", then)
    return submit(batch, queue, jd, arrayProperties={"size": size}, **kw), marks


def _many(batch, ids: list[str]) -> dict[str, dict]:
    return {j["jobId"]: j for j in batch.describe_jobs(jobs=ids)["jobs"]}


def _sample(batch, ids: list[str], seconds: float, interval: float = 0.1) -> list[dict[str, dict]]:
    """DescribeJobs every `interval` for `seconds`: the states over time."""
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out.append(_many(batch, ids))
        time.sleep(interval)
    return out


def _wait_kid(batch, job_id: str, statuses: str | tuple[str, ...], timeout: float = 10) -> dict:
    """wait_status for an array child, which exists only once the scheduler has created it."""
    wait_for(lambda: batch.describe_jobs(jobs=[job_id])["jobs"], timeout=timeout, message=f"{job_id} created")
    return wait_status(batch, job_id, statuses, timeout=timeout)


def _never_started(job: dict) -> None:
    assert job["attempts"] == [], job["attempts"]
    assert "startedAt" not in job
    assert "logStreamName" not in (job.get("container") or {})


def _events(server, job_id: str) -> list[dict]:
    with urllib.request.urlopen(f"{server.url}/batchd/events?jobId={job_id}", timeout=10) as resp:
        return json.load(resp)["events"]


def _raw_post(server, path: str, body: object) -> tuple[int, dict, dict]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        f"{server.url}{path}", data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"{}")


def _blocked_queue(batch, gate: Gate, vcpus: int = 1) -> tuple[str, str, str]:
    """(queue, CE, blocker job id): a CE with `vcpus` capacity filled by a job RUNNING until `gate` opens."""
    ce = make_ce(batch, vcpus=vcpus)
    queue = make_queue(batch, [ce])
    blocker = submit(batch, queue, register(batch, gate.command(), vcpus=vcpus))
    wait_status(batch, blocker, "RUNNING")
    return queue, ce, blocker


# --- R1 -----------------------------------------------------------------------------------------------------


def test_r1_cancel_right_after_submit_fails_at_once_and_never_runs(batch, tmp_path):
    # The CE is disabled so that, whatever state the job reached before CancelJob arrived (SUBMITTED, or RUNNABLE
    # at the head of its queue), nothing can start it; it is enabled afterwards to prove nothing ever will.
    ce = make_ce(batch, vcpus=2, state="DISABLED")
    queue = make_queue(batch, [ce])
    markers = [_marker(tmp_path) for _ in range(3)]
    ids = []
    for m in markers:
        job_id = submit(batch, queue, _touch_jd(batch, m))
        batch.cancel_job(jobId=job_id, reason="R1: not needed after all")
        ids.append(job_id)
    for job_id in ids:
        job = wait_status(batch, job_id, ("FAILED", "SUCCEEDED"))
        assert job["status"] == "FAILED"
        assert job["statusReason"] == "R1: not needed after all"
        assert job["isCancelled"] is True
        assert "isTerminated" not in job
        assert job["stoppedAt"] >= job["createdAt"]
        _never_started(job)
    batch.update_compute_environment(computeEnvironment=ce, state="ENABLED")
    scheduler_passed(batch, queue)  # a job submitted behind them has run: the scheduler went past them
    for job_id, m in zip(ids, markers, strict=True):
        job = describe(batch, job_id)
        assert job["status"] == "FAILED" and job["statusReason"] == "R1: not needed after all"
        _never_started(job)
        assert not m.exists()


def test_r1_lifecycle_cancel_of_submitted_and_idle_pending_rows(tmp_path):
    """The SUBMITTED branch of R1 is over before any client can race it (the scheduler moves SUBMITTED jobs in
    the pass SubmitJob wakes), so it is also checked directly on the store: FAILED at once, isCancelled, the
    reason, a FAILED event in the activity log, and nothing left for the scheduler to start."""
    from batchd.domain import jobs as J
    from batchd.scheduler import lifecycle
    from batchd.store import jobs as store
    from batchd.store.db import Database

    db = Database(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    db.migrate()
    queue = "arn:aws:batch:us-east-1:123456789012:job-queue/q"
    base = {
        "account": "123456789012",
        "region": "us-east-1",
        "queue_arn": queue,
        "name": "j",
        "created_at": 1,
        "jd_arn": "arn:aws:batch:us-east-1:123456789012:job-definition/jd:1",
        "is_cancelled": False,
        "is_terminated": False,
        "attempt": 0,
        "vcpus": 1.0,
        "memory": 0,
        "gpus": 0,
        "pending_deps": 0,
        "spec": {"container": {"command": ["true"]}},
        "runtime": {},
    }
    with db.tx() as conn:
        store.insert_jobs(
            conn, [{**base, "id": "sub", "status": J.SUBMITTED}, {**base, "id": "pen", "status": J.PENDING}]
        )
    for job_id in ("sub", "pen"):
        with db.tx() as conn:
            assert lifecycle.cancel(conn, store.get(conn, job_id), "R1 reason", 1000)
        row = store.get(db.conn, job_id)
        assert (row["status"], row["status_reason"], row["is_cancelled"]) == (J.FAILED, "R1 reason", True)
        assert row["stopped_at"] == 1000 and row["attempt"] == 0
        events = store.read_events(db.conn, "123456789012", "us-east-1", 0, 10, job_id)
        assert [e["detail"]["status"] for e in events] == ["FAILED"]
        assert (
            events[0]["detail"]["statusReason"] == "R1 reason" and events[0]["detail"]["isCancelled"] is True
        )
    assert store.with_status(db.conn, [J.SUBMITTED, J.PENDING, J.RUNNABLE]) == []
    db.close()


# --- R2 -----------------------------------------------------------------------------------------------------


def test_r2_cancelled_job_behind_the_head_waits_until_the_head_starts(batch, tmp_path, gates):
    gate = gates()
    queue, _, blocker = _blocked_queue(batch, gate)
    mark_a, mark_b = _marker(tmp_path, "a"), _marker(tmp_path, "b")
    a = submit(batch, queue, _touch_jd(batch, mark_a, "sleep 0.5"))
    b = submit(batch, queue, _touch_jd(batch, mark_b))
    wait_for(
        lambda: all(j["status"] == "RUNNABLE" for j in _many(batch, [a, b]).values()),
        timeout=5,
        message="A and B RUNNABLE",
    )
    batch.cancel_job(jobId=b, reason="R2: behind the head")
    # While the blocker runs, A is the head and B stays RUNNABLE, marked cancelled, with the reason.
    for states in _sample(batch, [blocker, a, b], 1.0):
        if states[blocker]["status"] != "RUNNING":
            break
        assert states[a]["status"] == "RUNNABLE" and "isCancelled" not in states[a]
        assert states[b]["status"] == "RUNNABLE"
        assert states[b]["isCancelled"] is True
        assert states[b]["statusReason"] == "R2: behind the head"
    assert describe(batch, blocker)["status"] == "RUNNING"
    gate.open()
    job_b = wait_status(batch, b, ("FAILED", "SUCCEEDED", "RUNNING", "STARTING"))
    assert job_b["status"] == "FAILED"
    assert job_b["statusReason"] == "R2: behind the head" and job_b["isCancelled"] is True
    _never_started(job_b)
    done_blocker = describe(batch, blocker)
    assert done_blocker["status"] == "SUCCEEDED"
    # B failed only when A reached the head and left it by starting.
    assert job_b["stoppedAt"] >= done_blocker["stoppedAt"]
    job_a = wait_status(batch, a, ("SUCCEEDED", "FAILED"), timeout=10)
    assert job_a["status"] == "SUCCEEDED" and mark_a.exists()
    assert not mark_b.exists()


def test_r2_cancelled_head_fails_promptly_while_the_ce_is_full(batch, tmp_path, gates):
    gate = gates()
    queue, _, blocker = _blocked_queue(batch, gate)
    mark_a, mark_b = _marker(tmp_path, "a"), _marker(tmp_path, "b")
    a = submit(batch, queue, _touch_jd(batch, mark_a))
    b = submit(batch, queue, _touch_jd(batch, mark_b))
    wait_for(
        lambda: all(j["status"] == "RUNNABLE" for j in _many(batch, [a, b]).values()),
        timeout=5,
        message="A and B RUNNABLE",
    )
    batch.cancel_job(jobId=a, reason="R2: the head")
    job_a = wait_status(batch, a, "FAILED")
    assert job_a["statusReason"] == "R2: the head" and job_a["isCancelled"] is True
    _never_started(job_a)
    # Promptly: it failed while the capacity it waited for was still taken (the blocker runs until the gate).
    assert describe(batch, blocker)["status"] == "RUNNING"
    # B is now the head; it is not cancelled and simply waits for capacity.
    job_b = describe(batch, b)
    assert job_b["status"] == "RUNNABLE" and "isCancelled" not in job_b
    batch.terminate_job(jobId=blocker, reason="cleanup")
    assert wait_status(batch, b, ("SUCCEEDED", "FAILED"), timeout=10)["status"] == "SUCCEEDED"
    assert mark_b.exists() and not mark_a.exists()


# --- R3 -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dep_exit", [0, 1], ids=["dependency-succeeds", "dependency-fails"])
def test_r3_cancelled_dependent_waits_for_its_dependency(batch, tmp_path, gates, dep_exit):
    ce = make_ce(batch, vcpus=2)
    queue = make_queue(batch, [ce])
    gate = gates()
    dep = submit(batch, queue, register(batch, gate.command(f"exit {dep_exit}")))
    mark = _marker(tmp_path)
    child = submit(batch, queue, _touch_jd(batch, mark), dependsOn=[{"jobId": dep}])
    wait_status(batch, dep, "RUNNING")
    wait_status(batch, child, "PENDING")  # (SUBMITTED until the scheduler's next pass: R1 would apply)
    batch.cancel_job(jobId=child, reason="R3: cancel while waiting")
    for states in _sample(batch, [dep, child], 0.8):
        if states[dep]["status"] != "RUNNING":
            break
        assert states[child]["status"] == "PENDING"
        assert states[child]["isCancelled"] is True
        assert states[child]["statusReason"] == "R3: cancel while waiting"
    gate.open()
    job = wait_status(batch, child, ("FAILED", "SUCCEEDED", "RUNNABLE", "RUNNING"))
    done_dep = describe(batch, dep)
    assert done_dep["status"] == ("SUCCEEDED" if dep_exit == 0 else "FAILED")
    assert job["status"] == "FAILED"
    # The cancel was accepted first: its reason wins over "Dependent Job failed".
    assert job["statusReason"] == "R3: cancel while waiting" and job["isCancelled"] is True
    assert job["stoppedAt"] >= done_dep["stoppedAt"]
    _never_started(job)  # a finished job that never had an attempt: its command cannot run any more
    assert not mark.exists()


def test_r3_cancelled_dependent_waits_for_all_dependencies(batch, tmp_path, gates):
    ce = make_ce(batch, vcpus=2)
    queue = make_queue(batch, [ce])
    fail_gate, ok_gate = gates(), gates()
    fast_fail = submit(batch, queue, register(batch, fail_gate.command("exit 1")))
    slow_ok = submit(batch, queue, register(batch, ok_gate.command()))
    mark = _marker(tmp_path)
    child = submit(batch, queue, _touch_jd(batch, mark), dependsOn=[{"jobId": fast_fail}, {"jobId": slow_ok}])
    # Cancelled while PENDING (R3): a cancel that reached it still SUBMITTED would fail it at once (R1).
    wait_status(batch, child, "PENDING")
    batch.cancel_job(jobId=child, reason="R3: all of them")
    fail_gate.open()
    wait_status(batch, fast_fail, "FAILED")
    # One dependency failed but the other still runs: the cancelled job keeps waiting.
    for states in _sample(batch, [slow_ok, child], 0.6):
        assert states[slow_ok]["status"] == "RUNNING"
        assert states[child]["status"] == "PENDING" and states[child]["isCancelled"] is True
    ok_gate.open()
    job = wait_status(batch, child, ("FAILED", "SUCCEEDED"))
    assert job["statusReason"] == "R3: all of them"
    assert job["stoppedAt"] >= describe(batch, slow_ok)["stoppedAt"]
    _never_started(job)
    assert not mark.exists()


# --- R4 -----------------------------------------------------------------------------------------------------


def test_r4_cancel_pending_array_parent_children_behind_the_head(batch, tmp_path, gates):
    gate = gates()
    queue, _, blocker = _blocked_queue(batch, gate)
    head_mark = _marker(tmp_path, "head")
    head = submit(batch, queue, _touch_jd(batch, head_mark))
    parent, marks = _marking_array(batch, queue, tmp_path, 5)
    wait_for(
        lambda: (describe(batch, parent)["arrayProperties"].get("statusSummary") or {}).get("RUNNABLE") == 5,
        timeout=5,
        message="5 RUNNABLE children",
    )
    kids = [f"{parent}:{i}" for i in range(5)]
    batch.cancel_job(jobId=parent, reason="R4: whole array")
    # The children wait behind the head job (R2); the parent waits for them (R4), PENDING and marked.
    for states in _sample(batch, [blocker, parent, *kids], 0.8):
        if states[blocker]["status"] != "RUNNING":
            break
        p = states[parent]
        assert (
            p["status"] == "PENDING" and p["isCancelled"] is True and p["statusReason"] == "R4: whole array"
        )
        for k in kids:
            assert states[k]["status"] == "RUNNABLE" and states[k]["isCancelled"] is True
    assert describe(batch, blocker)["status"] == "RUNNING"
    gate.open()
    job = wait_status(batch, parent, ("FAILED", "SUCCEEDED"))
    assert (
        job["status"] == "FAILED" and job["statusReason"] == "R4: whole array" and job["isCancelled"] is True
    )
    assert job["arrayProperties"]["statusSummary"]["FAILED"] == 5
    states = _many(batch, kids)
    for k in kids:
        assert states[k]["status"] == "FAILED" and states[k]["statusReason"] == "R4: whole array"
        _never_started(states[k])
        assert job["stoppedAt"] >= states[k]["stoppedAt"]
    assert job["stoppedAt"] >= describe(batch, blocker)["stoppedAt"]
    wait_status(batch, head, "SUCCEEDED", timeout=10)
    assert list(marks.iterdir()) == []


def test_r4_running_child_keeps_running_and_the_parent_waits(batch, tmp_path, gates):
    ce = make_ce(batch, vcpus=1)
    queue = make_queue(batch, [ce])
    gate = gates()
    parent, marks = _marking_array(batch, queue, tmp_path, 3, gate.shell())
    _wait_kid(batch, f"{parent}:0", "RUNNING")
    batch.cancel_job(jobId=parent, reason="R4: running child")
    # Children 1 and 2 are cancelled at the head (the CE is full); child 0 runs on (R5); the parent waits.
    wait_for(
        lambda: all(describe(batch, f"{parent}:{i}")["status"] == "FAILED" for i in (1, 2)),
        timeout=3,
        message="children 1 and 2 FAILED",
    )
    for states in _sample(batch, [parent, f"{parent}:0"], 0.8):
        assert states[f"{parent}:0"]["status"] == "RUNNING"
        assert states[parent]["status"] == "PENDING" and states[parent]["isCancelled"] is True
    gate.open()
    job = wait_status(batch, parent, ("FAILED", "SUCCEEDED"))
    kid0 = describe(batch, f"{parent}:0")
    assert kid0["status"] == "SUCCEEDED" and "isCancelled" not in kid0
    assert job["status"] == "FAILED" and job["statusReason"] == "R4: running child"
    assert job["stoppedAt"] >= kid0["stoppedAt"]
    assert job["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 1
    assert job["arrayProperties"]["statusSummary"]["FAILED"] == 2
    for i in (1, 2):
        kid = describe(batch, f"{parent}:{i}")
        assert kid["statusReason"] == "R4: running child" and kid["isCancelled"] is True
        _never_started(kid)
    assert sorted(p.name for p in marks.iterdir()) == ["0"]


def test_r4_sequential_array_pending_children_wait_for_the_running_one(batch, tmp_path, gates):
    ce = make_ce(batch, vcpus=2)
    queue = make_queue(batch, [ce])
    gate = gates()
    sequential = [{"type": "SEQUENTIAL"}]
    parent, marks = _marking_array(batch, queue, tmp_path, 3, gate.shell(), dependsOn=sequential)
    kids = [f"{parent}:{i}" for i in range(3)]
    _wait_kid(batch, kids[0], "RUNNING")
    batch.cancel_job(jobId=parent, reason="R4: sequential")
    for states in _sample(batch, [parent, *kids], 0.6):
        assert states[kids[0]]["status"] == "RUNNING"
        assert states[parent]["status"] == "PENDING"
        for k in kids[1:]:
            assert states[k]["status"] == "PENDING" and states[k]["isCancelled"] is True  # R3 for each child
    gate.open()
    job = wait_status(batch, parent, ("FAILED", "SUCCEEDED"))
    assert job["status"] == "FAILED" and job["statusReason"] == "R4: sequential"
    states = _many(batch, kids)
    assert states[kids[0]]["status"] == "SUCCEEDED"
    for k in kids[1:]:
        assert states[k]["status"] == "FAILED" and states[k]["statusReason"] == "R4: sequential"
        _never_started(states[k])
    assert sorted(p.name for p in marks.iterdir()) == ["0"]


def test_r4_array_parent_waiting_on_a_dependency_cancels_each_child(batch, tmp_path, gates):
    """The children of a parent that waits on a dependency exist already (PENDING, each waiting with it): the
    cancel marks each (R3), and each fails with the reason once the dependency is done, then the parent."""
    ce = make_ce(batch, vcpus=2)
    queue = make_queue(batch, [ce])
    gate = gates()
    dep = submit(batch, queue, register(batch, gate.command()))
    parent, marks = _marking_array(batch, queue, tmp_path, 4, dependsOn=[{"jobId": dep}])
    wait_status(batch, parent, "PENDING")  # (SUBMITTED until its children exist)
    batch.cancel_job(jobId=parent, reason="R4: waiting parent")
    p = describe(batch, parent)
    assert p["status"] == "PENDING" and p["isCancelled"] is True
    kids = [f"{parent}:{i}" for i in range(4)]
    assert all(k["status"] == "PENDING" and k["isCancelled"] is True for k in _many(batch, kids).values())
    gate.open()
    job = wait_status(batch, parent, ("FAILED", "SUCCEEDED"))
    assert job["statusReason"] == "R4: waiting parent"
    assert job["stoppedAt"] >= describe(batch, dep)["stoppedAt"]
    states = _many(batch, kids)
    for k in kids:
        assert states[k]["status"] == "FAILED" and states[k]["statusReason"] == "R4: waiting parent"
        _never_started(states[k])
        assert states[k]["stoppedAt"] <= job["stoppedAt"]
    assert list(marks.iterdir()) == []


# --- R5 -----------------------------------------------------------------------------------------------------


def test_r5_cancel_of_a_running_job_changes_nothing_terminate_stops_it(batch, tmp_path, gates):
    ce = make_ce(batch, vcpus=2)
    queue = make_queue(batch, [ce])
    mark = _marker(tmp_path)
    gate = gates()
    runs_on = submit(batch, queue, register(batch, gate.command(f"touch {mark}")))
    long = submit(batch, queue, register(batch, ["sleep", "3600"]))
    wait_status(batch, runs_on, "RUNNING")
    wait_status(batch, long, "RUNNING")
    assert batch.cancel_job(jobId=runs_on, reason="R5: too late")["ResponseMetadata"]["HTTPStatusCode"] == 200
    batch.cancel_job(jobId=long, reason="R5: too late")
    for states in _sample(batch, [runs_on, long], 0.5):
        for job in states.values():
            assert job["status"] == "RUNNING" and "isCancelled" not in job
    gate.open()
    job = wait_status(batch, runs_on, ("SUCCEEDED", "FAILED"))
    assert job["status"] == "SUCCEEDED" and mark.exists()
    assert job["statusReason"] == "Essential container in task exited" and "isCancelled" not in job
    assert describe(batch, long)["status"] == "RUNNING"
    batch.terminate_job(jobId=long, reason="R5: terminate instead")
    job = wait_status(batch, long, "FAILED", timeout=10)
    assert job["statusReason"] == "R5: terminate instead" and job["isTerminated"] is True
    assert "isCancelled" not in job
    assert job["container"]["exitCode"] in (137, 143)
    assert len(job["attempts"]) == 1


def test_terminate_array_parent_cancels_waiting_children_and_stops_running_ones(batch, tmp_path):
    ce = make_ce(batch, vcpus=1)
    queue = make_queue(batch, [ce])
    parent, marks = _marking_array(batch, queue, tmp_path, 3, "sleep 3600")
    _wait_kid(batch, f"{parent}:0", "RUNNING")
    batch.terminate_job(jobId=parent, reason="stop the array")
    job = wait_status(batch, parent, ("FAILED", "SUCCEEDED"))
    assert job["status"] == "FAILED" and job["statusReason"] == "stop the array"
    kids = _many(batch, [f"{parent}:{i}" for i in range(3)])
    k0 = kids[f"{parent}:0"]
    assert k0["status"] == "FAILED" and k0["isTerminated"] is True and k0["statusReason"] == "stop the array"
    assert k0["container"]["exitCode"] in (137, 143) and len(k0["attempts"]) == 1
    for i in (1, 2):
        kid = kids[f"{parent}:{i}"]
        assert (
            kid["status"] == "FAILED"
            and kid["statusReason"] == "stop the array"
            and kid["isCancelled"] is True
        )
        _never_started(kid)
    assert sorted(p.name for p in marks.iterdir()) == ["0"]


# --- R6 -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"reason": "r"},
        {"jobId": "", "reason": "r"},
        {"jobId": "x"},
        {"jobId": "x", "reason": ""},
        {"jobId": None, "reason": "r"},
    ],
    ids=["empty", "no-jobId", "empty-jobId", "no-reason", "empty-reason", "null-jobId"],
)
def test_r6_raw_http_requires_job_id_and_reason(server, body):
    status, headers, doc = _raw_post(server, "/v1/canceljob", body)
    assert status == 400, (status, doc)
    assert {k.lower(): v for k, v in headers.items()}["x-amzn-errortype"].startswith("ClientException")
    assert doc.get("message")


def test_r6_boto3_empty_strings_and_unknown_ids(server, batch):
    with pytest.raises(batch.exceptions.ClientException):
        batch.cancel_job(jobId="", reason="r")
    with pytest.raises(batch.exceptions.ClientException):
        batch.cancel_job(jobId=str(uuid.uuid4()), reason="")
    unknown = str(uuid.uuid4())
    resp = batch.cancel_job(jobId=unknown, reason="nobody")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    status, _, doc = _raw_post(server, "/v1/canceljob", {"jobId": unknown, "reason": "nobody"})
    assert (status, doc) == (200, {})
    assert batch.describe_jobs(jobs=[unknown])["jobs"] == []


def test_r6_terminal_jobs_are_untouched(batch):
    ce = make_ce(batch, vcpus=2)
    queue = make_queue(batch, [ce])
    ok = submit(batch, queue, register(batch, ["true"]))
    bad = submit(batch, queue, register(batch, ["sh", "-c", "exit 5"]))
    before = {j: wait_status(batch, j, ("SUCCEEDED", "FAILED"), timeout=10) for j in (ok, bad)}
    n_events = {j: len(_events_local(batch, j)) for j in (ok, bad)}
    for j in (ok, bad):
        batch.cancel_job(jobId=j, reason="R6: too late")
        batch.terminate_job(jobId=j, reason="R6: too late")
    scheduler_passed(batch, queue)  # the passes those calls woke are over
    for j in (ok, bad):
        after = describe(batch, j)
        assert after == before[j]
        assert "isCancelled" not in after and "isTerminated" not in after
        assert len(_events_local(batch, j)) == n_events[j]
    assert before[ok]["status"] == "SUCCEEDED" and before[bad]["status"] == "FAILED"


def _events_local(batch, job_id: str) -> list[dict]:
    url = batch.meta.endpoint_url
    with urllib.request.urlopen(f"{url}/batchd/events?jobId={job_id}", timeout=10) as resp:
        return json.load(resp)["events"]


# --- R7 -----------------------------------------------------------------------------------------------------


def test_r7_reason_everywhere(server, batch, tmp_path, gates):
    gate = gates()
    queue, _, blocker = _blocked_queue(batch, gate)
    ahead = submit(batch, queue, register(batch, ["true"]))
    mark = _marker(tmp_path)
    job_id = submit(batch, queue, _touch_jd(batch, mark), jobName="r7-job")
    wait_status(batch, job_id, "RUNNABLE", timeout=5)
    reason = "R7: recorded verbatim — ünïcödé & <symbols>"
    batch.cancel_job(jobId=job_id, reason=reason)
    # Every DescribeJobs from now on returns it: while still RUNNABLE, and after.
    assert describe(batch, job_id)["statusReason"] == reason
    gate.open()
    job = wait_status(batch, job_id, "FAILED")
    assert job["statusReason"] == reason and job["isCancelled"] is True
    wait_status(batch, ahead, "SUCCEEDED", timeout=10)
    assert describe(batch, job_id)["statusReason"] == reason
    # ListJobs.
    listed = batch.list_jobs(jobQueue=queue, jobStatus="FAILED")["jobSummaryList"]
    mine = [s for s in listed if s["jobId"] == job_id]
    assert len(mine) == 1 and mine[0]["statusReason"] == reason and mine[0]["isCancelled"] is True
    by_name = batch.list_jobs(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": ["r7-job"]}])[
        "jobSummaryList"
    ]
    assert [s["statusReason"] for s in by_name] == [reason]
    # The activity log, over HTTP.
    events = _events(server, job_id)
    failed = [e for e in events if e["detail"]["status"] == "FAILED"]
    assert len(failed) == 1
    assert failed[0]["detail"]["statusReason"] == reason and failed[0]["detail"]["isCancelled"] is True
    assert failed[0]["detail-type"] == "Batch Job State Change" and failed[0]["source"] == "aws.batch"
    assert [e["detail"]["status"] for e in events] == ["RUNNABLE", "FAILED"]
    # ...and through the CLI.
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDDEV",
        "AWS_SECRET_ACCESS_KEY": "dev-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("AWS_ENDPOINT_URL", None)
    env.pop("AWS_ENDPOINT_URL_BATCH", None)
    proc = subprocess.run(
        [sys.executable, "-m", "batchd", "events", "--endpoint-url", server.url, "--job-id", job_id],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    printed = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [e["detail"]["status"] for e in printed] == ["RUNNABLE", "FAILED"]
    assert printed[-1]["detail"]["statusReason"] == reason and printed[-1]["detail"]["isCancelled"] is True
    assert all(e["detail"]["jobId"] == job_id for e in printed)
    assert not mark.exists()


# --- CancelJobs -------------------------------------------------------------------------------------------


def test_cancel_jobs_bulk_applies_the_rules_per_job(batch, tmp_path, gates):
    gate = gates()
    queue, _, blocker = _blocked_queue(batch, gate)
    marks = {k: _marker(tmp_path, k) for k in ("head", "behind", "dependent")}
    head = submit(batch, queue, _touch_jd(batch, marks["head"]))
    behind = submit(batch, queue, _touch_jd(batch, marks["behind"]))
    dependent = submit(batch, queue, _touch_jd(batch, marks["dependent"]), dependsOn=[{"jobId": head}])
    done = submit(batch, make_queue(batch, [make_ce(batch, vcpus=1)]), register(batch, ["true"]))
    done_before = wait_status(batch, done, "SUCCEEDED", timeout=10)
    wait_for(lambda: describe(batch, behind)["status"] == "RUNNABLE", message="behind RUNNABLE")
    wait_status(batch, dependent, "PENDING")  # (SUBMITTED until the scheduler's next pass: R1 would apply)
    unknown = str(uuid.uuid4())
    # `head` is not cancelled: it stays the head and `behind` must wait for it.
    resp = batch.cancel_jobs(jobs=[behind, dependent, blocker, done, unknown], reason="bulk")
    assert sorted(resp["successful"]) == sorted([behind, dependent, blocker, done, unknown])
    assert resp.get("errors", []) == []
    states = _many(batch, [blocker, behind, dependent, done])
    assert states[blocker]["status"] == "RUNNING" and "isCancelled" not in states[blocker]  # R5
    assert states[behind]["status"] == "RUNNABLE" and states[behind]["isCancelled"] is True  # R2
    assert states[dependent]["status"] == "PENDING" and states[dependent]["isCancelled"] is True  # R3
    assert states[done] == done_before  # R6
    for j in (behind, dependent):
        assert states[j]["statusReason"] == "bulk"
    gate.open()
    for j in (behind, dependent):
        job = wait_status(batch, j, ("FAILED", "SUCCEEDED"))
        assert job["status"] == "FAILED" and job["statusReason"] == "bulk"
        _never_started(job)
    assert wait_status(batch, blocker, ("SUCCEEDED", "FAILED"), timeout=10)["status"] == "SUCCEEDED"
    assert wait_status(batch, head, ("SUCCEEDED", "FAILED"), timeout=10)["status"] == "SUCCEEDED"
    assert describe(batch, dependent)["stoppedAt"] >= describe(batch, head)["stoppedAt"]
    assert marks["head"].exists()
    assert not marks["behind"].exists() and not marks["dependent"].exists()


def test_cancel_jobs_bulk_validation(server, batch):
    status, _, doc = _raw_post(server, "/v1/canceljobs", {"jobs": [str(uuid.uuid4())], "reason": ""})
    assert status == 400, doc
    status, _, doc = _raw_post(server, "/v1/canceljobs", {"jobs": [str(uuid.uuid4())]})
    assert status == 400, doc
