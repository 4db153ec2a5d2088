"""RegisterJobDefinition, DescribeJobDefinitions, DeregisterJobDefinition.

Every registration is a new revision (1, 2, 3… per name, never reused, even after deregistration). The stored
document is the JobDefinition shape as DescribeJobDefinitions returns it; SubmitJob reads it through
`store.resources.find_active_job_definition`.
"""

from __future__ import annotations

import re
from typing import Any

from batchd.api.decode import decimal_ok
from batchd.api.errors import ClientException
from batchd.api.registry import RequestContext, operation
from batchd.domain.arns import make_arn
from batchd.domain.eks import resource_requirements as eks_resource_requirements
from batchd.domain.jobs import MAX_AMOUNT, JobSpecError
from batchd.handlers.resources_common import (
    check_describe_refs,
    check_name,
    check_tags,
    decode_token,
    opt_dict,
    opt_enum,
    opt_int,
    opt_list,
    opt_str,
    page_of,
    page_size,
    require_str,
)
from batchd.store import resources as store

JD_TYPES = ("container", "multinode")
PLATFORMS = ("EC2", "FARGATE", "MANAGED_INSTANCES")
RESOURCE_TYPES = ("GPU", "VCPU", "MEMORY")
FARGATE_VCPUS = (0.25, 0.5, 1, 2, 4, 8, 16, 32)
RESERVED_ENV_PREFIX = "AWS_BATCH"
# ContainerProperties lists AWS always returns, empty when not given (Terraform's provider suppresses exactly
# these `[]`-versus-absent diffs: internal/service/batch/container_properties.go).
CONTAINER_LISTS = ("command", "volumes", "environment", "mountPoints", "ulimits", "resourceRequirements", "secrets")
# The same for an EKS container and its pod (the provider's eks_properties.go and its node-range tests).
EKS_CONTAINER_LISTS = ("command", "args", "env", "volumeMounts")
EKS_POD_LISTS = ("initContainers", "imagePullSecrets", "volumes")
FARGATE_DEFAULT_PLATFORM = {"platformVersion": "LATEST"}
# ASCII digits, at most 10 each (the validator's targetNodes rule), so int() below is always small and cheap.
_TARGET_NODES_RE = re.compile(r"([0-9]{0,10})(?::([0-9]{0,10}))?")


# --- validation of the container parts -------------------------------------------------------------------------


def _check_env(envs: object, where: str) -> None:
    if envs is None:
        return
    if not isinstance(envs, list):
        raise ClientException(f"{where} must be a list of {{name, value}}")
    for env in envs:
        if not isinstance(env, dict) or not isinstance(env.get("name"), str):
            raise ClientException(f"{where} entries need a string name")
        if env["name"].startswith(RESERVED_ENV_PREFIX):
            raise ClientException(
                f"{where}: environment variable {env['name']} is not allowed: names cannot start with "
                f'"{RESERVED_ENV_PREFIX}" (reserved for the variables Batch sets)'
            )


def _without_empty_values(envs: object) -> list:
    """AWS accepts environment entries with an empty or no value but ignores them: Describe leaves them out."""
    return [e for e in envs if isinstance(e, dict) and e.get("value")] if isinstance(envs, list) else []


def _number(value: object) -> float | None:
    """A resource amount: a plain decimal from 0 to MAX_AMOUNT (api/decode.py), else None."""
    return float(value) if decimal_ok(value, 0, MAX_AMOUNT) else None


