"""CreateJobQueue, DescribeJobQueues, UpdateJobQueue, DeleteJobQueue."""

from __future__ import annotations

from typing import Any

from batchd.api.errors import ClientException
from batchd.api.registry import RequestContext, operation
from batchd.domain.arns import make_arn
from batchd.handlers.compute_environments import family_of
from batchd.handlers.resources_common import (
    check_name,
    check_tags,
    describe_resources,
    not_found,
    opt_enum,
    opt_int,
    opt_list,
    opt_str,
    require_str,
    schedule_settle,
    wake_scheduler,
)
from batchd.store import resources as store

KIND = store.KIND_JQ
JQ_STATES = ("ENABLED", "DISABLED")
JQ_TYPES = ("EKS", "ECS", "ECS_FARGATE", "SAGEMAKER_TRAINING", "ECS_MANAGED_INSTANCES")
MAX_CES = 3
# The queue type follows from its compute environments, as the JobQueueDetail.jobQueueType doc describes.
QUEUE_TYPE = {
    "ECS/EC2": "ECS",
    "ECS/FARGATE": "ECS_FARGATE",
    "ECS/ECS_MANAGED_INSTANCES": "ECS_MANAGED_INSTANCES",
}
MAX_PRIORITY = 1000  # CloudFormation's documented range for Priority; the API model gives none


def _ce_order(ctx: RequestContext, conn: Any, entries: list | None) -> tuple[list[dict], str]:
    """Validate computeEnvironmentOrder, resolve names to ARNs; returns (order list, derived jobQueueType)."""
    if not entries:
        raise ClientException("computeEnvironmentOrder must name 1 to 3 compute environments")
    if len(entries) > MAX_CES:
        raise ClientException(
            f"A job queue can have at most {MAX_CES} compute environments, not {len(entries)}"
        )
    out: list[dict] = []
    orders: set[int] = set()
    families: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise ClientException(
                "computeEnvironmentOrder entries must be objects {order, computeEnvironment}"
            )
        order = opt_int(entry, "order", 0, where="computeEnvironmentOrder.")
        ref = entry.get("computeEnvironment")
        if order is None or not isinstance(ref, str) or not ref:
            raise ClientException("each computeEnvironmentOrder entry needs order and computeEnvironment")
        if order in orders:
            raise ClientException(f"computeEnvironmentOrder: order {order} is used more than once")
        orders.add(order)
        ce = store.find_resource(conn, store.KIND_CE, ctx.account, ctx.region, ref)
        if ce is None:
            raise ClientException(f"computeEnvironmentOrder: ComputeEnvironment {ref} does not exist")
        # AWS wants VALID; batchd's CREATING lasts milliseconds, so CREATING and UPDATING are accepted too.
        if ce.get("status") not in ("VALID", "CREATING", "UPDATING"):
            raise ClientException(
                f"computeEnvironmentOrder: ComputeEnvironment {ce['computeEnvironmentName']} is {ce.get('status')}, "
                "not VALID"
            )
        arn = ce["computeEnvironmentArn"]
        if any(o["computeEnvironment"] == arn for o in out):
            raise ClientException(
                f"computeEnvironmentOrder: ComputeEnvironment {arn} is listed more than once"
            )
        families.add(family_of(ce))
        out.append({"order": order, "computeEnvironment": arn})
    if len(families) > 1:
        raise ClientException(
            "computeEnvironmentOrder: all compute environments of a job queue must be of one kind: EC2 (EC2 or "
            "SPOT) or Fargate (FARGATE or FARGATE_SPOT), ECS or EKS; EC2 and Fargate can't be mixed"
        )
    family = families.pop()
    return out, "EKS" if family.startswith("EKS/") else QUEUE_TYPE[family]


def _time_limit_actions(ctx: RequestContext, actions: list | None) -> list[dict] | None:
    if actions is None:
        return None
    lo = int(getattr(ctx.service.settings, "min_state_time_limit_seconds", 600))
    out = []
    for a in actions:
        if not isinstance(a, dict):
            raise ClientException("jobStateTimeLimitActions entries must be objects")
        reason = a.get("reason")
        if not isinstance(reason, str) or not reason:
            raise ClientException("jobStateTimeLimitActions.reason is required")
        if a.get("state") != "RUNNABLE":
            raise ClientException("jobStateTimeLimitActions.state must be RUNNABLE")
        # CANCEL is AWS's value for ECS/EKS queues; TERMINATE (SageMaker queues) ends a RUNNABLE job the same way.
        if a.get("action") not in ("CANCEL", "TERMINATE"):
            raise ClientException("jobStateTimeLimitActions.action must be CANCEL or TERMINATE")
        seconds = opt_int(a, "maxTimeSeconds", lo, 86400, where="jobStateTimeLimitActions.")
        if seconds is None:
            raise ClientException("jobStateTimeLimitActions.maxTimeSeconds is required")
        out.append({"reason": reason, "state": "RUNNABLE", "maxTimeSeconds": seconds, "action": a["action"]})
    return out


def _policy_arn(ctx: RequestContext, conn: Any, arn: str) -> str:
    if not arn.startswith("arn:"):
        raise ClientException(f"schedulingPolicyArn {arn!r} must be the ARN of a scheduling policy")
    policy = store.find_resource(conn, store.KIND_SP, ctx.account, ctx.region, arn)
    if policy is None:
        raise ClientException(f"SchedulingPolicy {arn} does not exist")
    return policy["arn"]


def _no_service_environments(params: dict[str, Any]) -> None:
    if params.get("serviceEnvironmentOrder"):
        raise ClientException(
            "serviceEnvironmentOrder: service environments (SageMaker Training) are not implemented by batchd yet "
            "(see docs/api-coverage.md)"
        )


