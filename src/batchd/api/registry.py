"""Operation handlers register here by the operation's name in the service model."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchd.service import Service


@dataclass
class RequestContext:
    account: str
    region: str
    request_id: str
    service: Service
    access_key_id: str | None = None

    @property
    def partition(self) -> str:
        from batchd.domain.arns import partition_for

        return partition_for(self.region)


Handler = Callable[[RequestContext, dict[str, Any]], Awaitable[dict[str, Any]]]

# Batch operations by name (e.g. "SubmitJob"); CloudWatch Logs operations as "logs:GetLogEvents".
HANDLERS: dict[str, Handler] = {}


def operation(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        if name in HANDLERS:
            raise RuntimeError(f"operation {name} registered twice")
        HANDLERS[name] = fn
        return fn

    return register