def _check_resource_requirements(reqs: object, where: str, *, fargate: bool) -> None:
    if reqs is None:
        return
    if not isinstance(reqs, list):
        raise ClientException(f"{where} must be a list of {{type, value}}")
    seen: set[str] = set()
    for req in reqs:
        if not isinstance(req, dict):
            raise ClientException(f"{where} entries must be objects {{type, value}}")
        rtype, value = req.get("type"), req.get("value")
        if rtype not in RESOURCE_TYPES:
            raise ClientException(f"{where}: type must be one of {', '.join(RESOURCE_TYPES)}, not {rtype!r}")
        if rtype in seen:
            raise ClientException(f"{where}: {rtype} is given more than once")
        seen.add(rtype)
        num = _number(value)
        if rtype == "VCPU":
            if fargate:
                if num not in FARGATE_VCPUS:
                    raise ClientException(
                        f"{where}: VCPU {value!r} is not a Fargate value; use one of "
                        + ", ".join(f"{v:g}" for v in FARGATE_VCPUS)
                    )
            elif num is None or num < 1 or num != int(num):
                raise ClientException(f"{where}: VCPU {value!r} must be a whole number of vCPUs, at least 1")
        elif rtype == "MEMORY":
            if num is None or num != int(num) or num < 4:
                raise ClientException(f"{where}: MEMORY {value!r} must be a whole number of MiB, at least 4")
        else:  # GPU
            if num is None or num != int(num) or num < 0:
                raise ClientException(f"{where}: GPU {value!r} must be a whole number, at least 0")
            if fargate:
                raise ClientException(
                    f"{where}: GPUs aren't available for jobs that run on Fargate resources"
                )


def _check_container(cp: object, where: str, *, fargate: bool) -> dict:
    """ContainerProperties: image required, reserved env names refused, resources parsed; returns a copy."""
    if not isinstance(cp, dict):
        raise ClientException(f"{where} must be an object")
    image = cp.get("image")
    if not isinstance(image, str) or not image.strip():
        raise ClientException(f"{where}.image is required")
    command = cp.get("command")
    if command is not None and (
        not isinstance(command, list) or not all(isinstance(c, str) for c in command)
    ):
        raise ClientException(f"{where}.command must be a list of strings")
    _check_env(cp.get("environment"), f"{where}.environment")
    _check_resource_requirements(
        cp.get("resourceRequirements"), f"{where}.resourceRequirements", fargate=fargate
    )
    if fargate and (cp.get("vcpus") is not None or cp.get("memory") is not None):
        raise ClientException(
            f"{where}: vcpus and memory aren't supported on Fargate resources; use resourceRequirements"
        )
    opt_int(cp, "vcpus", 1, where=f"{where}.")
    opt_int(cp, "memory", 4, where=f"{where}.")
    out = dict(cp)
    for key in CONTAINER_LISTS:
        out.setdefault(key, [])
    out["environment"] = _without_empty_values(out["environment"])
    if fargate:
        out.setdefault("fargatePlatformConfiguration", dict(FARGATE_DEFAULT_PLATFORM))
    return out


def _check_ecs_properties(ecs: object, where: str, *, fargate: bool) -> dict:
    """EcsProperties: one task of containers, each with an image; returns a copy without empty env values."""
    if (
        not isinstance(ecs, dict)
        or not isinstance(ecs.get("taskProperties"), list)
        or not ecs["taskProperties"]
    ):
        raise ClientException(f"{where}.taskProperties must hold one task")
    if len(ecs["taskProperties"]) != 1:
        raise ClientException(f"{where}.taskProperties is limited to one task")
    for t, task in enumerate(ecs["taskProperties"]):
        containers = task.get("containers") if isinstance(task, dict) else None
        if not isinstance(containers, list) or not containers:
            raise ClientException(f"{where}.taskProperties[{t}].containers must hold at least one container")
        for c, container in enumerate(containers):
            cw = f"{where}.taskProperties[{t}].containers[{c}]"
            if (
                not isinstance(container, dict)
                or not isinstance(container.get("image"), str)
                or not container["image"]
            ):
                raise ClientException(f"{cw}.image is required")
            _check_env(container.get("environment"), f"{cw}.environment")
            _check_resource_requirements(
                container.get("resourceRequirements"), f"{cw}.resourceRequirements", fargate=fargate
            )
    tasks = [
        {**task, "containers": [
            {**c, "environment": _without_empty_values(c["environment"])} if "environment" in c else dict(c)
            for c in task["containers"]
        ]}
        for task in ecs["taskProperties"]
    ]
    return {**ecs, "taskProperties": tasks}


