"""What an attempt's start and end change on its job: pure functions of the job row (no I/O).

The scheduler writes ends in batches (one transaction for every attempt that ended in the same event-loop
turn), so a burst of short jobs costs one commit rather than one per job; a start is written at once, before
its held process is released.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchd.domain import jobs as J
from batchd.domain.retry import AttemptOutcome, should_retry
from batchd.executors.base import AttemptExit


@dataclass
class Started:
    """An attempt's process is running: the job becomes RUNNING with the executor's handle."""

    job_id: str
    attempt: int
    handle: dict[str, Any]
    stream: str


@dataclass
class Ended:
    """An attempt ended (or could not start): the job succeeds, fails or is retried."""

    job_id: str
    attempt: int
    result: AttemptExit
    retry: bool = True
    ran_on: str | None = None  # the server whose attempt it was, when not this one (a dead server's)


def task_arn(row: dict[str, Any], attempt: int) -> str:
    prefix = row["queue_arn"].split(":batch:", 1)[0]
    region_account = row["queue_arn"].split(":batch:", 1)[1].split(":job-queue/", 1)[0]
    return f"{prefix}:ecs:{region_account}:task/batchd/{row['id'].replace(':', '-')}-{attempt}"


def running_changes(row: dict[str, Any], started: Started, now: int) -> dict[str, Any]:
    runtime = {**row["runtime"], "handle": started.handle,
               "container": {"logStreamName": started.stream, "taskArn": task_arn(row, started.attempt)}}
    changes: dict[str, Any] = {"status": J.RUNNING, "started_at": now, "runtime": runtime}
    seconds = (row["spec"].get("timeout") or {}).get("attemptDurationSeconds")
    if seconds:
        changes["deadline_at"] = now + int(seconds) * 1000
    return changes


def ended_changes(row: dict[str, Any], ended: Ended, now: int) -> dict[str, Any]:
    """SUCCEEDED on exit code 0 (unless terminated or timed out); RUNNABLE again when the retry strategy says
    so; FAILED otherwise. The attempt is appended to `attempts` with AWS's reasons."""
    result, attempt = ended.result, ended.attempt
    runtime = dict(row["runtime"])
    timed_out = bool(runtime.pop("timedOut", False))
    runtime.pop("handle", None)
    stream = (runtime.get("container") or {}).get("logStreamName")
    if row["is_terminated"]:
        attempt_reason = row["status_reason"]
    elif timed_out:
        attempt_reason = J.REASON_TIMEOUT
    elif result.exit_code is None:
        attempt_reason = result.reason or "Task failed to start"
    else:
        attempt_reason = J.REASON_EXITED
    container: dict[str, Any] = {}
    if result.exit_code in (126, 127) and not result.reason:
        # The shell could not run the command; its message is in the job's log.
        result = AttemptExit(result.exit_code, "CannotStartContainerError: the command was not found or "
                                               f"is not executable (exit code {result.exit_code})")
    if result.exit_code is not None:
        container["exitCode"] = result.exit_code
    if result.reason:
        container["reason"] = result.reason[:255]
    if stream:
        container["logStreamName"] = stream
        container["taskArn"] = task_arn(row, attempt)
    record: dict[str, Any] = {"container": container, "statusReason": attempt_reason}
    if row["started_at"]:
        record["startedAt"] = row["started_at"]
    record["stoppedAt"] = now
    runtime["attempts"] = [*runtime.get("attempts", []), record]
    runtime["container"] = container
    outcome = AttemptOutcome(result.exit_code, result.reason, attempt_reason, cancelled=row["is_cancelled"],
                             terminated=row["is_terminated"], timed_out=timed_out)
    changes: dict[str, Any] = {"runtime": runtime, "deadline_at": None}
    if result.exit_code == 0 and not row["is_terminated"] and not timed_out:
        changes.update(status=J.SUCCEEDED, status_reason=J.REASON_EXITED, stopped_at=now)
    elif ended.retry and should_retry(row["spec"].get("retryStrategy"), attempt, outcome):
        changes.update(status=J.RUNNABLE, runnable_at=now, status_reason=None)
    else:
        changes.update(status=J.FAILED, status_reason=attempt_reason, stopped_at=now)
    return changes
