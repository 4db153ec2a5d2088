"""Retries (attempts, evaluateOnExit), attempt timeouts and job-state time limits, with real processes."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from conftest import wait_for
from jobkit import Gate, describe, make_ce, make_queue, register, scheduler_passed, submit, wait_status

TIMEOUT_REASON = "Job attempt duration exceeded timeout"


def _queue(batch, vcpus: int = 4, **extra) -> tuple[str, str]:
    ce = make_ce(batch, vcpus=vcpus)
    return make_queue(batch, [ce], **extra), ce


def _finished(batch, job_id: str, timeout: float = 20) -> dict:
    return wait_status(batch, job_id, ("SUCCEEDED", "FAILED"), timeout=timeout)


def _stream_lines(server, stream: str) -> list[str]:
    events = server.client("logs").get_log_events(
        logGroupName="/aws/batch/job", logStreamName=stream, startFromHead=True
    )["events"]
    return [e["message"] for e in events]


def _statuses_logged(server, job_id: str) -> list[str]:
    with urllib.request.urlopen(f"{server.url}/batchd/events?jobId={job_id}", timeout=10) as resp:
        return [e["detail"]["status"] for e in json.load(resp)["events"]]


def _exits(job: dict) -> list[int | None]:
    return [a["container"].get("exitCode") for a in job["attempts"]]


def test_fails_twice_then_succeeds(server, batch, tmp_path):
    queue, _ = _queue(batch)
    counter = tmp_path / "count"
    cmd = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {counter}; "
        'echo "attempt=$AWS_BATCH_JOB_ATTEMPT run=$n"; [ "$n" -ge 3 ]'
    )
    job_id = submit(batch, queue, register(batch, ["sh", "-c", cmd]), retryStrategy={"attempts": 3})
    job = _finished(batch, job_id)
    assert job["status"] == "SUCCEEDED"
    assert _exits(job) == [1, 1, 0]
    assert [a["statusReason"] for a in job["attempts"]] == ["Essential container in task exited"] * 3
    streams = [a["container"]["logStreamName"] for a in job["attempts"]]
    assert len(set(streams)) == 3
    assert [_stream_lines(server, s) for s in streams] == [[f"attempt={i} run={i}"] for i in (1, 2, 3)]
    for prev, nxt in zip(job["attempts"], job["attempts"][1:], strict=False):
        assert prev["startedAt"] <= prev["stoppedAt"] <= nxt["startedAt"] <= nxt["stoppedAt"]
    assert job["startedAt"] == job["attempts"][-1]["startedAt"]
    assert job["container"]["exitCode"] == 0
    assert job["retryStrategy"] == {"attempts": 3}
    # Each retry passes through RUNNABLE again.
    assert _statuses_logged(server, job_id) == ["RUNNABLE", "STARTING", "RUNNING"] * 3 + ["SUCCEEDED"]
    assert counter.read_text().strip() == "3"


def test_attempts_run_out(batch):
    queue, _ = _queue(batch)
    job = _finished(
        batch, submit(batch, queue, register(batch, ["sh", "-c", "exit 2"]), retryStrategy={"attempts": 2})
    )
    assert job["status"] == "FAILED" and _exits(job) == [2, 2]
    assert job["statusReason"] == "Essential container in task exited"


def test_retry_strategy_from_the_job_definition_and_override(batch):
    queue, _ = _queue(batch)
    jd = register(batch, ["sh", "-c", "exit 1"], retryStrategy={"attempts": 2})
    from_jd = submit(batch, queue, jd)
    overridden = submit(batch, queue, jd, retryStrategy={"attempts": 3})
    assert _exits(_finished(batch, from_jd)) == [1, 1]
    assert _exits(_finished(batch, overridden)) == [1, 1, 1]


@pytest.mark.parametrize(
    ("exit_code", "evaluate", "expected_attempts"),
    [
        (3, [{"onExitCode": "3", "action": "EXIT"}], 1),  # a match decides: EXIT
        (4, [{"onExitCode": "3", "action": "EXIT"}], 3),  # no match: retry
        (12, [{"onExitCode": "1*", "action": "EXIT"}], 1),  # prefix glob
        (21, [{"onExitCode": "1*", "action": "EXIT"}], 3),
        (5, [{"onExitCode": "5", "action": "exit"}], 1),  # the action is case-insensitive
        (
            6,
            [{"onExitCode": "6", "action": "retry"}, {"onExitCode": "*", "action": "EXIT"}],
            3,
        ),  # first match wins
        (7, [{"onExitCode": "6", "action": "RETRY"}, {"onExitCode": "*", "action": "EXIT"}], 1),
        (8, [{"onStatusReason": "Essential*", "action": "EXIT"}], 1),
        (
            8,
            [{"onStatusReason": "Essential*", "onExitCode": "9", "action": "EXIT"}],
            3,
        ),  # every condition must match
        (9, [{"onReason": "*", "action": "EXIT"}], 1),  # "*" matches the empty container reason too
    ],
    ids=[
        "exit-on-code",
        "no-match-retries",
        "glob-match",
        "glob-no-match",
        "lower-case",
        "first-match-retry",
        "first-match-exit",
        "on-status-reason",
        "all-conditions",
        "on-reason-star",
    ],
)
def test_evaluate_on_exit(batch, exit_code, evaluate, expected_attempts):
    queue, _ = _queue(batch)
    job_id = submit(
        batch,
        queue,
        register(batch, ["sh", "-c", f"exit {exit_code}"]),
        retryStrategy={"attempts": 3, "evaluateOnExit": evaluate},
    )
    job = _finished(batch, job_id)
    assert job["status"] == "FAILED"
    assert _exits(job) == [exit_code] * expected_attempts


def test_success_is_never_retried(batch):
    queue, _ = _queue(batch)
    job = _finished(
        batch,
        submit(
            batch,
            queue,
            register(batch, ["true"]),
            retryStrategy={"attempts": 3, "evaluateOnExit": [{"onExitCode": "0", "action": "RETRY"}]},
        ),
    )
    assert job["status"] == "SUCCEEDED" and _exits(job) == [0]


def test_terminated_job_is_not_retried(batch):
    queue, _ = _queue(batch)
    job_id = submit(batch, queue, register(batch, ["sleep", "3600"]), retryStrategy={"attempts": 3})
    wait_status(batch, job_id, "RUNNING")
    batch.terminate_job(jobId=job_id, reason="stop, no retry")
    job = _finished(batch, job_id)
    assert (
        job["status"] == "FAILED" and job["statusReason"] == "stop, no retry" and job["isTerminated"] is True
    )
    assert len(job["attempts"]) == 1 and _exits(job)[0] in (137, 143)
    scheduler_passed(batch, queue)  # a retry would have been dispatched ahead of this later job
    assert len(describe(batch, job_id)["attempts"]) == 1


def _counted_failure(batch, queue: str, tmp_path: Path, gate: Gate, attempts: int) -> tuple[str, Path]:
    """A job that appends to `runs` at each attempt, runs until `gate` opens, exits 1; retried up to
    `attempts`."""
    counter = tmp_path / "runs"
    cmd = ["sh", "-c", f"echo run >> {counter}; {gate.shell()}; exit 1"]
    return submit(batch, queue, register(batch, cmd), retryStrategy={"attempts": attempts}), counter


def test_cancelled_between_attempts_is_not_retried(batch, tmp_path, gates):
    queue, ce = _queue(batch, vcpus=1)
    gate = gates()
    job_id, counter = _counted_failure(batch, queue, tmp_path, gate, attempts=3)
    wait_status(batch, job_id, "RUNNING")
    # With the compute environment disabled, the failed attempt's retry waits in RUNNABLE, at the head.
    batch.update_compute_environment(computeEnvironment=ce, state="DISABLED")
    gate.open()
    job = wait_status(batch, job_id, "RUNNABLE")
    assert len(job["attempts"]) == 1
    batch.cancel_job(jobId=job_id, reason="no more tries")
    job = wait_status(batch, job_id, "FAILED")
    assert job["statusReason"] == "no more tries" and job["isCancelled"] is True
    assert len(job["attempts"]) == 1
    batch.update_compute_environment(computeEnvironment=ce, state="ENABLED")
    scheduler_passed(batch, queue)  # a job submitted behind it has run: it was not started again
    assert len(describe(batch, job_id)["attempts"]) == 1
    assert counter.read_text().split() == ["run"]


def test_cancel_while_running_does_not_stop_the_retries(batch, tmp_path, gates):
    """R5: CancelJob on a RUNNING job changes nothing, so a failing attempt is retried as usual."""
    queue, _ = _queue(batch)
    gate = gates()
    job_id, _ = _counted_failure(batch, queue, tmp_path, gate, attempts=2)
    wait_status(batch, job_id, "RUNNING")
    batch.cancel_job(jobId=job_id, reason="too late")
    gate.open()
    job = _finished(batch, job_id)
    assert job["status"] == "FAILED" and "isCancelled" not in job and len(job["attempts"]) == 2


# --- timeouts ----------------------------------------------------------------------------------------------


def test_attempt_timeout_fails_without_retry(batch):
    queue, _ = _queue(batch)
    jd = register(batch, ["sleep", "3600"])
    job_id = submit(batch, queue, jd, timeout={"attemptDurationSeconds": 1}, retryStrategy={"attempts": 3})
    job = _finished(batch, job_id)
    assert job["status"] == "FAILED" and job["statusReason"] == TIMEOUT_REASON
    assert len(job["attempts"]) == 1
    assert job["attempts"][0]["statusReason"] == TIMEOUT_REASON
    assert job["container"]["exitCode"] in (137, 143) and _exits(job)[0] in (137, 143)
    assert job["stoppedAt"] - job["startedAt"] >= 1000
    assert job["timeout"] == {"attemptDurationSeconds": 1}
    assert "isTerminated" not in job and "isCancelled" not in job


def test_timeout_ignoring_sigterm_is_killed_after_the_grace(batch):
    queue, _ = _queue(batch)
    jd = register(batch, ["sh", "-c", "trap '' TERM; sleep 3600 & wait; sleep 3600"])
    job_id = submit(batch, queue, jd, timeout={"attemptDurationSeconds": 1})
    job = _finished(batch, job_id)
    assert job["statusReason"] == TIMEOUT_REASON and job["container"]["exitCode"] == 137
    assert job["stoppedAt"] - job["startedAt"] >= 2500  # 1 s timeout + 2 s grace (test setting)


def test_timeout_from_the_job_definition_counts_per_attempt(batch):
    """The countdown restarts with each attempt: two 2 s attempts under a 3 s timeout both finish. (A timeout
    is a wall-clock rule; the 1 s margin per attempt is for the start of `sh` on a loaded machine.)"""
    queue, _ = _queue(batch)
    jd = register(
        batch,
        ["sh", "-c", 'sleep 2; [ "$AWS_BATCH_JOB_ATTEMPT" = 2 ]'],
        timeout={"attemptDurationSeconds": 3},
    )
    job = _finished(batch, submit(batch, queue, jd, retryStrategy={"attempts": 2}))
    assert job["status"] == "SUCCEEDED" and _exits(job) == [1, 0]
    assert job["stoppedAt"] - job["attempts"][0]["startedAt"] >= 4000  # longer than one timeout in all


# --- job-state time limits ----------------------------------------------------------------------------------


def test_state_time_limit_cancels_a_job_that_can_never_fit(batch):
    action = {"reason": "stuck", "state": "RUNNABLE", "maxTimeSeconds": 1, "action": "CANCEL"}
    queue, _ = _queue(batch, vcpus=2, jobStateTimeLimitActions=[action])
    big = submit(batch, queue, register(batch, ["true"], vcpus=64))
    small = submit(batch, queue, register(batch, ["true"]))
    job = wait_status(batch, big, "RUNNABLE")
    wait_for(
        lambda: (describe(batch, big).get("statusReason") or "").startswith("MISCONFIGURATION:JOB_RESOURCE"),
        message="MISCONFIGURATION reason",
    )
    assert describe(batch, small)["status"] == "RUNNABLE"  # blocked behind the head
    job = wait_status(batch, big, ("FAILED", "SUCCEEDED"))
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Canceled by JobStateTimeLimit action due to reason: stuck"
    assert job["attempts"] == [] and "startedAt" not in job
    assert job["stoppedAt"] - job["createdAt"] >= 1000
    # The queue moves again.
    assert _finished(batch, small)["status"] == "SUCCEEDED"


def test_state_time_limit_applies_to_a_head_waiting_for_capacity(batch, gates):
    action = {"reason": "capacity", "state": "RUNNABLE", "maxTimeSeconds": 1, "action": "CANCEL"}
    queue, _ = _queue(batch, vcpus=1, jobStateTimeLimitActions=[action])
    blocker = submit(batch, queue, register(batch, gates().command()))
    wait_status(batch, blocker, "RUNNING")
    head = submit(batch, queue, register(batch, ["true"]))
    job = wait_status(batch, head, ("FAILED", "SUCCEEDED"))
    assert job["statusReason"] == "Canceled by JobStateTimeLimit action due to reason: capacity"
    assert describe(batch, blocker)["status"] == "RUNNING"
    batch.terminate_job(jobId=blocker, reason="cleanup")
