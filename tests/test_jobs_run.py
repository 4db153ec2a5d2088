"""Jobs that really run: lifecycle, exit codes, logs, capacity, priority, terminate, env, restart."""

from __future__ import annotations

import time

import pytest

from conftest import wait_for
from jobkit import describe, log_lines, make_ce, make_queue, register, setup, submit, wait_status


def test_failed_job_exit_code_and_log(server, batch):
    queue, jd = setup(batch, ["sh", "-c", "echo hello; exit 3"])
    job_id = submit(batch, queue, jd)
    job = wait_status(batch, job_id, ("SUCCEEDED", "FAILED"))
    assert job["status"] == "FAILED"
    assert job["container"]["exitCode"] == 3
    assert job["statusReason"] == "Essential container in task exited"
    assert job["createdAt"] <= job["startedAt"] <= job["stoppedAt"]
    assert len(job["attempts"]) == 1 and job["attempts"][0]["container"]["exitCode"] == 3
    assert job["jobQueue"] == queue and job["jobDefinition"] == jd
    assert "hello" in log_lines(server, job)
    out = server.aws("logs", "get-log-events", "--log-group-name", "/aws/batch/job",
                     "--log-stream-name", job["container"]["logStreamName"], "--start-from-head")
    assert [e["message"] for e in out["events"]] == ["hello"]


def test_succeeded_job_and_lifecycle_states(batch):
    queue, jd = setup(batch, ["true"])
    job_id = submit(batch, queue, jd)
    job = wait_status(batch, job_id, ("SUCCEEDED", "FAILED"))
    assert job["status"] == "SUCCEEDED" and job["container"]["exitCode"] == 0
    assert "isCancelled" not in job and "isTerminated" not in job


def test_capacity_two_run_one_waits(batch, gates):
    gate = gates()
    queue, jd = setup(batch, gate.command(), vcpus=2)
    ids = [submit(batch, queue, jd) for _ in range(3)]
    wait_for(lambda: sum(describe(batch, i)["status"] == "RUNNING" for i in ids) == 2, message="two RUNNING")
    states = sorted(describe(batch, i)["status"] for i in ids)
    assert states == ["RUNNABLE", "RUNNING", "RUNNING"]
    third = ids[2]
    assert describe(batch, third)["status"] == "RUNNABLE"  # FIFO: the last submitted waits
    gate.open()
    job = wait_status(batch, third, "SUCCEEDED")
    # It started once one of the two had stopped (the gate lets both end together: either may be first).
    firsts = [wait_status(batch, i, "SUCCEEDED") for i in ids[:2]]
    assert job["startedAt"] >= min(f["stoppedAt"] for f in firsts)


def test_higher_priority_queue_first(batch, gates):
    ce = make_ce(batch, vcpus=1)
    low = make_queue(batch, [ce], priority=1)
    high = make_queue(batch, [ce], priority=10)
    gate = gates()
    blocker_jd = register(batch, gate.command())
    jd = register(batch, ["true"])
    blocker = submit(batch, low, blocker_jd)
    wait_status(batch, blocker, "RUNNING")
    low_job = submit(batch, low, jd)
    high_job = submit(batch, high, jd)
    wait_status(batch, high_job, "RUNNABLE")
    gate.open()
    hi = wait_status(batch, high_job, "SUCCEEDED")
    lo = wait_status(batch, low_job, "SUCCEEDED")
    assert hi["startedAt"] <= lo["startedAt"]


def test_jobs_submitted_behind_a_waiting_head_start_when_capacity_frees(batch, gates):
    """A SubmitJob wakes a pass over its own queue only, and none while that queue's head waits for capacity:
    the waiting jobs still start when capacity frees, and another queue's new job starts meanwhile."""
    busy_ce, free_ce = make_ce(batch, vcpus=2), make_ce(batch, vcpus=2)
    busy, free = make_queue(batch, [busy_ce]), make_queue(batch, [free_ce])
    gate = gates()
    blocker = submit(batch, busy, register(batch, gate.command(), vcpus=2))
    wait_status(batch, blocker, "RUNNING")
    jd = register(batch, ["true"])
    waiting = [submit(batch, busy, jd) for _ in range(3)]
    # The other queue's job has run: the scheduler has passed since the three were submitted.
    elsewhere = wait_status(batch, submit(batch, free, jd), "SUCCEEDED")
    assert [describe(batch, j)["status"] for j in waiting] == ["RUNNABLE"] * 3
    assert describe(batch, blocker)["status"] == "RUNNING"
    gate.open()
    first = wait_status(batch, blocker, "SUCCEEDED")
    for job_id in waiting:
        job = wait_status(batch, job_id, "SUCCEEDED")
        assert job["startedAt"] >= first["stoppedAt"] >= elsewhere["startedAt"]


