"""Array jobs with real processes: children, their environment, the parent's states and counts, listings, scale."""

from __future__ import annotations

import time

import pytest

from conftest import wait_for
from jobkit import describe, log_lines, make_ce, make_queue, register, scheduler_passed, submit, wait_status

PARENT_STATES = {"SUBMITTED", "PENDING", "SUCCEEDED", "FAILED"}
SUMMARY_KEYS = {"SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"}


def _queue(batch, vcpus: int = 4, state: str = "ENABLED") -> tuple[str, str]:
    ce = make_ce(batch, vcpus=vcpus, state=state)
    return make_queue(batch, [ce]), ce


def _many(batch, ids: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for i in range(0, len(ids), 100):
        out.update({j["jobId"]: j for j in batch.describe_jobs(jobs=ids[i : i + 100])["jobs"]})
    return out


def _watch_parent(batch, parent: str, timeout: float = 30, interval: float = 0.05) -> tuple[dict, set[str]]:
    """Poll the parent until it finishes; returns its last record and every status it showed."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = describe(batch, parent)
        seen.add(job["status"])
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return job, seen
        time.sleep(interval)
    raise AssertionError(f"array {parent} did not finish in {timeout}s; saw {seen}")


def _list_all(batch, **kw) -> list[dict]:
    out, token = [], None
    while True:
        page = batch.list_jobs(**kw, **({"nextToken": token} if token else {}))
        out += page["jobSummaryList"]
        token = page.get("nextToken")
        if not token:
            return out


def test_children_ids_index_environment_and_parent_states(server, batch):
    queue, _ = _queue(batch, vcpus=2)
    jd = register(
        batch,
        [
            "sh",
            "-c",
            'echo "index=$AWS_BATCH_JOB_ARRAY_INDEX size=$AWS_BATCH_JOB_ARRAY_SIZE '
            'id=$AWS_BATCH_JOB_ID"; sleep 0.3',
        ],
    )
    t0 = time.monotonic()
    parent = submit(batch, queue, jd, arrayProperties={"size": 5})
    submit_s = time.monotonic() - t0
    job, seen = _watch_parent(batch, parent)
    # The parent never shows RUNNABLE, STARTING or RUNNING, though its children did.
    assert seen <= PARENT_STATES, seen
    assert "PENDING" in seen
    assert job["status"] == "SUCCEEDED"
    props = job["arrayProperties"]
    assert props["size"] == 5
    assert props["statusSummary"] == {**dict.fromkeys(SUMMARY_KEYS, 0), "SUCCEEDED": 5}
    assert isinstance(props["statusSummaryLastUpdatedAt"], int) and props["statusSummaryLastUpdatedAt"] > 0
    assert "index" not in props
    assert job["attempts"] == [] and "startedAt" not in job and job["stoppedAt"] >= job["createdAt"]
    kids = _many(batch, [f"{parent}:{i}" for i in range(5)])
    for i in range(5):
        kid = kids[f"{parent}:{i}"]
        assert kid["arrayProperties"] == {"index": i}
        assert kid["jobArn"].endswith(f":job/{parent}:{i}")
        assert kid["status"] == "SUCCEEDED" and len(kid["attempts"]) == 1
        assert kid["jobName"] == job["jobName"] and kid["jobQueue"] == queue and kid["jobDefinition"] == jd
        assert kid["createdAt"] >= job["createdAt"]
        assert job["stoppedAt"] >= kid["stoppedAt"]
        assert log_lines(server, kid) == [f"index={i} size=5 id={parent}:{i}"]
    print(f"\nSubmitJob(size=5) answered in {submit_s * 1000:.1f} ms")


def test_parent_is_pending_while_children_run(batch):
    queue, _ = _queue(batch, vcpus=2)
    parent = submit(batch, queue, register(batch, ["sleep", "0.6"]), arrayProperties={"size": 4})
    kids = [f"{parent}:{i}" for i in range(4)]
    samples = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = _many(batch, [parent, *kids])
        samples.append(states)
        if states[parent]["status"] in ("SUCCEEDED", "FAILED"):
            break
        time.sleep(0.05)
    running = [s for s in samples if any(s.get(k, {}).get("status") == "RUNNING" for k in kids)]
    assert running, "no child was ever seen RUNNING"
    for s in running:
        assert s[parent]["status"] == "PENDING"
        summary = s[parent]["arrayProperties"]["statusSummary"]
        assert set(summary) == SUMMARY_KEYS and sum(summary.values()) == 4
        assert summary["RUNNING"] + summary["STARTING"] >= 1
    assert samples[-1][parent]["status"] == "SUCCEEDED"


def test_one_failing_child_fails_the_parent_after_all_children(batch, tmp_path, gates):
    queue, _ = _queue(batch, vcpus=4)
    gate = gates()
    cmd = f'if [ "$AWS_BATCH_JOB_ARRAY_INDEX" = 0 ]; then exit 7; fi; {gate.shell()}'
    parent = submit(batch, queue, register(batch, ["sh", "-c", cmd]), arrayProperties={"size": 3})
    first = wait_for(
        lambda: (batch.describe_jobs(jobs=[f"{parent}:0"])["jobs"] or [{}])[0].get("status") == "FAILED",
        message="child 0 FAILED",
    )
    assert first
    # The others still run (until the gate opens): the parent has not failed yet.
    p = describe(batch, parent)
    assert p["status"] == "PENDING", p["status"]
    assert p["arrayProperties"]["statusSummary"]["FAILED"] == 1
    gate.open()
    job, seen = _watch_parent(batch, parent)
    assert seen <= PARENT_STATES
    assert job["status"] == "FAILED" and job["statusReason"] == "Array Child Job failed"
    assert job["arrayProperties"]["statusSummary"] == {
        **dict.fromkeys(SUMMARY_KEYS, 0),
        "SUCCEEDED": 2,
        "FAILED": 1,
    }
    kids = _many(batch, [f"{parent}:{i}" for i in range(3)])
    assert kids[f"{parent}:0"]["container"]["exitCode"] == 7
    assert job["stoppedAt"] >= max(k["stoppedAt"] for k in kids.values())
    assert [kids[f"{parent}:{i}"]["status"] for i in (1, 2)] == ["SUCCEEDED", "SUCCEEDED"]


def test_cancelling_or_terminating_one_child_leaves_the_siblings(batch, gates):
    queue, _ = _queue(batch, vcpus=1)
    gate = gates()  # child 0 holds the only vCPU until the cancel is in: child 2 cannot have started
    parent = submit(batch, queue, register(batch, gate.command()), arrayProperties={"size": 3})
    wait_for(lambda: batch.describe_jobs(jobs=[f"{parent}:2"])["jobs"], message="children created")
    wait_status(batch, f"{parent}:0", "RUNNING")
    batch.cancel_job(jobId=f"{parent}:2", reason="just this one")
    gate.open()
    job, _ = _watch_parent(batch, parent)
    kids = _many(batch, [f"{parent}:{i}" for i in range(3)])
    assert [kids[f"{parent}:{i}"]["status"] for i in range(3)] == ["SUCCEEDED", "SUCCEEDED", "FAILED"]
    assert kids[f"{parent}:2"]["statusReason"] == "just this one" and kids[f"{parent}:2"]["attempts"] == []
    assert job["status"] == "FAILED" and job["statusReason"] == "Array Child Job failed"
    assert "isCancelled" not in job


def test_list_jobs_by_array_and_queue(batch):
    queue, _ = _queue(batch, vcpus=4)
    jd = register(batch, ["true"])
    parent = submit(batch, queue, jd, arrayProperties={"size": 6})
    plain = submit(batch, queue, jd)
    job, _ = _watch_parent(batch, parent)
    wait_status(batch, plain, "SUCCEEDED", timeout=10)
    kids = _list_all(batch, arrayJobId=parent, jobStatus="SUCCEEDED")
    assert sorted(k["jobId"] for k in kids) == sorted(f"{parent}:{i}" for i in range(6))
    assert all(k["arrayProperties"] == {"index": int(k["jobId"].rsplit(":", 1)[1])} for k in kids)
    assert _list_all(batch, arrayJobId=parent, jobStatus="FAILED") == []
    assert len(_list_all(batch, arrayJobId=parent, jobStatus="SUCCEEDED", maxResults=4)) == 6  # paged
    in_queue = _list_all(batch, jobQueue=queue, jobStatus="SUCCEEDED")
    assert sorted(s["jobId"] for s in in_queue) == sorted([parent, plain])
    assert [s["arrayProperties"] for s in in_queue if s["jobId"] == parent] == [{"size": 6}]
    by_name = _list_all(batch, jobQueue=queue, filters=[{"name": "JOB_NAME", "values": ["*"]}])
    assert ":" not in "".join(s["jobId"] for s in by_name)


def test_child_describable_by_arn(batch):
    queue, _ = _queue(batch)
    parent = submit(batch, queue, register(batch, ["true"]), arrayProperties={"size": 2})
    _watch_parent(batch, parent)
    kid = describe(batch, f"{parent}:1")
    assert batch.describe_jobs(jobs=[kid["jobArn"]])["jobs"][0]["jobId"] == f"{parent}:1"


def test_array_size_limits(batch):
    queue, _ = _queue(batch)
    jd = register(batch, ["true"])
    for size in (1, 10001):
        with pytest.raises(batch.exceptions.ClientException):
            submit(batch, queue, jd, arrayProperties={"size": size})


def test_children_get_the_timeout_and_retry_strategy(server, batch):
    queue, _ = _queue(batch, vcpus=4)
    cmd = (
        'echo "attempt=$AWS_BATCH_JOB_ATTEMPT"; if [ "$AWS_BATCH_JOB_ARRAY_INDEX" = 1 ]; then sleep 30; fi; '
        '[ "$AWS_BATCH_JOB_ATTEMPT" = 2 ]'
    )
    parent = submit(
        batch,
        queue,
        register(batch, ["sh", "-c", cmd]),
        arrayProperties={"size": 2},
        retryStrategy={"attempts": 2},
        timeout={"attemptDurationSeconds": 1},
    )
    job, _ = _watch_parent(batch, parent, timeout=30)
    kids = _many(batch, [f"{parent}:0", f"{parent}:1"])
    k0, k1 = kids[f"{parent}:0"], kids[f"{parent}:1"]
    assert k0["status"] == "SUCCEEDED" and len(k0["attempts"]) == 2  # retried once, per child
    assert k1["status"] == "FAILED" and k1["statusReason"] == "Job attempt duration exceeded timeout"
    assert len(k1["attempts"]) == 1  # timed out: not retried
    assert job["status"] == "FAILED" and job["statusReason"] == "Array Child Job failed"
    assert log_lines(server, k0) == ["attempt=2"]


# --- scale ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_array_of_10000_children_runs_to_success(make_server):
    srv = make_server()
    batch = srv.client()
    queue, _ = _queue(batch, vcpus=64)
    jd = register(batch, ["true"])
    t0 = time.monotonic()
    parent = submit(batch, queue, jd, arrayProperties={"size": 10000})
    submit_s = time.monotonic() - t0
    seen: set[str] = set()
    created_s = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job = describe(batch, parent)
        seen.add(job["status"])
        summary = job["arrayProperties"].get("statusSummary") or {}
        if created_s is None and sum(summary.values()) == 10000:
            created_s = time.monotonic() - t0
        if job["status"] in ("SUCCEEDED", "FAILED"):
            break
        time.sleep(0.5)
    total_s = time.monotonic() - t0
    print(
        f"\n10,000-child array: SubmitJob {submit_s * 1000:.0f} ms; all children created after "
        f"{created_s if created_s is None else round(created_s, 1)} s; parent {job['status']} after "
        f"{total_s:.1f} s ({10000 / total_s:.0f} children/s)"
    )
    assert job["status"] == "SUCCEEDED", job.get("statusReason")
    assert seen <= PARENT_STATES
    assert job["arrayProperties"]["statusSummary"] == {**dict.fromkeys(SUMMARY_KEYS, 0), "SUCCEEDED": 10000}
    listed = _list_all(batch, arrayJobId=parent, jobStatus="SUCCEEDED")
    assert len(listed) == 10000 and len({s["jobId"] for s in listed}) == 10000
    last = describe(batch, f"{parent}:9999")
    assert last["status"] == "SUCCEEDED" and last["arrayProperties"] == {"index": 9999}


@pytest.mark.slow
def test_cancelling_a_pending_array_of_10000(make_server):
    srv = make_server()
    batch = srv.client()
    queue, ce = _queue(batch, vcpus=2, state="DISABLED")  # nothing can start: every child stays RUNNABLE
    jd = register(batch, ["true"])
    t0 = time.monotonic()
    parent = submit(batch, queue, jd, arrayProperties={"size": 10000})
    submit_s = time.monotonic() - t0
    # R1 for an array: a second array waits (SUBMITTED, no children yet) while the first one's children are
    # created; cancelled then, it fails at once and never gets children.
    second = submit(batch, queue, jd, arrayProperties={"size": 3})
    job = describe(batch, second)
    second_cancelled = job["status"] == "SUBMITTED" and sum(job["arrayProperties"].get("statusSummary", {}).values()) == 0
    if second_cancelled:
        batch.cancel_job(jobId=second, reason="R1 array")
        job = describe(batch, second)
        assert job["status"] == "FAILED" and job["statusReason"] == "R1 array" and job["isCancelled"] is True
    else:
        print("\n(the second array already had children: the R1 array case was not exercised)")
    wait_for(
        lambda: describe(batch, parent)["arrayProperties"]["statusSummary"]["RUNNABLE"] == 10000,
        timeout=120,
        interval=0.2,
        message="10,000 RUNNABLE children",
    )
    created_s = time.monotonic() - t0
    if second_cancelled:  # the scheduler went past it (it creates children oldest array first): none came
        assert batch.describe_jobs(jobs=[f"{second}:{i}" for i in range(3)])["jobs"] == []
    t1 = time.monotonic()
    batch.cancel_job(jobId=parent, reason="never mind the 10k")
    cancel_call_s = time.monotonic() - t1
    slowest = 0.0
    while True:
        t2 = time.monotonic()
        job = describe(batch, parent)
        slowest = max(slowest, time.monotonic() - t2)
        if job["status"] in ("SUCCEEDED", "FAILED") or time.monotonic() - t1 > 300:
            break
        time.sleep(0.1)
    failed_s = time.monotonic() - t1
    print(
        f"\n10,000-child cancel: SubmitJob {submit_s * 1000:.0f} ms; children created in {created_s:.1f} s; "
        f"CancelJob answered in {cancel_call_s * 1000:.0f} ms; parent FAILED {failed_s:.1f} s after CancelJob; "
        f"slowest DescribeJobs meanwhile {slowest * 1000:.0f} ms"
    )
    assert (
        job["status"] == "FAILED"
        and job["statusReason"] == "never mind the 10k"
        and job["isCancelled"] is True
    )
    assert job["arrayProperties"]["statusSummary"] == {**dict.fromkeys(SUMMARY_KEYS, 0), "FAILED": 10000}
    failed = _list_all(batch, arrayJobId=parent, jobStatus="FAILED")
    assert len(failed) == 10000
    assert all(s["statusReason"] == "never mind the 10k" and "startedAt" not in s for s in failed)
    # Enabling the compute environment now starts nothing.
    batch.update_compute_environment(computeEnvironment=ce, state="ENABLED")
    scheduler_passed(batch, queue)  # a job submitted behind the children has run: they were passed over
    assert _list_all(batch, arrayJobId=parent, jobStatus="SUCCEEDED") == []