def _check_eks_properties(eks: object, where: str) -> dict:
    """EksProperties: containers with an image; returns a copy with the lists AWS always returns."""
    pod = eks.get("podProperties") if isinstance(eks, dict) else None
    containers = pod.get("containers") if isinstance(pod, dict) else None
    if not isinstance(containers, list) or not containers:
        raise ClientException(f"{where}.podProperties.containers must hold at least one container")
    for c, container in enumerate(containers):
        cw = f"{where}.podProperties.containers[{c}]"
        if (
            not isinstance(container, dict)
            or not isinstance(container.get("image"), str)
            or not container["image"]
        ):
            raise ClientException(f"{cw}.image is required")
        _check_env(container.get("env"), f"{cw}.env")
        try:
            eks_resource_requirements(container, cw)
        except JobSpecError as exc:
            raise ClientException(str(exc)) from None
    assert isinstance(eks, dict) and isinstance(pod, dict)

    def normalised(container: dict) -> dict:
        out = dict(container)
        for key in EKS_CONTAINER_LISTS:
            out.setdefault(key, [])
        out["env"] = _without_empty_values(out["env"])
        return out

    out_pod = {**pod, "containers": [normalised(c) for c in containers]}
    if isinstance(pod.get("initContainers"), list):
        out_pod["initContainers"] = [normalised(c) if isinstance(c, dict) else c for c in pod["initContainers"]]
    for key in EKS_POD_LISTS:
        out_pod.setdefault(key, [])
    return {**eks, "podProperties": out_pod}


def _node_range(target: object, num_nodes: int, where: str) -> tuple[int, int]:
    m = _TARGET_NODES_RE.fullmatch(target) if isinstance(target, str) else None
    if not m or target == "" or target == ":":
        raise ClientException(f"{where}.targetNodes {target!r} must be N, N:M, :M or N:")
    start = int(m.group(1)) if m.group(1) else 0
    if m.group(2) is None:
        end = start
    else:
        end = int(m.group(2)) if m.group(2) else num_nodes - 1
    if start > end or end >= num_nodes:
        raise ClientException(f"{where}.targetNodes {target!r} is outside nodes 0 to {num_nodes - 1}")
    return start, end


def _check_node_properties(np_: object) -> dict:
    if not isinstance(np_, dict):
        raise ClientException("nodeProperties must be an object")
    num = opt_int(np_, "numNodes", 1, where="nodeProperties.")
    main = opt_int(np_, "mainNode", 0, where="nodeProperties.")
    ranges = np_.get("nodeRangeProperties")
    if num is None or main is None or not isinstance(ranges, list) or not ranges:
        raise ClientException("nodeProperties needs numNodes, mainNode and nodeRangeProperties")
    if main >= num:
        raise ClientException(f"nodeProperties.mainNode {main} must be below numNodes {num}")
    out_ranges = []
    spans = []
    for i, rng in enumerate(ranges):
        where = f"nodeProperties.nodeRangeProperties[{i}]"
        if not isinstance(rng, dict):
            raise ClientException(f"{where} must be an object")
        spans.append(_node_range(rng.get("targetNodes"), num, where))
        rng = {**rng, "instanceTypes": rng.get("instanceTypes") or []}
        if rng.get("container") is not None:
            rng["container"] = _check_container(rng["container"], f"{where}.container", fargate=False)
        elif rng.get("ecsProperties") is not None:
            rng["ecsProperties"] = _check_ecs_properties(rng["ecsProperties"], f"{where}.ecsProperties",
                                                         fargate=False)
        elif rng.get("eksProperties") is not None:
            rng["eksProperties"] = _check_eks_properties(rng["eksProperties"], f"{where}.eksProperties")
        else:
            raise ClientException(f"{where} needs a container (or ecsProperties/eksProperties)")
        out_ranges.append(rng)
    # Together the ranges must cover every node 0..numNodes-1, or some node would have nothing to run.
    covered = -1
    for start, end in sorted(spans):
        if start > covered + 1:
            break
        covered = max(covered, end)
    if covered < num - 1:
        raise ClientException(f"nodeProperties.nodeRangeProperties must cover all nodes 0:{num - 1}")
    return {**np_, "nodeRangeProperties": out_ranges}


