"""scheduler/settle.py: what an attempt's start and end change on its job (pure functions, no server)."""

from __future__ import annotations

from batchd.domain import jobs as J
from batchd.executors.base import AttemptExit
from batchd.scheduler.settle import Ended, Started, ended_changes, running_changes, task_arn

QUEUE = "arn:aws:batch:us-east-1:123456789012:job-queue/q"


def _row(**extra) -> dict:
    row = {"id": "job-1", "queue_arn": QUEUE, "status": J.RUNNING, "attempt": 1, "started_at": 1000,
           "status_reason": None, "is_cancelled": False, "is_terminated": False,
           "spec": {"container": {"command": ["true"]}},
           "runtime": {"handle": {"pid": 1}, "container": {"logStreamName": "jd/default/job-1"}}}
    row.update(extra)
    return row


def test_running_records_the_handle_stream_and_deadline():
    row = _row(status=J.STARTING, started_at=None, runtime={},
               spec={"container": {}, "timeout": {"attemptDurationSeconds": 60}})
    changes = running_changes(row, Started("job-1", 1, {"pid": 42}, "jd/default/job-1"), 5000)
    assert changes["status"] == J.RUNNING and changes["started_at"] == 5000
    assert changes["deadline_at"] == 5000 + 60_000
    assert changes["runtime"]["handle"] == {"pid": 42}
    assert changes["runtime"]["container"] == {"logStreamName": "jd/default/job-1",
                                               "taskArn": task_arn(row, 1)}
    assert task_arn(row, 1) == "arn:aws:ecs:us-east-1:123456789012:task/batchd/job-1-1"


def test_exit_zero_succeeds_and_appends_the_attempt():
    changes = ended_changes(_row(), Ended("job-1", 1, AttemptExit(0)), 2000)
    assert changes["status"] == J.SUCCEEDED and changes["stopped_at"] == 2000
    assert changes["status_reason"] == J.REASON_EXITED
    [attempt] = changes["runtime"]["attempts"]
    assert attempt["container"]["exitCode"] == 0 and attempt["startedAt"] == 1000 and attempt["stoppedAt"] == 2000
    assert "handle" not in changes["runtime"] and changes["deadline_at"] is None


def test_non_zero_exit_retries_while_attempts_remain_then_fails():
    spec = {"container": {}, "retryStrategy": {"attempts": 2}}
    first = ended_changes(_row(spec=spec), Ended("job-1", 1, AttemptExit(3)), 2000)
    assert first["status"] == J.RUNNABLE and first["runnable_at"] == 2000 and "stopped_at" not in first
    last = ended_changes(_row(spec=spec, attempt=2), Ended("job-1", 2, AttemptExit(3)), 3000)
    assert last["status"] == J.FAILED and last["runtime"]["container"]["exitCode"] == 3


def test_no_retry_when_told_not_to():
    spec = {"container": {}, "retryStrategy": {"attempts": 5}}
    changes = ended_changes(_row(spec=spec), Ended("job-1", 1, AttemptExit(None, "host gone"), retry=False), 2000)
    assert changes["status"] == J.FAILED and changes["status_reason"] == "host gone"


def test_terminated_and_timed_out_attempts_fail_with_their_reasons_even_on_exit_zero():
    terminated = ended_changes(_row(is_terminated=True, status_reason="stop it"),
                               Ended("job-1", 1, AttemptExit(0)), 2000)
    assert terminated["status"] == J.FAILED and terminated["status_reason"] == "stop it"
    timed_out = ended_changes(_row(runtime={"timedOut": True}), Ended("job-1", 1, AttemptExit(137)), 2000)
    assert timed_out["status"] == J.FAILED and timed_out["status_reason"] == J.REASON_TIMEOUT
    assert "timedOut" not in timed_out["runtime"]


def test_command_not_found_is_a_cannot_start_reason():
    changes = ended_changes(_row(), Ended("job-1", 1, AttemptExit(127)), 2000)
    assert changes["runtime"]["container"]["reason"].startswith("CannotStartContainerError")
    assert changes["runtime"]["container"]["exitCode"] == 127
