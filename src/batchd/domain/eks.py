"""Jobs of an `eksProperties` job definition, with no I/O: the pod fixed at SubmitJob and what batchd runs of it.

batchd runs no Kubernetes. A job's pod is the definition's `podProperties` with SubmitJob's
`eksPropertiesOverride` applied; DescribeJobs shows it as `eksProperties` (domain/jobs.py `render_detail`). The
local executor runs the pod's one container as a command: its `command` followed by its `args`, with its `env`;
a pod of several containers (or with init containers) is refused at SubmitJob, and a container without a
`command` (one that relies on the image's ENTRYPOINT) fails to start, as a container job without a command does.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any

from batchd.domain.jobs import JobSpecError, substitute

_CPU_RE = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_BYTES = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
GPU_RESOURCE = "nvidia.com/gpu"
MAX_QUANTITY = 10**9  # far beyond any host; keeps a hostile quantity from becoming a huge number


def _quantity(text: object, pattern: re.Pattern[str], what: str) -> re.Match[str]:
    match = pattern.match(text) if isinstance(text, str) and len(text) <= 32 else None
    if match is None:
        raise JobSpecError(f"{what} {text!r} is not a Kubernetes quantity batchd understands")
    return match


def resource_requirements(container: dict[str, Any], where: str) -> list[dict[str, str]]:
    """The container's `resources` (requests, else limits) as Batch resourceRequirements for the scheduler."""
    resources = container.get("resources") or {}
    chosen = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    out: list[dict[str, str]] = []
    if chosen.get("cpu") is not None:
        number, milli = _quantity(chosen["cpu"], _CPU_RE, f"{where}.resources cpu").groups()
        vcpus = float(number) / (1000 if milli else 1)
        if not 0 < vcpus <= MAX_QUANTITY:
            raise JobSpecError(f"{where}.resources cpu {chosen['cpu']!r} must be more than 0")
        out.append({"type": "VCPU", "value": f"{vcpus:g}"})
    if chosen.get("memory") is not None:
        number, unit = _quantity(chosen["memory"], _MEMORY_RE, f"{where}.resources memory").groups()
        mib = math.ceil(float(number) * _BYTES[unit] / 2**20)
        if not 0 < mib <= MAX_QUANTITY:
            raise JobSpecError(f"{where}.resources memory {chosen['memory']!r} must be more than 0")
        out.append({"type": "MEMORY", "value": str(mib)})
    if chosen.get(GPU_RESOURCE) is not None:
        gpus = chosen[GPU_RESOURCE]
        if not isinstance(gpus, str) or not gpus.isdigit() or len(gpus) > 6:
            raise JobSpecError(f"{where}.resources {GPU_RESOURCE} {gpus!r} must be a whole number")
        out.append({"type": "GPU", "value": gpus})
    return out


def _override_containers(base: list[dict], overrides: list[dict], key: str) -> list[dict]:
    """Apply EksContainerOverride entries: each names its container (or, unnamed, the pod's only one)."""
    out = [copy.deepcopy(c) for c in base]
    by_name = {c.get("name"): i for i, c in enumerate(out) if c.get("name")}
    for n, over in enumerate(overrides):
        where = f"eksPropertiesOverride.podProperties.{key}[{n}]"
        name = over.get("name")
        if name is not None:
            if name not in by_name:
                raise JobSpecError(f"{where}: the pod has no container named {name!r}")
            target = out[by_name[name]]
        elif len(out) == 1:
            target = out[0]
        else:
            raise JobSpecError(f"{where}.name is required: the pod has {len(out)} {key}")
        for field in ("image", "command", "args", "resources"):
            if over.get(field) is not None:
                target[field] = copy.deepcopy(over[field])
        if over.get("env"):
            if not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in over["env"]):
                raise JobSpecError(f"{where}.env entries need a string name")
            merged = {e["name"]: dict(e) for e in target.get("env") or []}
            merged.update({e["name"]: dict(e) for e in over["env"]})
            target["env"] = list(merged.values())
    return out


def job_pod(jd: dict[str, Any], p: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any] | None:
    """The job's EksProperties (None for a definition without eksProperties); raises JobSpecError."""
    override = p.get("eksPropertiesOverride")
    if not jd.get("eksProperties"):
        if override:
            raise JobSpecError("eksPropertiesOverride only applies to a job definition with eksProperties")
        return None
    if p.get("containerOverrides"):
        raise JobSpecError("containerOverrides doesn't apply to an eksProperties job definition: "
                           "use eksPropertiesOverride")
    pod = copy.deepcopy(jd["eksProperties"]["podProperties"])
    over = (override or {}).get("podProperties") or {}
    for key in ("containers", "initContainers"):
        if over.get(key):
            pod[key] = _override_containers(pod.get(key) or [], over[key], key)
    labels = (over.get("metadata") or {}).get("labels")
    if labels:
        metadata = pod.get("metadata") or {}
        pod["metadata"] = {**metadata, "labels": {**(metadata.get("labels") or {}), **labels}}
    for container in [*pod["containers"], *(pod.get("initContainers") or [])]:
        for field in ("command", "args"):
            container[field] = substitute(list(container.get(field) or []), parameters)
    if len(pod["containers"]) != 1 or pod.get("initContainers"):
        raise JobSpecError(
            f"batchd runs one container per job: this pod has {len(pod['containers'])} containers and "
            f"{len(pod.get('initContainers') or [])} init containers"
        )
    return {"podProperties": pod}


def launch_container(eks: dict[str, Any]) -> dict[str, Any]:
    """What the executor runs of the pod (stored as the job's spec.container, never described)."""
    (container,) = eks["podProperties"]["containers"]
    command = container.get("command") or []
    return {
        "image": container.get("image"),
        "command": [*command, *(container.get("args") or [])] if command else [],
        "environment": [{"name": e["name"], "value": e.get("value", "")} for e in container.get("env") or []],
        "resourceRequirements": resource_requirements(container, "eksProperties.podProperties.containers[0]"),
    }
