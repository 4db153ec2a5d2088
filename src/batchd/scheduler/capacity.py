"""What a compute environment offers and what it has in use. Pure bookkeeping, no I/O."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

Need = tuple[float, int, int]  # vCPUs, memory MiB, GPUs


@dataclass(frozen=True)
class Capacity:
    vcpus: float
    memory: int
    gpus: int

    def holds(self, need: Need) -> bool:
        return need[0] <= self.vcpus + 1e-9 and need[1] <= self.memory and need[2] <= self.gpus


def capacity_of(ce: dict[str, Any], memory_mib_per_vcpu: int, gpus: int) -> Capacity:
    """MANAGED: computeResources.maxvCpus; UNMANAGED: unmanagedvCpus. Memory scales with vCPUs."""
    if ce.get("type") == "UNMANAGED":
        vcpus = float(ce.get("unmanagedvCpus") or 0)
    else:
        vcpus = float((ce.get("computeResources") or {}).get("maxvCpus") or 0)
    return Capacity(vcpus, int(vcpus * memory_mib_per_vcpu), gpus)


def accepts_jobs(ce: dict[str, Any]) -> bool:
    return ce.get("state") == "ENABLED" and ce.get("status") in ("VALID", "UPDATING")


class Ledger:
    """vCPUs, memory and GPUs in use per compute environment (STARTING and RUNNING jobs)."""

    def __init__(self) -> None:
        self._used: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])

    def add(self, ce_arn: str, need: Need) -> None:
        u = self._used[ce_arn]
        u[0] += need[0]
        u[1] += need[1]
        u[2] += need[2]

    def release(self, ce_arn: str, need: Need) -> None:
        u = self._used[ce_arn]
        u[0] = max(0.0, u[0] - need[0])
        u[1] = max(0.0, u[1] - need[1])
        u[2] = max(0.0, u[2] - need[2])

    def fits(self, ce_arn: str, cap: Capacity, need: Need) -> bool:
        u = self._used[ce_arn]
        return (
            u[0] + need[0] <= cap.vcpus + 1e-9 and u[1] + need[1] <= cap.memory and u[2] + need[2] <= cap.gpus
        )

    def used(self, ce_arn: str) -> tuple[float, float, float]:
        u = self._used[ce_arn]
        return u[0], u[1], u[2]