def _check_retry_strategy(rs: object) -> dict:
    if not isinstance(rs, dict):
        raise ClientException("retryStrategy must be an object")
    attempts = opt_int(rs, "attempts", 1, 10, where="retryStrategy.")
    rules = opt_list(rs, "evaluateOnExit")
    if rules is not None:
        if attempts is None:
            raise ClientException("retryStrategy.evaluateOnExit requires retryStrategy.attempts")
        if len(rules) > 5:
            raise ClientException(f"retryStrategy.evaluateOnExit can hold up to 5 entries, not {len(rules)}")
        for rule in rules:
            if not isinstance(rule, dict):
                raise ClientException("retryStrategy.evaluateOnExit entries must be objects")
            if not isinstance(rule.get("action"), str) or rule["action"].upper() not in ("RETRY", "EXIT"):
                raise ClientException("retryStrategy.evaluateOnExit.action must be RETRY or EXIT")
            for key in ("onStatusReason", "onReason", "onExitCode"):
                pattern = rule.get(key)
                if pattern is None:
                    continue
                if not isinstance(pattern, str) or len(pattern) > 512:
                    raise ClientException(
                        f"retryStrategy.evaluateOnExit.{key} must be at most 512 characters"
                    )
                if "*" in pattern[:-1]:
                    raise ClientException(
                        f"retryStrategy.evaluateOnExit.{key}: '*' is only allowed at the end"
                    )
                if key == "onExitCode" and not re.fullmatch(r"\d*\*?", pattern):
                    raise ClientException(
                        "retryStrategy.evaluateOnExit.onExitCode may only contain digits and a final '*'"
                    )
        # The action is case-insensitive; AWS stores and returns it lower-cased.
        return {**rs, "evaluateOnExit": [{**rule, "action": rule["action"].lower()} for rule in rules]}
    return dict(rs)


