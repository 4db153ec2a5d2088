"""Job rules with no I/O: building a job from its definition and overrides, what it needs, how it looks.

A job row (store/jobs.py) is a dict with the columns of the `jobs` table; `spec` is fixed at SubmitJob except
its `tags` (TagResource/UntagResource rewrite them, store/resources.py), `runtime` holds the attempts and the
current container state.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

SUBMITTED, PENDING, RUNNABLE, STARTING, RUNNING, SUCCEEDED, FAILED = (
    "SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED",
)
STATUSES = (SUBMITTED, PENDING, RUNNABLE, STARTING, RUNNING, SUCCEEDED, FAILED)
TERMINAL = frozenset((SUCCEEDED, FAILED))
ACTIVE = frozenset((STARTING, RUNNING))

# statusReason strings AWS shows.
REASON_EXITED = "Essential container in task exited"
REASON_TIMEOUT = "Job attempt duration exceeded timeout"
REASON_DEPENDENCY = "Dependent Job failed"
REASON_ARRAY_CHILD = "Array Child Job failed"
REASON_QUEUE_DELETED = "JobQueue deleted"
REASON_NO_FIT = "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement (vCPU/memory/GPU) is higher than that can be met by the CE(s) attached to the job queue."

_REF_RE = re.compile(r"Ref::([A-Za-z0-9_]+)")


def now_ms() -> int:
    return int(time.time() * 1000)


class JobSpecError(ValueError):
    """SubmitJob input that cannot make a job (the message says which field)."""


def substitute(command: list[str], parameters: dict[str, str]) -> list[str]:
    """Replace `Ref::name` with parameters[name]; unknown placeholders stay as written (as AWS does)."""

    def one(arg: str) -> str:
        return _REF_RE.sub(lambda m: parameters.get(m.group(1), m.group(0)), arg)

    return [one(a) for a in command]


def _merge_named(base: list[dict], overrides: list[dict], key: str) -> list[dict]:
    """The base entries with the overrides' replacing those of the same name; entries without one are dropped
    (the validator refuses them in requests; this keeps definitions stored before that from failing)."""
    merged = {e[key]: dict(e) for e in base if isinstance(e, dict) and isinstance(e.get(key), str)}
    for e in overrides:
        if isinstance(e, dict) and isinstance(e.get(key), str):
            merged[e[key]] = dict(e)
    return list(merged.values())


def _requirement(reqs: list[dict], kind: str) -> str | None:
    for r in reqs:
        if r.get("type") == kind and r.get("value") is not None:
            return str(r["value"])
    return None


def build_container(jd: dict[str, Any], overrides: dict[str, Any] | None, parameters: dict[str, str]) -> dict:
    """The job's ContainerDetail at submission: the definition's containerProperties with overrides applied."""
    props = dict(jd.get("containerProperties") or {})
    overrides = overrides or {}
    container: dict[str, Any] = {k: v for k, v in props.items() if v is not None}
    command = overrides.get("command")
    if command is None:  # not overridden (or null, which means the same)
        command = props.get("command") or []
    container["command"] = substitute(list(command), parameters)
    container["environment"] = _merge_named(props.get("environment") or [], overrides.get("environment") or [], "name")
    reqs = _merge_named(props.get("resourceRequirements") or [], overrides.get("resourceRequirements") or [], "type")
    # The deprecated vcpus/memory fields, when given, become resourceRequirements unless those say otherwise.
    for legacy, kind in (("vcpus", "VCPU"), ("memory", "MEMORY")):
        value = overrides.get(legacy, props.get(legacy))
        if value is not None and _requirement(reqs, kind) is None:
            reqs.append({"type": kind, "value": str(value)})
    container["resourceRequirements"] = reqs
    for key in ("vcpus", "memory"):
        container.pop(key, None)
    if overrides.get("instanceType"):
        container["instanceType"] = overrides["instanceType"]
    container.setdefault("volumes", [])
    container.setdefault("mountPoints", [])
    container.setdefault("ulimits", [])
    container.setdefault("secrets", [])
    return container


MAX_AMOUNT = 2**31 - 1  # the largest vCPU, MiB or GPU count a job may ask for (a 32-bit column)


def requirements(container: dict[str, Any]) -> tuple[float, int, int]:
    """(vCPUs, memory MiB, GPUs) the job asks for; a job that names no vCPUs needs one.

    Every amount is finite and at most MAX_AMOUNT: the validator bounds request values, and this bounds what
    a job definition stored before that check holds (a definition with MEMORY "1e30" fails each SubmitJob with
    a ClientException instead of a store error).
    """
    reqs = container.get("resourceRequirements") or []
    amounts = {}
    for kind, default in (("VCPU", "1"), ("MEMORY", "0"), ("GPU", "0")):
        text = _requirement(reqs, kind) or default
        try:
            amount = float(text) if len(text) <= 40 else math.inf
        except ValueError:
            raise JobSpecError(f"resourceRequirements {kind} {text!r} is not a number") from None
        if not 0 <= amount <= MAX_AMOUNT:  # also refuses inf and nan
            raise JobSpecError(f"resourceRequirements {kind} {text[:40]!r} must be a number from 0 to {MAX_AMOUNT}")
        amounts[kind] = amount
    if amounts["VCPU"] <= 0:
        raise JobSpecError(f"resourceRequirements VCPU must be greater than 0, not {amounts['VCPU']:g}")
    return amounts["VCPU"], int(amounts["MEMORY"]), int(amounts["GPU"])


def job_environment(
    base: dict[str, str], row: dict[str, Any], queue_name: str, ce_name: str, attempt: int
) -> dict[str, str]:
    """What the job's process sees: a base (PATH, HOME...), the definition/overrides, then AWS's variables."""
    env = dict(base)
    for entry in row["spec"]["container"].get("environment") or []:
        env[entry["name"]] = str(entry.get("value", ""))
    env.update(
        AWS_BATCH_JOB_ID=row["id"],
        AWS_BATCH_JQ_NAME=queue_name,
        AWS_BATCH_CE_NAME=ce_name,
        AWS_BATCH_JOB_ATTEMPT=str(attempt),
    )
    if row.get("array_index") is not None:
        env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(row["array_index"])
        env["AWS_BATCH_JOB_ARRAY_SIZE"] = str(row["array_size"])
    return env


def job_arn(queue_arn: str, job_id: str) -> str:
    # The job lives in the queue's partition, region and account.
    prefix = queue_arn.split(":job-queue/", 1)[0]
    return f"{prefix}:job/{job_id}"


def _put(out: dict, key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


def render_detail(row: dict[str, Any]) -> dict[str, Any]:
    """The DescribeJobs JobDetail of a job row. Absent values are omitted, never null."""
    spec, runtime = row["spec"], row["runtime"]
    out: dict[str, Any] = {
        "jobArn": job_arn(row["queue_arn"], row["id"]),
        "jobName": row["name"],
        "jobId": row["id"],
        "jobQueue": row["queue_arn"],
        "status": row["status"],
        "attempts": runtime.get("attempts", []),
        "createdAt": row["created_at"],
        "dependsOn": spec.get("dependsOn", []),
        "jobDefinition": row["jd_arn"],
        "parameters": spec.get("parameters", {}),
        "tags": spec.get("tags", {}),
        "propagateTags": spec.get("propagateTags", False),
    }
    # Only when the definition gave them, as AWS shows them (no invented EC2 default).
    _put(out, "platformCapabilities", spec.get("platformCapabilities") or None)
    _put(out, "statusReason", row.get("status_reason"))
    _put(out, "startedAt", row.get("started_at"))
    _put(out, "stoppedAt", row.get("stopped_at"))
    _put(out, "retryStrategy", spec.get("retryStrategy"))
    _put(out, "timeout", spec.get("timeout"))
    _put(out, "shareIdentifier", row.get("share_id"))
    _put(out, "schedulingPriority", spec.get("schedulingPriority"))
    if spec.get("eksProperties") is not None:
        # An EKS job shows its pod and eksAttempts; spec.container is only what the executor runs.
        out["eksProperties"] = _eks_detail(spec["eksProperties"], runtime)
        out["eksAttempts"] = _eks_attempts(spec["eksProperties"], runtime)
        out["attempts"] = []
    elif spec.get("container") is not None:
        out["container"] = {**spec["container"], **(runtime.get("container") or {})}
    if row.get("is_cancelled"):
        out["isCancelled"] = True
    if row.get("is_terminated"):
        out["isTerminated"] = True
    if row.get("parent_id"):
        out["arrayProperties"] = {"index": row["array_index"]}
    elif row.get("array_size") is not None:
        props: dict[str, Any] = {"size": row["array_size"]}
        _put(props, "statusSummary", runtime.get("statusSummary"))
        _put(props, "statusSummaryLastUpdatedAt", runtime.get("statusSummaryLastUpdatedAt"))
        out["arrayProperties"] = props
    return out


def _eks_detail(eks: dict[str, Any], runtime: dict[str, Any]) -> dict[str, Any]:
    """EksPropertiesDetail: the job's pod, its (one) container with the last attempt's exit code and reason."""
    pod = dict(eks["podProperties"])
    ended = runtime.get("container") or {}
    containers = [dict(c) for c in pod.get("containers") or []]
    if containers:
        for key in ("exitCode", "reason"):
            _put(containers[0], key, ended.get(key))
    pod["containers"] = containers
    return {"podProperties": pod}


def _eks_attempts(eks: dict[str, Any], runtime: dict[str, Any]) -> list[dict[str, Any]]:
    """EksAttemptDetail of each ended attempt, from the attempt records the scheduler keeps."""
    name = ((eks["podProperties"].get("containers") or [{}])[0]).get("name")
    out = []
    for attempt in runtime.get("attempts", []):
        ended = attempt.get("container") or {}
        container: dict[str, Any] = {}
        for key, value in (("name", name), ("exitCode", ended.get("exitCode")), ("reason", ended.get("reason"))):
            _put(container, key, value)
        record: dict[str, Any] = {"containers": [container]}
        for key in ("startedAt", "stoppedAt", "statusReason"):
            _put(record, key, attempt.get(key))
        out.append(record)
    return out


def render_summary(row: dict[str, Any]) -> dict[str, Any]:
    """The ListJobs JobSummary of a job row."""
    runtime = row["runtime"]
    out: dict[str, Any] = {
        "jobArn": job_arn(row["queue_arn"], row["id"]),
        "jobId": row["id"],
        "jobName": row["name"],
        "createdAt": row["created_at"],
        "status": row["status"],
        "jobDefinition": row["jd_arn"],
    }
    _put(out, "statusReason", row.get("status_reason"))
    _put(out, "startedAt", row.get("started_at"))
    _put(out, "stoppedAt", row.get("stopped_at"))
    _put(out, "shareIdentifier", row.get("share_id"))
    container = runtime.get("container") or {}
    summary = {k: container[k] for k in ("exitCode", "reason") if container.get(k) is not None}
    if summary:
        out["container"] = summary
    if row.get("parent_id"):
        out["arrayProperties"] = {"index": row["array_index"]}
    elif row.get("array_size") is not None:
        out["arrayProperties"] = {"size": row["array_size"]}
    if row.get("is_cancelled"):
        out["isCancelled"] = True
    if row.get("is_terminated"):
        out["isTerminated"] = True
    return out
