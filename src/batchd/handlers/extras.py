"""batchd's own endpoints under /batchd/ (outside the AWS API)."""

from __future__ import annotations

from batchd.api.errors import ClientException
from batchd.api.registry import RequestContext


async def handle_extra(ctx: RequestContext, method: str, path: str, query: dict[str, list[str]]) -> dict:
    raise ClientException(f"Unknown path {path}")
