"""Helpers for job tests: a compute environment + queue + definition in one call, waiting on states, gates."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

# Every wait here detects a hang; it never measures. A timeout a test passes is raised to at least this, so a
# figure written for a quiet machine cannot fail a loaded one (waiting costs nothing when the event comes).
WAIT_SECONDS = float(os.environ.get("BATCHD_TEST_WAIT_SECONDS", "60"))


class Gate:
    """A file that jobs wait for: a job running `gate.command()` holds until the test calls `open()`.

    This replaces `sleep N` blockers, which a loaded machine may let finish before the test has looked at what
    must happen while they run. Opened at the end of the test by the `gates` fixture, whatever happened."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / f"gate-{uuid.uuid4().hex[:8]}"

    def shell(self) -> str:
        """A shell fragment that returns once the gate is open."""
        return f"while [ ! -e {self.path} ]; do sleep 0.05; done"

    def command(self, then: str = "true") -> list[str]:
        return ["sh", "-c", f"{self.shell()}; {then}"]

    def open(self) -> None:
        self.path.touch()


def name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_ce(batch: Any, vcpus: int = 4, state: str = "ENABLED") -> str:
    ce = name("ce")
    arn = batch.create_compute_environment(
        computeEnvironmentName=ce, type="MANAGED", state=state,
        computeResources={"type": "EC2", "maxvCpus": vcpus, "minvCpus": 0, "instanceTypes": ["optimal"],
                          "subnets": ["subnet-1"], "instanceRole": "ecsInstanceRole"},
    )["computeEnvironmentArn"]
    wait_valid(batch, "ce", arn)
    return arn


def make_queue(batch: Any, ce_arns: list[str], priority: int = 1, **extra: Any) -> str:
    q = name("q")
    arn = batch.create_job_queue(
        jobQueueName=q, priority=priority,
        computeEnvironmentOrder=[{"order": i + 1, "computeEnvironment": a} for i, a in enumerate(ce_arns)],
        **extra,
    )["jobQueueArn"]
    wait_valid(batch, "queue", arn)
    return arn


def wait_valid(batch: Any, kind: str, arn: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + max(timeout, WAIT_SECONDS)
    while time.monotonic() < deadline:
        if kind == "ce":
            docs = batch.describe_compute_environments(computeEnvironments=[arn])["computeEnvironments"]
        else:
            docs = batch.describe_job_queues(jobQueues=[arn])["jobQueues"]
        if docs and docs[0]["status"] == "VALID":
            return
        time.sleep(0.02)
    raise AssertionError(f"{arn} did not become VALID")


def register(batch: Any, command: list[str], vcpus: int = 1, memory: int = 128, **extra: Any) -> str:
    props = {"image": "busybox", "command": command,
             "resourceRequirements": [{"type": "VCPU", "value": str(vcpus)}, {"type": "MEMORY", "value": str(memory)}]}
    props.update(extra.pop("container", {}))
    return batch.register_job_definition(
        jobDefinitionName=name("jd"), type="container", containerProperties=props, **extra
    )["jobDefinitionArn"]


def setup(batch: Any, command: list[str], vcpus: int = 4, **jd_extra: Any) -> tuple[str, str]:
    """(queue ARN, job definition ARN) on a fresh compute environment with `vcpus` capacity."""
    ce = make_ce(batch, vcpus)
    return make_queue(batch, [ce]), register(batch, command, **jd_extra)


def describe(batch: Any, job_id: str) -> dict[str, Any]:
    jobs = batch.describe_jobs(jobs=[job_id])["jobs"]
    assert jobs, f"job {job_id} not found"
    return jobs[0]


def wait_status(batch: Any, job_id: str, statuses: str | tuple[str, ...],
                timeout: float = WAIT_SECONDS) -> dict[str, Any]:
    """Poll DescribeJobs until the job is in one of `statuses` (timeout: see WAIT_SECONDS)."""
    wanted = (statuses,) if isinstance(statuses, str) else statuses
    deadline = time.monotonic() + max(timeout, WAIT_SECONDS)
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = describe(batch, job_id)
        if job["status"] in wanted:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} is {job.get('status')} ({job.get('statusReason')}), not {wanted}")


def submit(batch: Any, queue: str, jd: str, **kw: Any) -> str:
    return batch.submit_job(jobName=kw.pop("jobName", name("job")), jobQueue=queue, jobDefinition=jd, **kw)["jobId"]


def log_lines(server: Any, job: dict[str, Any]) -> list[str]:
    logs = server.client("logs")
    events = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=job["container"]["logStreamName"],
                                 startFromHead=True)["events"]
    return [e["message"] for e in events]


def scheduler_passed(batch: Any, queue: str) -> dict[str, Any]:
    """Submit a trivial job to `queue` and wait until it SUCCEEDED: proof that the scheduler has dispatched
    everything ahead of it in the queue since this call (FIFO), used instead of sleeping to show that
    something did not happen. The queue must be able to run it."""
    return wait_status(batch, submit(batch, queue, register(batch, ["true"])), "SUCCEEDED")