@operation("CreateJobQueue")
async def create_job_queue(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = check_name(params.get("jobQueueName"), "jobQueueName")
    priority = opt_int(params, "priority", 0, MAX_PRIORITY)
    if priority is None:
        raise ClientException("priority is required")
    state = opt_enum(params, "state", JQ_STATES, "ENABLED")
    wanted_type = opt_enum(params, "jobQueueType", JQ_TYPES)
    if wanted_type == "SAGEMAKER_TRAINING":
        _no_service_environments({"serviceEnvironmentOrder": True})
    _no_service_environments(params)
    tags = check_tags(params.get("tags"))
    policy_ref = opt_str(params, "schedulingPolicyArn")
    actions = _time_limit_actions(ctx, opt_list(params, "jobStateTimeLimitActions"))
    order_in = opt_list(params, "computeEnvironmentOrder")
    arn = make_arn(ctx.region, ctx.account, KIND, name)

    with ctx.service.db.tx() as conn:
        existing = store.find_resource(conn, KIND, ctx.account, ctx.region, name)
        if existing is not None:
            what = "is being deleted" if existing.get("status") == "DELETING" else "already exists"
            raise ClientException(f"Object already exists: JobQueue {name} {what}")
        order, queue_type = _ce_order(ctx, conn, order_in)
        if wanted_type is not None and wanted_type != queue_type:
            raise ClientException(
                f"jobQueueType {wanted_type} does not match its compute environments, which make it {queue_type}"
            )
        doc: dict[str, Any] = {"jobQueueName": name, "jobQueueArn": arn, "state": state}
        if policy_ref is not None:
            doc["schedulingPolicyArn"] = _policy_arn(ctx, conn, policy_ref)
        doc.update(
            status="CREATING",
            statusReason="JobQueue is being created",
            priority=priority,
            computeEnvironmentOrder=order,
            jobQueueType=queue_type,
            tags=tags,
            jobStateTimeLimitActions=actions or [],
        )
        store.insert_resource(conn, KIND, ctx.account, ctx.region, name, arn, doc)
    schedule_settle(ctx, KIND, arn)
    wake_scheduler(ctx.service)
    return {"jobQueueName": name, "jobQueueArn": arn}


@operation("DescribeJobQueues")
async def describe_job_queues(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return describe_resources(ctx, params, KIND, "jobQueues", "jq")


@operation("UpdateJobQueue")
async def update_job_queue(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ref = require_str(params, "jobQueue")
    state = opt_enum(params, "state", JQ_STATES)
    priority = opt_int(params, "priority", 0, MAX_PRIORITY)
    policy_ref = opt_str(params, "schedulingPolicyArn")
    order_in = opt_list(params, "computeEnvironmentOrder")
    actions = _time_limit_actions(ctx, opt_list(params, "jobStateTimeLimitActions"))
    _no_service_environments(params)

    with ctx.service.db.tx() as conn:
        doc = store.find_resource(conn, KIND, ctx.account, ctx.region, ref)
        if doc is None:
            raise not_found(KIND, ref)
        name, arn = doc["jobQueueName"], doc["jobQueueArn"]
        if doc.get("status") == "DELETING":
            raise ClientException(f"JobQueue {name} is being deleted and cannot be updated")
        if policy_ref is not None:
            if not doc.get("schedulingPolicyArn"):
                raise ClientException(
                    f"JobQueue {name} was created without a scheduling policy (FIFO); a fair-share scheduling "
                    "policy can't be added to it. Create a new job queue with schedulingPolicyArn instead"
                )
            if policy_ref == "":
                raise ClientException("A job queue's scheduling policy can be replaced but not removed")
            doc["schedulingPolicyArn"] = _policy_arn(ctx, conn, policy_ref)
        if order_in is not None:
            order, queue_type = _ce_order(ctx, conn, order_in)
            if queue_type != doc.get("jobQueueType", queue_type):
                raise ClientException(
                    f"computeEnvironmentOrder would make JobQueue {name} {queue_type}, but it is "
                    f"{doc.get('jobQueueType')}: the kind of compute environment can't change"
                )
            doc["computeEnvironmentOrder"] = order
        if state is not None:
            doc["state"] = state
        if priority is not None:
            doc["priority"] = priority
        if actions is not None:
            doc["jobStateTimeLimitActions"] = actions
        doc["status"] = "UPDATING"
        doc["statusReason"] = "JobQueue is being updated"
        store.update_resource_data(conn, arn, doc)
    schedule_settle(ctx, KIND, arn)
    wake_scheduler(ctx.service)
    return {"jobQueueName": name, "jobQueueArn": arn}


@operation("DeleteJobQueue")
async def delete_job_queue(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ref = require_str(params, "jobQueue")
    with ctx.service.db.tx() as conn:
        doc = store.find_resource(conn, KIND, ctx.account, ctx.region, ref)
        if doc is None:
            raise not_found(KIND, ref)
        name, arn = doc["jobQueueName"], doc["jobQueueArn"]
        if doc.get("status") == "DELETING":
            return {}  # a repeated delete is not an error
        if doc.get("state") != "DISABLED":
            raise ClientException(
                f"Cannot delete, JobQueue {name} is ENABLED: disable it with UpdateJobQueue (state DISABLED) first"
            )
        doc["status"] = "DELETING"
        doc["statusReason"] = "JobQueue is being deleted"
        store.update_resource_data(conn, arn, doc)
    # Once the row is gone, the settle step calls scheduler.on_queue_deleted (jobs fail "JobQueue deleted").
    schedule_settle(ctx, KIND, arn)
    wake_scheduler(ctx.service)
    return {}
