"""SubmitJob, DescribeJobs, ListJobs, CancelJob(s), TerminateJob(s)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from batchd.api.decode import bounded_int, decode_page_token, encode_page_token
from batchd.api.errors import ClientException
from batchd.api.registry import RequestContext, operation
from batchd.domain import eks as E
from batchd.domain import jobs as J
from batchd.domain.arns import parse_arn
from batchd.store import jobs as store
from batchd.store import resources

MAX_LIST_BY_STATUS = 1000
MAX_LIST_WITH_FILTER = 100


def _job_id_of(ref: str) -> str:
    """Accept a job id or a job ARN (`arn:...:job/<id>`)."""
    if ref.startswith("arn:"):
        arn = parse_arn(ref)
        if arn is not None and arn.resource_type == "job":
            return arn.resource
    return ref


def _cache_ttl(ctx: RequestContext) -> float | None:
    # One server: the cache is exact (every change invalidates it). Several: bounded staleness.
    return None if ctx.service.db.is_sqlite else resources.CACHE_TTL


def _queue(ctx: RequestContext, ref: str) -> dict[str, Any]:
    queue = resources.find_resource_cached(ctx.service.db.conn, "job-queue", ctx.account, ctx.region, ref,
                                           _cache_ttl(ctx))
    if queue is None or queue.get("status") in ("DELETING", "DELETED"):
        raise ClientException(f"JobQueue {ref} not found.")
    return queue


@operation("SubmitJob")
async def submit_job(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
    svc = ctx.service
    conn = svc.db.conn
    queue = _queue(ctx, p["jobQueue"])
    if queue.get("state") != "ENABLED":
        raise ClientException(f"JobQueue {queue['jobQueueName']} is DISABLED: it does not accept new jobs.")
    jd = resources.find_active_job_definition_cached(conn, ctx.account, ctx.region, p["jobDefinition"],
                                                     _cache_ttl(ctx))
    if jd is None:
        raise ClientException(f"JobDefinition {p['jobDefinition']} does not exist or is not in ACTIVE status.")
    if jd.get("type") == "multinode" or jd.get("nodeProperties"):
        raise ClientException("Multi-node parallel jobs are not supported by batchd yet (see docs/api-coverage.md).")
    share = p.get("shareIdentifier")
    if queue.get("schedulingPolicyArn") and not share:
        raise ClientException(f"JobQueue {queue['jobQueueName']} has a fair-share scheduling policy: "
                              "shareIdentifier is required.")
    if share and not queue.get("schedulingPolicyArn"):
        raise ClientException(f"JobQueue {queue['jobQueueName']} has no scheduling policy (FIFO): "
                              "shareIdentifier must not be given.")

    parameters = {**(jd.get("parameters") or {}), **(p.get("parameters") or {})}
    try:  # an eksProperties definition: the pod is the job's, and batchd runs its container (domain/eks.py)
        eks = E.job_pod(jd, p, parameters)
        container = E.launch_container(eks) if eks else J.build_container(jd, p.get("containerOverrides"), parameters)
    except J.JobSpecError as exc:
        raise ClientException(str(exc)) from None
    try:
        vcpus, memory, gpus = J.requirements(container)
    except J.JobSpecError as exc:
        raise ClientException(f"containerOverrides: {exc}") from None
    array_size = (p.get("arrayProperties") or {}).get("size")
    depends_on = p.get("dependsOn") or []
    job_id = str(uuid.uuid4())
    now = J.now_ms()

    deps, waits, dep_failed = _resolve_dependencies(ctx, depends_on, array_size)
    spec: dict[str, Any] = {
        "jobDefinitionName": jd["jobDefinitionName"],
        "container": container,
        "parameters": parameters,
        "dependsOn": depends_on,
        "tags": p.get("tags") or {},
        "propagateTags": p.get("propagateTags", jd.get("propagateTags", False)),
        "platformCapabilities": jd.get("platformCapabilities") or [],
    }
    if eks:
        spec["eksProperties"] = eks
    for key in ("retryStrategy", "timeout"):
        value = p.get(key) or jd.get(key)
        if value:
            spec[key] = value
    priority = p.get("schedulingPriorityOverride", jd.get("schedulingPriority"))
    if priority is not None and share:
        spec["schedulingPriority"] = priority
    row = {
        "id": job_id, "account": ctx.account, "region": ctx.region, "queue_arn": queue["jobQueueArn"],
        "name": p["jobName"], "status": J.SUBMITTED, "created_at": now, "jd_arn": jd["jobDefinitionArn"],
        "share_id": share, "array_size": array_size, "is_cancelled": False, "is_terminated": False,
        "attempt": 0, "vcpus": vcpus, "memory": memory, "gpus": gpus, "pending_deps": waits,
        "spec": spec, "runtime": {"dependencyFailed": True} if dep_failed else {},
    }
    # Nothing to wait for: the job passes SUBMITTED within this request and is stored RUNNABLE, with its
    # RUNNABLE event (AWS sends none for the submission itself); the scheduler has no SUBMITTED step to do.
    ready = waits == 0 and array_size is None and not dep_failed
    if ready:
        row.update(status=J.RUNNABLE, runnable_at=now)
    with svc.db.tx() as tx:
        if deps and not svc.db.is_sqlite:  # counted again, locked: one may be ending on another server
            row["pending_deps"], failed_now = store.lock_dependencies(tx, deps)
            if failed_now:
                row["runtime"] = {"dependencyFailed": True}
        store.insert_jobs(tx, [row], event_at=now if ready else None)
        store.insert_deps(tx, [{"job_id": job_id, "depends_on": d, "type": None} for d in deps])
    svc.scheduler.notify_jobs(runnable_in=queue["jobQueueArn"] if ready else None)
    return {"jobArn": J.job_arn(queue["jobQueueArn"], job_id), "jobName": p["jobName"], "jobId": job_id}


def _resolve_dependencies(
    ctx: RequestContext, depends_on: list[dict[str, Any]], array_size: int | None
) -> tuple[list[str], int, bool]:
    """(job ids the job waits on as a whole, how many are unfinished, whether one already failed)."""
    conn = ctx.service.db.conn
    plain: list[str] = []
    n_to_n: list[str] = []
    for i, dep in enumerate(depends_on):
        kind = dep.get("type")
        if kind == "SEQUENTIAL":
            if array_size is None:
                raise ClientException(f"dependsOn[{i}]: a SEQUENTIAL dependency is only valid on an array job.")
            if dep.get("jobId"):
                raise ClientException(f"dependsOn[{i}]: a SEQUENTIAL dependency takes no jobId.")
            continue
        if not dep.get("jobId"):
            raise ClientException(f"dependsOn[{i}]: jobId is required for a {kind or 'plain'} dependency.")
        (n_to_n if kind == "N_TO_N" else plain).append(_job_id_of(dep["jobId"]))
    ids = list(dict.fromkeys(plain + n_to_n))
    found = {r["id"]: r for r in store.get_many(conn, ctx.account, ctx.region, ids)}
    for ref in ids:
        if ref not in found:
            raise ClientException(f"dependsOn: job {ref} does not exist.")
    for ref in n_to_n:
        other = found[ref]
        if array_size is None:
            raise ClientException(f"dependsOn: an N_TO_N dependency ({ref}) is only valid on an array job.")
        if other["array_size"] is None or other["parent_id"] is not None:
            raise ClientException(f"dependsOn: N_TO_N job {ref} is not an array job.")
        if other["array_size"] != array_size:
            raise ClientException(f"dependsOn: N_TO_N array {ref} has size {other['array_size']}, "
                                  f"this array has size {array_size}; N_TO_N needs arrays of the same size.")
    plain = [d for d in dict.fromkeys(plain) if d not in n_to_n]
    waits = sum(1 for d in plain if found[d]["status"] != J.SUCCEEDED)
    failed = any(found[d]["status"] == J.FAILED for d in plain)
    return plain, waits, failed


@operation("DescribeJobs")
async def describe_jobs(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
    conn = ctx.service.db.conn
    ids = [j if not j.startswith("arn:") else _job_id_of(j) for j in p["jobs"]]
    # Stored records are sent as they are; the few rows that come back instead are rendered here.
    fragment = orjson.Fragment
    return {"jobs": [_render_live(conn, f) if f.__class__ is dict else fragment(f)
                     for f in store.describe_many(conn, ctx.account, ctx.region, ids)]}


def _render_live(conn: Any, row: dict[str, Any]) -> dict[str, Any]:
    """A job DescribeJobs must render at read time: an unfinished array parent gets its statusSummary counted."""
    if row["array_size"] is not None and row["parent_id"] is None and row["status"] not in J.TERMINAL:
        counts = store.child_status_counts(conn, row["id"])
        row["runtime"] = {**row["runtime"], "statusSummary": {s: counts.get(s, 0) for s in J.STATUSES},
                          "statusSummaryLastUpdatedAt": J.now_ms()}
    return J.render_detail(row)


def _filters(p: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    filters = p.get("filters") or []
    if len(filters) > 1:
        raise ClientException("ListJobs accepts only one filter at a time.")
    if not filters:
        return {}
    name, values = filters[0].get("name"), filters[0].get("values") or []
    if len(values) != 1:
        raise ClientException(f"Filter {name} needs exactly one value.")
    value = values[0]
    # A trailing * is a prefix match; any other character (% and _ included) matches only itself.
    if name == "JOB_NAME":
        return {"name_prefix": value[:-1]} if value.endswith("*") else {"name_exact": value}
    if name == "JOB_DEFINITION":
        if value.startswith("arn:"):
            if "*" in value:
                raise ClientException("Filter JOB_DEFINITION: '*' is not allowed with an ARN.")
            return {"jd_arn": value}
        return {"jd_name_prefix": value[:-1]} if value.endswith("*") else {"jd_name": value}
    if name in ("BEFORE_CREATED_AT", "AFTER_CREATED_AT"):
        stamp = bounded_int(value, f"Filter {name} (a time in epoch milliseconds)")
        return {"created_before": stamp} if name == "BEFORE_CREATED_AT" else {"created_after": stamp}
    if name == "SHARE_IDENTIFIER":
        return {"share_id": value}
    raise ClientException(f"Unknown filter {name!r}: use JOB_NAME, JOB_DEFINITION, BEFORE_CREATED_AT, "
                          "AFTER_CREATED_AT or SHARE_IDENTIFIER.")


@operation("ListJobs")
async def list_jobs(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
    given = [k for k in ("jobQueue", "arrayJobId", "multiNodeJobId") if p.get(k)]
    if len(given) != 1:
        raise ClientException("ListJobs needs exactly one of jobQueue, arrayJobId or multiNodeJobId.")
    conn = ctx.service.db.conn
    criteria = _filters(p, ctx)
    has_filter = bool(criteria)
    statuses = None
    if p.get("jobStatus") and (not has_filter or "share_id" in criteria):
        statuses = [p["jobStatus"]]
    elif not has_filter:
        statuses = [J.RUNNING]
    cap = MAX_LIST_WITH_FILTER if has_filter else MAX_LIST_BY_STATUS
    limit = min(int(p.get("maxResults") or cap), cap)
    before = decode_page_token(p["nextToken"], "jobs") if p.get("nextToken") else None
    scope: dict[str, Any] = {}
    if p.get("jobQueue"):
        scope["queue_arn"] = _queue(ctx, p["jobQueue"])["jobQueueArn"]
    elif p.get("arrayJobId"):
        scope["parent_id"] = _job_id_of(p["arrayJobId"])
        criteria = {}  # filters do not apply to array children
    else:
        return {"jobSummaryList": []}  # multi-node parallel jobs are not supported, so there are no nodes
    rows = store.list_jobs(conn, ctx.account, ctx.region, statuses=statuses, before_seq=before,
                           limit=limit + 1, **scope, **criteria)
    out: dict[str, Any] = {"jobSummaryList": [J.render_summary(r) for r in rows[:limit]]}
    if len(rows) > limit:
        out["nextToken"] = encode_page_token("jobs", rows[limit - 1]["seq"])
    return out


def _reason(p: dict[str, Any]) -> str:
    reason = p.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ClientException("reason is required and must not be empty.")
    return reason


def _job_ref(value: Any, field: str = "jobId") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ClientException(f"'{field}' is a required field (cannot be an empty string).")
    return _job_id_of(value)


def _find(ctx: RequestContext, job_id: str) -> dict[str, Any] | None:
    rows = store.get_many(ctx.service.db.conn, ctx.account, ctx.region, [job_id])
    return rows[0] if rows else None


@operation("CancelJob")
async def cancel_job(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
    job_id, reason = _job_ref(p.get("jobId")), _reason(p)
    row = _find(ctx, job_id)
    if row is not None:  # an unknown job id answers 200 {} as AWS does
        ctx.service.scheduler.cancel(row, reason)
    return {}


@operation("TerminateJob")
async def terminate_job(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
    job_id, reason = _job_ref(p.get("jobId")), _reason(p)
    row = _find(ctx, job_id)
    if row is not None:
        ctx.service.scheduler.terminate(row, reason)
    return {}


async def _bulk(ctx: RequestContext, p: dict[str, Any], act: str) -> dict[str, Any]:
    reason = _reason(p)
    successful, errors = [], []
    for ref in p["jobs"]:
        if not isinstance(ref, str) or not ref.strip():
            errors.append({"job": str(ref), "code": "ValidationException", "message": "job id must not be empty"})
            continue
        row = _find(ctx, _job_id_of(ref))
        if row is not None:
            getattr(ctx.service.scheduler, act)(row, reason)
        successful.append(ref)  # jobs that cannot be found count as successfully processed
    return {"successful": successful, "errors": errors}


@operation("CancelJobs")
async def cancel_jobs(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
    return await _bulk(ctx, p, "cancel")


@operation("TerminateJobs")
async def terminate_jobs(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
    return await _bulk(ctx, p, "terminate")
