"""CreateSchedulingPolicy, DescribeSchedulingPolicies, ListSchedulingPolicies, UpdateSchedulingPolicy,
DeleteSchedulingPolicy.

A scheduling policy is created and changed synchronously (AWS's SchedulingPolicyDetail has no status). The
fair-share fields are validated as the model documents them; quotaSharePolicy (SageMaker service queues only)
is stored and echoed.
"""

from __future__ import annotations

import math
from typing import Any

from batchd.api.errors import ClientException
from batchd.api.registry import RequestContext, operation
from batchd.domain.arns import make_arn
from batchd.handlers.resources_common import (
    check_describe_refs,
    check_name,
    check_tags,
    decode_token,
    not_found,
    opt_dict,
    opt_int,
    opt_list,
    opt_str,
    page_of,
    page_size,
    require_str,
    wake_scheduler,
)
from batchd.store import resources as store

KIND = store.KIND_SP
MAX_SHARE_ID = 255


def _check_share_distribution(entries: list | None) -> list[dict]:
    if entries is None:
        return []
    out: list[dict] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ClientException("fairsharePolicy.shareDistribution entries must be objects")
        sid = entry.get("shareIdentifier")
        if not isinstance(sid, str) or not sid or sid == "*":
            raise ClientException("fairsharePolicy.shareDistribution.shareIdentifier is required")
        base = sid[:-1] if sid.endswith("*") else sid
        if len(base) > MAX_SHARE_ID or "*" in base or any(c.isspace() for c in base):
            raise ClientException(
                f"shareIdentifier {sid!r} must be up to {MAX_SHARE_ID} characters without spaces, optionally "
                "followed by a single trailing '*'"
            )
        weight = entry.get("weightFactor")
        if weight is not None:
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ClientException(f"weightFactor of {sid} must be a number")
            if not 0.0001 <= weight <= 999.9999:
                raise ClientException(
                    f"weightFactor of {sid} must be between 0.0001 and 999.9999, not {weight}"
                )
        out.append(dict(entry))
    _check_overlaps([e["shareIdentifier"] for e in out])
    return out


def _check_overlaps(ids: list[str]) -> None:
    """`UserA*` covers every identifier starting with `UserA`, so it can't sit next to `UserA1` or `UserA1*`."""
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            if a == b:
                raise ClientException(
                    f"fairsharePolicy.shareDistribution: shareIdentifier {a} is listed twice"
                )
            for prefix, other in ((a, b), (b, a)):
                if prefix.endswith("*") and other.rstrip("*").startswith(prefix[:-1]):
                    raise ClientException(
                        f"fairsharePolicy.shareDistribution: {prefix} and {other} overlap; prefix entries "
                        "must not match another entry"
                    )


def _check_fairshare(policy: dict) -> dict:
    """A complete FairsharePolicy, with the documented defaults filled in (the scheduler reads them)."""
    decay = opt_int(policy, "shareDecaySeconds", 0, 604800, where="fairsharePolicy.")
    reservation = opt_int(policy, "computeReservation", 0, 99, where="fairsharePolicy.")
    shares = _check_share_distribution(opt_list(policy, "shareDistribution"))
    return {
        "shareDecaySeconds": decay or 0,
        "computeReservation": reservation or 0,
        "shareDistribution": shares,
    }


def _check_quota_share(policy: dict) -> dict:
    if policy.get("idleResourceAssignmentStrategy") != "FIFO":
        raise ClientException("quotaSharePolicy.idleResourceAssignmentStrategy must be FIFO")
    return dict(policy)


@operation("CreateSchedulingPolicy")
async def create_scheduling_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = check_name(params.get("name"), "name")
    tags = check_tags(params.get("tags"))
    fairshare = opt_dict(params, "fairsharePolicy")
    quota = opt_dict(params, "quotaSharePolicy")
    if fairshare is not None and quota is not None:
        raise ClientException("A scheduling policy has either fairsharePolicy or quotaSharePolicy, not both")
    arn = make_arn(ctx.region, ctx.account, KIND, name)
    doc: dict[str, Any] = {"name": name, "arn": arn}
    if quota is not None:
        doc["quotaSharePolicy"] = _check_quota_share(quota)
    elif fairshare is not None:
        doc["fairsharePolicy"] = _check_fairshare(fairshare)
    # With neither, nothing is invented: Describe returns no fairsharePolicy (Terraform's fair_share_policy is
    # optional and not computed, so an invented one would be a perpetual diff); an update may add one.
    doc["tags"] = tags
    with ctx.service.db.tx() as conn:
        if store.find_resource(conn, KIND, ctx.account, ctx.region, name) is not None:
            raise ClientException(f"Object already exists: SchedulingPolicy {name} already exists")
        store.insert_resource(conn, KIND, ctx.account, ctx.region, name, arn, doc)
    return {"name": name, "arn": arn}


@operation("DescribeSchedulingPolicies")
async def describe_scheduling_policies(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arns = check_describe_refs(opt_list(params, "arns"), "arns")
    if not arns:
        raise ClientException("arns is required: a list of 1 to 100 scheduling policy ARNs")
    found = store.find_resources(
        ctx.service.db.conn, KIND, ctx.account, ctx.region, [a for a in arns if a.startswith("arn:")]
    )
    return {"schedulingPolicies": found}


@operation("ListSchedulingPolicies")
async def list_scheduling_policies(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    limit = page_size(params)
    after = decode_token(opt_str(params, "nextToken"), "sp")
    rows = store.page_resources(ctx.service.db.conn, KIND, ctx.account, ctx.region, after, limit + 1)
    return page_of("schedulingPolicies", rows, limit, "sp", shape=lambda d: {"arn": d["arn"]})


@operation("UpdateSchedulingPolicy")
async def update_scheduling_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arn = require_str(params, "arn")
    fairshare = opt_dict(params, "fairsharePolicy")
    quota = opt_dict(params, "quotaSharePolicy")
    with ctx.service.db.tx() as conn:
        doc = (
            store.find_resource(conn, KIND, ctx.account, ctx.region, arn) if arn.startswith("arn:") else None
        )
        if doc is None:
            raise not_found(KIND, arn)
        if fairshare is not None:
            if "quotaSharePolicy" in doc:
                raise ClientException(
                    "The type of a scheduling policy can't change: this one is a quota-share policy"
                )
            doc["fairsharePolicy"] = _check_fairshare(fairshare)
        if quota is not None:
            if "quotaSharePolicy" not in doc:
                raise ClientException(
                    "The type of a scheduling policy can't change: this one is a fair-share policy"
                )
            doc["quotaSharePolicy"] = _check_quota_share(quota)
        store.update_resource_data(conn, doc["arn"], doc)
    wake_scheduler(ctx.service)
    return {}


@operation("DeleteSchedulingPolicy")
async def delete_scheduling_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arn = require_str(params, "arn")
    with ctx.service.db.tx() as conn:
        doc = (
            store.find_resource(conn, KIND, ctx.account, ctx.region, arn) if arn.startswith("arn:") else None
        )
        if doc is None:
            raise not_found(KIND, arn)
        users = store.queues_using_policy(conn, ctx.account, ctx.region, doc["arn"])
        if users:
            raise ClientException(
                f"Cannot delete, SchedulingPolicy {doc['name']} is attached to job queue(s) "
                + ", ".join(q["jobQueueName"] for q in users)
            )
        store.delete_resource(conn, doc["arn"])
    return {}
