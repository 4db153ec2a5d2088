"""The one protocol every executor implements: start, release, never_ran, wait, terminate, is_alive.

The scheduler owns AWS Batch semantics (queues, capacity, dependencies, retries, timeouts); an executor only
runs one attempt of one job somewhere and reports how it ended. Handles are plain JSON so that they are stored
with the job and a restarted server can adopt attempts that are still running.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class LaunchSpec:
    job_id: str
    attempt: int  # 1-based
    command: list[str]
    environment: dict[str, str]
    log_stream: str  # the CloudWatch-style stream name; the executor maps it to where output goes
    account: str = ""  # the job's account: the local executor keeps each account's working dirs apart
    vcpus: float = 1.0
    memory_mib: int = 0
    gpus: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # Held: start() returns before the command runs, and it runs only once release() says so. The scheduler
    # holds every attempt until its handle is committed, so a crash in between can never leave a command that
    # ran without its job knowing (see docs/durability.md).
    held: bool = False


@dataclass
class AttemptExit:
    exit_code: int | None  # None when the attempt never ran or its status is unknown
    reason: str | None = None  # the container `reason` (e.g. "CannotStartContainerError: ...")


class Executor(Protocol):
    name: str

    async def start(self, spec: LaunchSpec) -> dict[str, Any]:
        """Start the attempt and return its handle. Raise ExecutorStartError if it cannot start."""

    def release(self, handle: dict[str, Any], run: bool = True) -> None:
        """Let a held attempt run its command (run=False: end it without running anything)."""

    def never_ran(self, job_id: str, attempt: int, account: str | None = None) -> bool:
        """For an attempt whose handle was never recorded: True only when its command certainly did not start
        (it was never started, or it was still held when its server stopped). `account` narrows the search."""

    async def wait(self, handle: dict[str, Any]) -> AttemptExit:
        """Return when the attempt has ended (works for started and adopted attempts)."""

    async def terminate(self, handle: dict[str, Any], grace_seconds: float) -> None:
        """SIGTERM (or the engine's equivalent), then SIGKILL after grace_seconds if still alive."""

    def is_alive(self, handle: dict[str, Any]) -> bool:
        """After a restart: is this attempt still running (and the same process)?"""


class ExecutorStartError(Exception):
    """The attempt could not be started; the message becomes the container reason."""
