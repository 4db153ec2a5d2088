"""Job dependencies with real processes: chains, failure cascades, arrays (whole, N_TO_N, SEQUENTIAL, mixed)."""

from __future__ import annotations

import time
import uuid

import pytest

from conftest import wait_for
from jobkit import describe, make_ce, make_queue, register, submit, wait_status


def _queue(batch, vcpus: int = 4) -> str:
    return make_queue(batch, [make_ce(batch, vcpus=vcpus)])


def _many(batch, ids: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for i in range(0, len(ids), 100):
        out.update({j["jobId"]: j for j in batch.describe_jobs(jobs=ids[i : i + 100])["jobs"]})
    return out


def _wait_all(
    batch, ids: list[str], statuses=("SUCCEEDED", "FAILED"), timeout: float = 20
) -> dict[str, dict]:
    def done():
        states = _many(batch, ids)
        return (
            states
            if len(states) == len(ids) and all(j["status"] in statuses for j in states.values())
            else None
        )

    return wait_for(done, timeout=timeout, message=f"{len(ids)} jobs in {statuses}")


def _never_started(job: dict) -> None:
    assert job["attempts"] == [] and "startedAt" not in job, job


def test_success_chain_runs_in_order(batch, tmp_path, gates):
    queue = _queue(batch, vcpus=4)  # room for all three at once: only the dependencies keep them apart
    trace = tmp_path / "trace"
    gate = gates()
    jd = register(batch, ["sh", "-c", f'echo "$AWS_BATCH_JOB_ID" >> {trace}; {gate.shell()}'])
    a = submit(batch, queue, jd)
    b = submit(batch, queue, jd, dependsOn=[{"jobId": a}])
    c = submit(batch, queue, jd, dependsOn=[{"jobId": b}])
    assert describe(batch, c)["status"] in ("SUBMITTED", "PENDING")
    wait_status(batch, a, "RUNNING")
    states = _many(batch, [b, c])
    assert states[b]["status"] == "PENDING" and states[c]["status"] == "PENDING"
    assert states[b]["dependsOn"] == [{"jobId": a}]
    gate.open()
    done = _wait_all(batch, [a, b, c])
    assert [done[j]["status"] for j in (a, b, c)] == ["SUCCEEDED"] * 3
    assert done[b]["startedAt"] >= done[a]["stoppedAt"]
    assert done[c]["startedAt"] >= done[b]["stoppedAt"]
    assert trace.read_text().split() == [a, b, c]


def test_failure_cascades_down_the_chain(batch, tmp_path):
    queue = _queue(batch)
    a = submit(batch, queue, register(batch, ["sh", "-c", "sleep 0.3; exit 1"]))
    marks = [tmp_path / "b", tmp_path / "c"]
    b = submit(batch, queue, register(batch, ["touch", str(marks[0])]), dependsOn=[{"jobId": a}])
    c = submit(batch, queue, register(batch, ["touch", str(marks[1])]), dependsOn=[{"jobId": b}])
    done = _wait_all(batch, [a, b, c])
    assert done[a]["status"] == "FAILED" and done[a]["statusReason"] == "Essential container in task exited"
    for j in (b, c):
        assert done[j]["status"] == "FAILED"
        assert done[j]["statusReason"] == "Dependent Job failed"
        assert "isCancelled" not in done[j]
        assert done[j]["stoppedAt"] >= done[a]["stoppedAt"]
        _never_started(done[j])
    # A job submitted after its dependency failed fails too, without running.
    late_mark = tmp_path / "late"
    late = submit(batch, queue, register(batch, ["touch", str(late_mark)]), dependsOn=[{"jobId": c}])
    job = wait_status(batch, late, ("FAILED", "SUCCEEDED"), timeout=5)
    assert job["status"] == "FAILED" and job["statusReason"] == "Dependent Job failed"
    _never_started(job)  # finished jobs that never had an attempt: their commands cannot run any more
    assert not any(m.exists() for m in [*marks, late_mark])


def test_dependency_on_a_finished_job(batch):
    queue = _queue(batch)
    a = submit(batch, queue, register(batch, ["true"]))
    wait_status(batch, a, "SUCCEEDED", timeout=10)
    b = submit(batch, queue, register(batch, ["true"]), dependsOn=[{"jobId": a}])
    assert wait_status(batch, b, ("SUCCEEDED", "FAILED"), timeout=10)["status"] == "SUCCEEDED"


def test_plain_dependency_on_an_array_waits_for_the_whole_array(batch, tmp_path):
    queue = _queue(batch, vcpus=4)
    array = submit(
        batch,
        queue,
        register(batch, ["sh", "-c", "sleep 0.$((3 + AWS_BATCH_JOB_ARRAY_INDEX * 3))"]),
        arrayProperties={"size": 3},
    )
    after = submit(batch, queue, register(batch, ["true"]), dependsOn=[{"jobId": array}])
    kids = [f"{array}:{i}" for i in range(3)]
    done = _wait_all(batch, [array, after, *kids])
    assert done[array]["status"] == "SUCCEEDED" and done[after]["status"] == "SUCCEEDED"
    assert done[after]["startedAt"] >= done[array]["stoppedAt"]
    assert done[after]["startedAt"] >= max(done[k]["stoppedAt"] for k in kids)
    # When a child fails, the array fails and so does its dependent.
    bad = submit(
        batch,
        queue,
        register(batch, ["sh", "-c", 'test "$AWS_BATCH_JOB_ARRAY_INDEX" != 1']),
        arrayProperties={"size": 3},
    )
    mark = tmp_path / "never"
    dependent = submit(batch, queue, register(batch, ["touch", str(mark)]), dependsOn=[{"jobId": bad}])
    done = _wait_all(batch, [bad, dependent])
    assert done[bad]["statusReason"] == "Array Child Job failed"
    assert done[dependent]["status"] == "FAILED" and done[dependent]["statusReason"] == "Dependent Job failed"
    _never_started(done[dependent])
    assert not mark.exists()


def test_array_with_a_plain_dependency_gates_every_child(batch, gates):
    queue = _queue(batch, vcpus=4)
    gate = gates()
    first = submit(batch, queue, register(batch, gate.command()))
    array = submit(
        batch, queue, register(batch, ["true"]), arrayProperties={"size": 3}, dependsOn=[{"jobId": first}]
    )
    wait_status(batch, first, "RUNNING")
    wait_status(batch, array, "PENDING")
    assert batch.list_jobs(arrayJobId=array, jobStatus="RUNNABLE")["jobSummaryList"] == []
    gate.open()
    done = _wait_all(batch, [array, *(f"{array}:{i}" for i in range(3))])
    for i in range(3):
        assert done[f"{array}:{i}"]["startedAt"] >= describe(batch, first)["stoppedAt"]
    assert done[array]["status"] == "SUCCEEDED"


def test_n_to_n(batch, gates):
    queue = _queue(batch, vcpus=6)
    # Child 0 of the first array runs until the gate opens, which happens only once B:2 has run.
    gate = gates()
    a = submit(
        batch,
        queue,
        register(batch, ["sh", "-c", f'if [ "$AWS_BATCH_JOB_ARRAY_INDEX" = 0 ]; then {gate.shell()}; fi']),
        arrayProperties={"size": 3},
    )
    b = submit(
        batch,
        queue,
        register(batch, ["true"]),
        arrayProperties={"size": 3},
        dependsOn=[{"jobId": a, "type": "N_TO_N"}],
    )
    ids = [f"{x}:{i}" for x in (a, b) for i in range(3)]
    _wait_all(batch, [f"{b}:2"])
    gate.open()
    done = _wait_all(batch, [a, b, *ids])
    assert done[a]["status"] == "SUCCEEDED" and done[b]["status"] == "SUCCEEDED"
    for i in range(3):
        assert done[f"{b}:{i}"]["startedAt"] >= done[f"{a}:{i}"]["stoppedAt"]
    # Child i waits for child i only, not for the whole array.
    assert done[f"{b}:2"]["startedAt"] < done[f"{a}:0"]["stoppedAt"]


def test_n_to_n_failed_child_fails_only_its_partner(batch, tmp_path):
    queue = _queue(batch, vcpus=4)
    a = submit(
        batch,
        queue,
        register(batch, ["sh", "-c", 'sleep 0.2; test "$AWS_BATCH_JOB_ARRAY_INDEX" != 1']),
        arrayProperties={"size": 3},
    )
    marks = tmp_path / "b"
    marks.mkdir()
    b = submit(
        batch,
        queue,
        register(batch, ["sh", "-c", f"touch {marks}/$AWS_BATCH_JOB_ARRAY_INDEX"]),
        arrayProperties={"size": 3},
        dependsOn=[{"jobId": a, "type": "N_TO_N"}],
    )
    done = _wait_all(batch, [a, b, *(f"{x}:{i}" for x in (a, b) for i in range(3))])
    assert done[f"{a}:1"]["status"] == "FAILED"
    assert done[f"{b}:1"]["status"] == "FAILED" and done[f"{b}:1"]["statusReason"] == "Dependent Job failed"
    _never_started(done[f"{b}:1"])
    assert done[f"{b}:0"]["status"] == done[f"{b}:2"]["status"] == "SUCCEEDED"
    assert done[b]["status"] == "FAILED" and done[b]["statusReason"] == "Array Child Job failed"
    assert sorted(p.name for p in marks.iterdir()) == ["0", "2"]


def test_n_to_n_on_an_array_that_failed_before_it_had_children(batch, tmp_path):
    """The first array fails on its own dependency and never gets children: the second must not wait forever."""
    queue = _queue(batch, vcpus=4)
    gate = submit(batch, queue, register(batch, ["sh", "-c", "sleep 0.5; exit 1"]))
    a = submit(
        batch, queue, register(batch, ["true"]), arrayProperties={"size": 3}, dependsOn=[{"jobId": gate}]
    )
    marks = tmp_path / "b"
    marks.mkdir()
    jd = register(batch, ["sh", "-c", f"touch {marks}/$AWS_BATCH_JOB_ARRAY_INDEX"])
    b = submit(batch, queue, jd, arrayProperties={"size": 3}, dependsOn=[{"jobId": a, "type": "N_TO_N"}])
    done = _wait_all(batch, [gate, a, b], timeout=10)
    assert done[a]["status"] == "FAILED" and done[a]["statusReason"] == "Dependent Job failed"
    assert done[b]["status"] == "FAILED"
    # Submitted after the first array failed: the same.
    c = submit(batch, queue, jd, arrayProperties={"size": 3}, dependsOn=[{"jobId": a, "type": "N_TO_N"}])
    assert wait_status(batch, c, ("FAILED", "SUCCEEDED"), timeout=10)["status"] == "FAILED"
    for parent in (b, c):
        kids = batch.list_jobs(arrayJobId=parent, jobStatus="FAILED")["jobSummaryList"]
        assert all(k["statusReason"] == "Dependent Job failed" for k in kids)
    assert list(marks.iterdir()) == []


def test_n_to_n_refusals(batch):
    queue = _queue(batch)
    jd = register(batch, ["true"])
    three = submit(batch, queue, jd, arrayProperties={"size": 3})
    plain = submit(batch, queue, jd)
    with pytest.raises(batch.exceptions.ClientException, match="size"):
        submit(batch, queue, jd, arrayProperties={"size": 4}, dependsOn=[{"jobId": three, "type": "N_TO_N"}])
    with pytest.raises(batch.exceptions.ClientException):
        submit(batch, queue, jd, arrayProperties={"size": 3}, dependsOn=[{"jobId": plain, "type": "N_TO_N"}])
    with pytest.raises(batch.exceptions.ClientException):
        submit(batch, queue, jd, dependsOn=[{"jobId": three, "type": "N_TO_N"}])  # not an array itself
    with pytest.raises(batch.exceptions.ClientException):
        submit(batch, queue, jd, arrayProperties={"size": 3}, dependsOn=[{"type": "N_TO_N"}])  # no jobId


def test_sequential(batch):
    queue = _queue(batch, vcpus=4)
    parent = submit(
        batch,
        queue,
        register(batch, ["sleep", "0.2"]),
        arrayProperties={"size": 4},
        dependsOn=[{"type": "SEQUENTIAL"}],
    )
    kids = [f"{parent}:{i}" for i in range(4)]
    wait_for(lambda: len(_many(batch, kids)) == 4, timeout=5, message="children created")
    running_seen = 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # never two children at once, though there is room for four
        states = _many(batch, kids)
        active = [k for k in kids if states[k]["status"] in ("STARTING", "RUNNING")]
        assert len(active) <= 1, active
        running_seen += bool(active)
        if all(states[k]["status"] in ("SUCCEEDED", "FAILED") for k in kids):
            break
        time.sleep(0.03)
    done = _wait_all(batch, [parent, *kids])
    assert done[parent]["status"] == "SUCCEEDED"
    for i in range(1, 4):
        assert done[kids[i]]["startedAt"] >= done[kids[i - 1]]["stoppedAt"]
    assert running_seen


def test_sequential_failure_fails_the_rest(batch, tmp_path):
    queue = _queue(batch, vcpus=4)
    marks = tmp_path / "kids"
    marks.mkdir()
    cmd = f'touch {marks}/$AWS_BATCH_JOB_ARRAY_INDEX; test "$AWS_BATCH_JOB_ARRAY_INDEX" != 1'
    parent = submit(
        batch,
        queue,
        register(batch, ["sh", "-c", cmd]),
        arrayProperties={"size": 4},
        dependsOn=[{"type": "SEQUENTIAL"}],
    )
    kids = [f"{parent}:{i}" for i in range(4)]
    done = _wait_all(batch, [parent, *kids])
    assert [done[k]["status"] for k in kids] == ["SUCCEEDED", "FAILED", "FAILED", "FAILED"]
    assert done[kids[1]]["statusReason"] == "Essential container in task exited"
    for k in kids[2:]:
        assert done[k]["statusReason"] == "Dependent Job failed"
        _never_started(done[k])
    assert done[parent]["status"] == "FAILED" and done[parent]["statusReason"] == "Array Child Job failed"
    assert sorted(p.name for p in marks.iterdir()) == ["0", "1"]


def test_mixed_plain_and_sequential(batch):
    queue = _queue(batch, vcpus=4)
    first = submit(batch, queue, register(batch, ["sleep", "0.5"]))
    parent = submit(
        batch,
        queue,
        register(batch, ["sleep", "0.1"]),
        arrayProperties={"size": 3},
        dependsOn=[{"jobId": first}, {"type": "SEQUENTIAL"}],
    )
    kids = [f"{parent}:{i}" for i in range(3)]
    done = _wait_all(batch, [first, parent, *kids])
    assert done[parent]["status"] == "SUCCEEDED"
    assert done[kids[0]]["startedAt"] >= done[first]["stoppedAt"]
    for i in range(1, 3):
        assert done[kids[i]]["startedAt"] >= done[kids[i - 1]]["stoppedAt"]
    assert describe(batch, parent)["dependsOn"] == [{"jobId": first}, {"type": "SEQUENTIAL"}]


def test_sequential_refusals(batch):
    queue = _queue(batch)
    jd = register(batch, ["true"])
    with pytest.raises(batch.exceptions.ClientException):
        submit(batch, queue, jd, dependsOn=[{"type": "SEQUENTIAL"}])  # not an array
    other = submit(batch, queue, jd)
    with pytest.raises(batch.exceptions.ClientException):
        submit(
            batch, queue, jd, arrayProperties={"size": 2}, dependsOn=[{"jobId": other, "type": "SEQUENTIAL"}]
        )


def test_unknown_dependency_is_refused(batch):
    queue = _queue(batch)
    jd = register(batch, ["true"])
    missing = str(uuid.uuid4())
    with pytest.raises(batch.exceptions.ClientException, match=missing):
        submit(batch, queue, jd, dependsOn=[{"jobId": missing}])
    ok = submit(batch, queue, jd)
    with pytest.raises(batch.exceptions.ClientException):
        submit(batch, queue, jd, dependsOn=[{"jobId": ok}, {"jobId": missing}])
    # Nothing was stored by the refused submissions.
    names = [
        s["jobId"]
        for s in batch.list_jobs(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": ["*"]}])[
            "jobSummaryList"
        ]
    ]
    assert names == [ok]


def test_at_most_20_dependencies(batch):
    queue = _queue(batch, vcpus=4)
    jd = register(batch, ["true"])
    deps = [submit(batch, queue, jd) for _ in range(21)]
    with pytest.raises(batch.exceptions.ClientException):
        submit(batch, queue, jd, dependsOn=[{"jobId": d} for d in deps])
    twenty = submit(batch, queue, jd, dependsOn=[{"jobId": d} for d in deps[:20]])
    done = _wait_all(batch, [*deps, twenty])
    assert done[twenty]["status"] == "SUCCEEDED"
    assert done[twenty]["startedAt"] >= max(done[d]["stoppedAt"] for d in deps[:20])


def test_dependency_given_as_arn(batch):
    queue = _queue(batch)
    jd = register(batch, ["true"])
    a = batch.submit_job(jobName="arn-dep", jobQueue=queue, jobDefinition=jd)
    b = submit(batch, queue, jd, dependsOn=[{"jobId": a["jobArn"]}])
    done = _wait_all(batch, [a["jobId"], b])
    assert done[b]["status"] == "SUCCEEDED" and done[b]["startedAt"] >= done[a["jobId"]]["stoppedAt"]


def test_deleting_a_queue_fails_each_waiting_job_once(server, batch, tmp_path):
    """Jobs of a deleted queue fail ("JobQueue deleted"); a dependent failed by the cascade first stays as it is
    (terminal states never change), and its dependents in another queue are released exactly once."""
    import json
    import urllib.request

    ce = make_ce(batch, vcpus=2, state="DISABLED")
    doomed = make_queue(batch, [ce])
    other = _queue(batch)
    jd = register(batch, ["touch", str(tmp_path / "never")])
    a = submit(batch, doomed, jd)
    b = submit(batch, doomed, jd, dependsOn=[{"jobId": a}])
    keeps = submit(batch, other, register(batch, ["true"]))
    c = submit(batch, other, jd, dependsOn=[{"jobId": b}, {"jobId": keeps}])
    wait_for(lambda: describe(batch, b)["status"] == "PENDING", timeout=5, message="b PENDING")
    batch.update_job_queue(jobQueue=doomed, state="DISABLED")
    batch.delete_job_queue(jobQueue=doomed)
    done = _wait_all(batch, [a, b, c, keeps])
    assert done[a]["status"] == "FAILED" and done[a]["statusReason"] == "JobQueue deleted"
    assert done[b]["status"] == "FAILED" and done[c]["status"] == "FAILED"
    assert done[c]["statusReason"] == "Dependent Job failed"
    for job_id in (a, b, c):
        with urllib.request.urlopen(f"{server.url}/batchd/events?jobId={job_id}", timeout=10) as resp:
            statuses = [e["detail"]["status"] for e in json.load(resp)["events"]]
        assert statuses.count("FAILED") == 1, (job_id, statuses)
    assert not (tmp_path / "never").exists()