def test_terminate_job_that_ignores_sigterm(batch, server):
    queue, jd = setup(batch, ["sh", "-c", "trap '' TERM; echo started; sleep 60 & wait; sleep 60"])
    job_id = submit(batch, queue, jd)
    running = wait_status(batch, job_id, "RUNNING")
    # Terminate only once the trap is in place (its "started" line is in the log).
    wait_for(lambda: "started" in log_lines(server, running), message="the job's trap")
    t0 = time.monotonic()
    batch.terminate_job(jobId=job_id, reason="operator said stop")
    job = wait_status(batch, job_id, "FAILED", timeout=20)
    took = time.monotonic() - t0
    assert took >= 1.5  # the server's grace period in tests is 2 s: SIGKILL came after it
    assert job["statusReason"] == "operator said stop"
    assert job["isTerminated"] is True
    assert job["container"]["exitCode"] == 137
    # A finished job stays finished.
    batch.terminate_job(jobId=job_id, reason="again")
    assert describe(batch, job_id)["statusReason"] == "operator said stop"


def test_environment_and_ref_substitution(server, batch):
    queue, jd = setup(
        batch,
        ["sh", "-c", 'echo "in=Ref::inputfile codec=Ref::codec env=$GREETING job=$AWS_BATCH_JOB_ID '
                     'q=$AWS_BATCH_JQ_NAME attempt=$AWS_BATCH_JOB_ATTEMPT ce=$AWS_BATCH_CE_NAME"'],
        container={"environment": [{"name": "GREETING", "value": "from-definition"}]},
        parameters={"codec": "mp4", "inputfile": "default.mov"},
    )
    job_id = submit(batch, queue, jd, parameters={"inputfile": "movie.mov"},
                    containerOverrides={"environment": [{"name": "GREETING", "value": "overridden"}]})
    job = wait_status(batch, job_id, ("SUCCEEDED", "FAILED"))
    assert job["status"] == "SUCCEEDED"
    line = log_lines(server, job)[0]
    qname = queue.rsplit("/", 1)[1]
    assert f"in=movie.mov codec=mp4 env=overridden job={job_id} q={qname} attempt=1 ce=ce-" in line


def test_command_override_and_unknown_definition(batch):
    queue, jd = setup(batch, ["false"])
    job_id = submit(batch, queue, jd, containerOverrides={"command": ["sh", "-c", "exit 0"]})
    assert wait_status(batch, job_id, ("SUCCEEDED", "FAILED"))["status"] == "SUCCEEDED"
    with pytest.raises(batch.exceptions.ClientException, match="does not exist or is not in ACTIVE"):
        submit(batch, queue, "no-such-definition")
    with pytest.raises(batch.exceptions.ClientException, match="not found"):
        submit(batch, "no-such-queue", jd)


def test_disabled_queue_refuses_new_jobs(batch):
    queue, jd = setup(batch, ["true"])
    batch.update_job_queue(jobQueue=queue, state="DISABLED")
    with pytest.raises(batch.exceptions.ClientException, match="DISABLED"):
        submit(batch, queue, jd)


def test_restart_while_job_runs(make_server, gates):
    srv = make_server()
    batch = srv.client()
    gate = gates()
    queue, jd = setup(batch, ["sh", "-c", f"echo before; {gate.shell()}; echo after; exit 4"])
    job_id = submit(batch, queue, jd)
    wait_status(batch, job_id, "RUNNING")
    srv.restart()
    batch = srv.client()
    assert describe(batch, job_id)["status"] == "RUNNING"  # adopted by the restarted server
    gate.open()
    job = wait_status(batch, job_id, "FAILED")
    assert job["container"]["exitCode"] == 4
    assert len(job["attempts"]) == 1
    assert log_lines(srv, job) == ["before", "after"]