def _check_string_map(value: object, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ClientException(f"{key} must be a map of strings to strings")
    return dict(value)


# --- operations ----------------------------------------------------------------------------------------------------


@operation("RegisterJobDefinition")
async def register_job_definition(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = check_name(params.get("jobDefinitionName"), "jobDefinitionName")
    jd_type = opt_enum(params, "type", JD_TYPES)
    if jd_type is None:
        raise ClientException("type is required: container or multinode")
    platforms = opt_list(params, "platformCapabilities")
    if platforms is not None:
        for p in platforms:
            if p not in PLATFORMS:
                raise ClientException(f"platformCapabilities: {p!r} is not one of {', '.join(PLATFORMS)}")
        if len(set(platforms)) > 1:
            raise ClientException("platformCapabilities: give one platform")
    fargate = bool(platforms) and "FARGATE" in platforms
    parameters = _check_string_map(params.get("parameters"), "parameters")
    tags = check_tags(params.get("tags"))
    priority = opt_int(params, "schedulingPriority", 0, 9999)
    propagate = params.get("propagateTags")
    if propagate is not None and not isinstance(propagate, bool):
        raise ClientException("propagateTags must be a boolean")
    timeout = opt_dict(params, "timeout")
    if timeout is not None:
        lo = int(getattr(ctx.service.settings, "min_attempt_duration_seconds", 60))
        opt_int(timeout, "attemptDurationSeconds", lo, where="timeout.")
    retry = (
        _check_retry_strategy(params["retryStrategy"]) if params.get("retryStrategy") is not None else None
    )

    bodies = [
        k
        for k in ("containerProperties", "ecsProperties", "eksProperties", "nodeProperties")
        if params.get(k) is not None
    ]
    body: dict[str, Any] = {}
    if jd_type == "container":
        if len(bodies) != 1 or bodies[0] == "nodeProperties":
            raise ClientException(
                "A container job definition needs exactly one of containerProperties, ecsProperties or "
                f"eksProperties (got {', '.join(bodies) or 'none'})"
            )
        key = bodies[0]
        if key == "containerProperties":
            body[key] = _check_container(params[key], key, fargate=fargate)
        elif key == "ecsProperties":
            body[key] = _check_ecs_properties(params[key], key, fargate=fargate)
        else:
            if platforms:
                raise ClientException("platformCapabilities doesn't apply to an eksProperties job definition")
            body[key] = _check_eks_properties(params[key], key)
    else:
        if bodies != ["nodeProperties"]:
            raise ClientException(
                f"A multinode job definition needs nodeProperties and nothing else (got {', '.join(bodies) or 'none'})"
            )
        if fargate:
            raise ClientException("multinode job definitions aren't supported on Fargate resources")
        body["nodeProperties"] = _check_node_properties(params["nodeProperties"])
    eks = "eksProperties" in body

    with ctx.service.db.tx() as conn:
        revision = store.next_job_definition_revision(conn, ctx.account, ctx.region, name)
        arn = make_arn(ctx.region, ctx.account, "job-definition", f"{name}:{revision}")
        doc: dict[str, Any] = {
            "jobDefinitionName": name,
            "jobDefinitionArn": arn,
            "revision": revision,
            "status": "ACTIVE",
            "type": jd_type,
        }
        if priority is not None:
            doc["schedulingPriority"] = priority
        doc["parameters"] = parameters
        if retry is not None:
            doc["retryStrategy"] = retry
        if "containerProperties" in body:
            doc["containerProperties"] = body["containerProperties"]
        if timeout is not None:
            doc["timeout"] = dict(timeout)
        if "nodeProperties" in body:
            doc["nodeProperties"] = body["nodeProperties"]
        doc["tags"] = tags
        if propagate is not None:
            doc["propagateTags"] = propagate
        if platforms:
            # Only when given: AWS does not report its default (EC2) for a definition registered without it.
            doc["platformCapabilities"] = list(platforms)
        for key in ("ecsProperties", "eksProperties"):
            if key in body:
                doc[key] = body[key]
        doc["containerOrchestrationType"] = "EKS" if eks else "ECS"
        if params.get("consumableResourceProperties") is not None:
            doc["consumableResourceProperties"] = params["consumableResourceProperties"]
        store.insert_job_definition(conn, ctx.account, ctx.region, name, revision, arn, doc)
    return {"jobDefinitionName": name, "jobDefinitionArn": arn, "revision": revision}


@operation("DescribeJobDefinitions")
async def describe_job_definitions(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    refs = check_describe_refs(opt_list(params, "jobDefinitions"), "jobDefinitions")
    name = opt_str(params, "jobDefinitionName")
    status = opt_str(params, "status")
    token = opt_str(params, "nextToken")
    limit = page_size(params)
    conn = ctx.service.db.conn
    if refs:
        others = [
            k for k in ("jobDefinitionName", "status", "maxResults", "nextToken") if params.get(k) is not None
        ]
        if others:
            raise ClientException(f"jobDefinitions can't be used with other parameters ({', '.join(others)})")
        out: list[dict] = []
        seen: set[str] = set()
        for ref in refs:
            parsed = store.parse_job_definition_ref(ctx.account, ctx.region, ref)
            if parsed is None:
                continue  # malformed, foreign or unknown entries are omitted, as for the other Describe calls
            jd_name, revision = parsed
            # batchd's choice: an entry without a revision lists every revision of that name.
            docs = store.job_definition_revisions(conn, ctx.account, ctx.region, jd_name)
            for doc in docs:
                if (revision is None or doc["revision"] == revision) and doc["jobDefinitionArn"] not in seen:
                    seen.add(doc["jobDefinitionArn"])
                    out.append(doc)
        return {"jobDefinitions": out}
    if status is not None and status not in ("ACTIVE", "INACTIVE"):
        raise ClientException(f"status must be ACTIVE or INACTIVE, not {status!r}")
    after = decode_token(token, "jd")
    if name is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", name):
        return {"jobDefinitions": []}
    rows = store.page_job_definitions(
        conn, ctx.account, ctx.region, after, limit + 1, name=name, status=status
    )
    return page_of("jobDefinitions", rows, limit, "jd")


@operation("DeregisterJobDefinition")
async def deregister_job_definition(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ref = require_str(params, "jobDefinition")
    parsed = store.parse_job_definition_ref(ctx.account, ctx.region, ref)
    if parsed is None or parsed[1] is None:
        raise ClientException(
            f"jobDefinition {ref!r} must be name:revision or the full ARN of a job definition revision of this "
            "account and region"
        )
    with ctx.service.db.tx() as conn:
        doc = store.find_job_definition(conn, ctx.account, ctx.region, ref)
        if doc is None:
            raise ClientException(f"JobDefinition {ref} does not exist")
        if doc["status"] != "INACTIVE":
            doc["status"] = "INACTIVE"
            store.update_job_definition_data(conn, doc["jobDefinitionArn"], doc)
    return {}
