"""CreateComputeEnvironment, DescribeComputeEnvironments, UpdateComputeEnvironment, DeleteComputeEnvironment.

A compute environment is capacity: `computeResources.maxvCpus` for MANAGED, `unmanagedvCpus` for UNMANAGED.
Every other field (subnets, instance types, roles, EKS settings…) is validated for shape and echoed, because
clients such as Terraform read them back.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from batchd.api.errors import ClientException
from batchd.api.registry import RequestContext, operation
from batchd.domain.arns import make_arn, partition_for
from batchd.handlers.resources_common import (
    check_name,
    check_tags,
    describe_resources,
    not_found,
    opt_dict,
    opt_enum,
    opt_int,
    opt_list,
    opt_str,
    require_str,
    schedule_settle,
    wake_scheduler,
)
from batchd.store import resources as store

KIND = store.KIND_CE
CE_TYPES = ("MANAGED", "UNMANAGED")
CE_STATES = ("ENABLED", "DISABLED")
CR_TYPES = ("EC2", "SPOT", "FARGATE", "FARGATE_SPOT", "ECS_MANAGED_INSTANCES")
ALLOCATION = (
    "BEST_FIT",
    "BEST_FIT_PROGRESSIVE",
    "BEST_FIT_PROGRESSIVE_ORDERED",
    "SPOT_CAPACITY_OPTIMIZED",
    "SPOT_PRICE_CAPACITY_OPTIMIZED",
    "SPOT_CAPACITY_OPTIMIZED_PRIORITIZED",
)
# Compute resource types that may replace one another in an update (and share a job queue).
FAMILY = {
    "EC2": "EC2",
    "SPOT": "EC2",
    "FARGATE": "FARGATE",
    "FARGATE_SPOT": "FARGATE",
    "ECS_MANAGED_INSTANCES": "ECS_MANAGED_INSTANCES",
}
DEFAULT_UPDATE_POLICY = {"terminateJobsOnUpdate": False, "jobExecutionTimeoutMinutes": 30}
# The AMI family AWS reports for an EC2/SPOT environment created without ec2Configuration (the model's
# ComputeResource.ec2Configuration documentation, botocore 1.44).
DEFAULT_IMAGE_TYPE = {"ECS": "ECS_AL2023", "EKS": "EKS_AL2023"}


def family_of(ce: dict) -> str:
    """EC2 / FARGATE / ECS_MANAGED_INSTANCES (an UNMANAGED environment counts as EC2), plus EKS-ness."""
    fam = FAMILY.get((ce.get("computeResources") or {}).get("type", "EC2"), "EC2")
    return f"{ce.get('containerOrchestrationType', 'ECS')}/{fam}"


def _check_vcpu_bounds(cr: dict) -> None:
    lo, hi, want = cr.get("minvCpus"), cr.get("maxvCpus"), cr.get("desiredvCpus")
    if lo is not None and hi is not None and lo > hi:
        raise ClientException(f"computeResources.minvCpus ({lo}) must not exceed maxvCpus ({hi})")
    if want is not None:
        if lo is not None and want < lo:
            raise ClientException(f"computeResources.desiredvCpus ({want}) must not be below minvCpus ({lo})")
        if hi is not None and want > hi:
            raise ClientException(f"computeResources.desiredvCpus ({want}) must not exceed maxvCpus ({hi})")


def _check_launch_settings(cr: dict) -> None:
    """What AWS requires to launch instances, though batchd launches none (ComputeResource's documentation)."""
    cr_type = cr["type"]
    if cr_type in ("EC2", "SPOT", "FARGATE", "FARGATE_SPOT") and not cr.get("subnets"):
        raise ClientException(f"computeResources.subnets is required for {cr_type} compute resources")
    role = cr.get("instanceRole")
    if cr_type in ("EC2", "SPOT") and (not isinstance(role, str) or not role):
        raise ClientException(
            f"computeResources.instanceRole is required for {cr_type} compute resources: the instance profile "
            "of the instances (for example ecsInstanceRole)"
        )


def _check_compute_resources(cr: dict, *, creating: bool) -> None:
    """Shape checks shared by create (ComputeResource) and update (ComputeResourceUpdate)."""
    if creating:
        if cr.get("type") is None:
            raise ClientException("computeResources.type is required: one of " + ", ".join(CR_TYPES))
        if cr.get("maxvCpus") is None:
            raise ClientException("computeResources.maxvCpus is required for a MANAGED compute environment")
    opt_enum(cr, "type", CR_TYPES)
    opt_enum(cr, "allocationStrategy", ALLOCATION)
    for key in ("minvCpus", "maxvCpus", "desiredvCpus"):
        opt_int(cr, key, 0, where="computeResources.")
    opt_int(cr, "bidPercentage", 0, 100, where="computeResources.")
    for key in ("instanceTypes", "subnets", "securityGroupIds", "ec2Configuration"):
        opt_list(cr, key)
    for key in ("tags", "launchTemplate", "scalingPolicy", "capacityTags"):
        opt_dict(cr, key)


@operation("CreateComputeEnvironment")
async def create_compute_environment(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = check_name(params.get("computeEnvironmentName"), "computeEnvironmentName")
    ce_type = opt_enum(params, "type", CE_TYPES)
    if ce_type is None:
        raise ClientException("type is required: MANAGED or UNMANAGED")
    # The model says a compute environment "must be created in the ENABLED state"; AWS nevertheless accepts
    # DISABLED (Terraform relies on it), so both are taken.
    state = opt_enum(params, "state", CE_STATES, "ENABLED")
    tags = check_tags(params.get("tags"))
    cr = opt_dict(params, "computeResources")
    unmanaged = opt_int(params, "unmanagedvCpus", 0)
    eks = opt_dict(params, "eksConfiguration")
    service_role = opt_str(params, "serviceRole")
    for key in ("ecsSettings",):
        opt_dict(params, key)
    opt_str(params, "context")

    if ce_type == "MANAGED":
        if cr is None:
            raise ClientException("computeResources is required for a MANAGED compute environment")
        if unmanaged is not None:
            raise ClientException("unmanagedvCpus is only supported when type is UNMANAGED")
        _check_compute_resources(cr, creating=True)
        cr = dict(cr)
        if FAMILY[cr["type"]] == "EC2":
            # AWS reports the floor and the current size of EC2/SPOT environments; both start at minvCpus.
            cr.setdefault("minvCpus", 0)
            cr.setdefault("desiredvCpus", cr["minvCpus"])
            if not cr.get("ec2Configuration"):
                cr["ec2Configuration"] = [{"imageType": DEFAULT_IMAGE_TYPE["EKS" if eks is not None else "ECS"]}]
        _check_vcpu_bounds(cr)
        _check_launch_settings(cr)
    else:
        if cr is not None:
            raise ClientException("computeResources must not be given for an UNMANAGED compute environment")
        if unmanaged is None:
            # batchd's choice: an unmanaged environment is this host, so by default it offers the host's CPUs
            # (AWS has no default; 0 would leave every job RUNNABLE forever).
            unmanaged = os.cpu_count() or 1

    arn = make_arn(ctx.region, ctx.account, KIND, name)
    ce_uuid = str(uuid.uuid4())
    doc: dict[str, Any] = {"computeEnvironmentName": name, "computeEnvironmentArn": arn}
    if ce_type == "UNMANAGED":
        doc["unmanagedvCpus"] = unmanaged
    orchestration = "EKS" if eks is not None else "ECS"
    if orchestration == "ECS":
        doc["ecsClusterArn"] = (
            f"arn:{partition_for(ctx.region)}:ecs:{ctx.region}:{ctx.account}:cluster/{name}_Batch_{ce_uuid}"
        )
    doc.update(
        tags=tags,
        type=ce_type,
        state=state,
        status="CREATING",
        statusReason="ComputeEnvironment is being created",
    )
    if cr is not None:
        doc["computeResources"] = cr
    doc["serviceRole"] = service_role or (
        f"arn:{partition_for(ctx.region)}:iam::{ctx.account}:role/aws-service-role/batch.amazonaws.com/"
        "AWSServiceRoleForBatch"
    )
    if ce_type == "MANAGED":
        doc["updatePolicy"] = dict(DEFAULT_UPDATE_POLICY)
    if eks is not None:
        doc["eksConfiguration"] = eks
    doc["containerOrchestrationType"] = orchestration
    doc["uuid"] = ce_uuid
    for key in ("context", "ecsSettings"):
        if params.get(key) is not None:
            doc[key] = params[key]

    with ctx.service.db.tx() as conn:
        existing = store.find_resource(conn, KIND, ctx.account, ctx.region, name)
        if existing is not None:
            what = "is being deleted" if existing.get("status") == "DELETING" else "already exists"
            raise ClientException(f"Object already exists: ComputeEnvironment {name} {what}")
        store.insert_resource(conn, KIND, ctx.account, ctx.region, name, arn, doc)
    schedule_settle(ctx, KIND, arn)
    wake_scheduler(ctx.service)
    return {"computeEnvironmentName": name, "computeEnvironmentArn": arn}


@operation("DescribeComputeEnvironments")
async def describe_compute_environments(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return describe_resources(ctx, params, KIND, "computeEnvironments", "ce")


@operation("UpdateComputeEnvironment")
async def update_compute_environment(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ref = require_str(params, "computeEnvironment")
    state = opt_enum(params, "state", CE_STATES)
    unmanaged = opt_int(params, "unmanagedvCpus", 0)
    cr_update = opt_dict(params, "computeResources")
    service_role = opt_str(params, "serviceRole")
    update_policy = opt_dict(params, "updatePolicy")
    eks = opt_dict(params, "eksConfiguration")
    ecs_settings = opt_dict(params, "ecsSettings")
    context = opt_str(params, "context")
    if update_policy is not None:
        opt_int(update_policy, "jobExecutionTimeoutMinutes", 1, 360, where="updatePolicy.")

    with ctx.service.db.tx() as conn:
        doc = store.find_resource(conn, KIND, ctx.account, ctx.region, ref)
        if doc is None:
            raise not_found(KIND, ref)
        name = doc["computeEnvironmentName"]
        if doc.get("status") == "DELETING":
            raise ClientException(f"ComputeEnvironment {name} is being deleted and cannot be updated")
        if unmanaged is not None:
            if doc["type"] != "UNMANAGED":
                raise ClientException(
                    "unmanagedvCpus can only be updated on an UNMANAGED compute environment"
                )
            doc["unmanagedvCpus"] = unmanaged
        if cr_update is not None:
            if doc["type"] != "MANAGED":
                raise ClientException("computeResources can only be updated on a MANAGED compute environment")
            _check_compute_resources(cr_update, creating=False)
            cr = dict(doc.get("computeResources") or {})
            new_type = cr_update.get("type")
            if new_type is not None and FAMILY[new_type] != FAMILY.get(cr.get("type", "EC2")):
                raise ClientException(
                    f"computeResources.type cannot change from {cr.get('type')} to {new_type}: only within "
                    "EC2/SPOT or FARGATE/FARGATE_SPOT"
                )
            cr.update({k: v for k, v in cr_update.items() if v is not None})
            if cr_update.get("desiredvCpus") is None and cr.get("desiredvCpus") is not None:
                # desiredvCpus is Batch's to manage: keep it inside new bounds rather than refuse them.
                # `or`: a document stored before nulls were refused may hold None for either bound.
                lo, hi = cr.get("minvCpus") or 0, cr.get("maxvCpus") or cr["desiredvCpus"]
                cr["desiredvCpus"] = min(max(cr["desiredvCpus"], lo), max(hi, lo))
            _check_vcpu_bounds(cr)
            doc["computeResources"] = cr
        if state is not None:
            doc["state"] = state
        if service_role is not None:
            doc["serviceRole"] = service_role
        if update_policy is not None:
            doc["updatePolicy"] = {**doc.get("updatePolicy", DEFAULT_UPDATE_POLICY), **update_policy}
        if eks is not None:
            doc["eksConfiguration"] = {**doc.get("eksConfiguration", {}), **eks}
        if ecs_settings is not None:
            doc["ecsSettings"] = ecs_settings
        if context is not None:
            doc["context"] = context
        doc["status"] = "UPDATING"
        doc["statusReason"] = "ComputeEnvironment is being updated"
        store.update_resource_data(conn, doc["computeEnvironmentArn"], doc)
    schedule_settle(ctx, KIND, doc["computeEnvironmentArn"])
    wake_scheduler(ctx.service)
    return {"computeEnvironmentName": name, "computeEnvironmentArn": doc["computeEnvironmentArn"]}


@operation("DeleteComputeEnvironment")
async def delete_compute_environment(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ref = require_str(params, "computeEnvironment")
    with ctx.service.db.tx() as conn:
        doc = store.find_resource(conn, KIND, ctx.account, ctx.region, ref)
        if doc is None:
            raise not_found(KIND, ref)
        name, arn = doc["computeEnvironmentName"], doc["computeEnvironmentArn"]
        if doc.get("status") == "DELETING":
            return {}  # already on its way out: a repeated delete is not an error
        if doc.get("state") != "DISABLED":
            raise ClientException(
                f"Cannot delete, ComputeEnvironment {name} is ENABLED: disable it with UpdateComputeEnvironment first"
            )
        queues = store.queues_using_compute_environment(conn, ctx.account, ctx.region, arn)
        if queues:
            names = ", ".join(q["jobQueueName"] for q in queues)
            raise ClientException(
                f"Cannot delete, found existing JobQueue relationship: ComputeEnvironment {name} is used by job "
                f"queue(s) {names}; remove it from their computeEnvironmentOrder with UpdateJobQueue first"
            )
        doc["status"] = "DELETING"
        doc["statusReason"] = "ComputeEnvironment is being deleted"
        store.update_resource_data(conn, arn, doc)
    schedule_settle(ctx, KIND, arn)
    wake_scheduler(ctx.service)
    return {}
