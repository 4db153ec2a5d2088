"""Request validation against the botocore input shapes (placeholder; replaced by the full validator)."""

from __future__ import annotations

from typing import Any

from botocore.model import Shape

BODY_LIMITS: dict[str, int] = {"SubmitJob": 30 * 1024, "RegisterJobDefinition": 24 * 1024}


def validate_request(operation: str, shape: Shape | None, params: dict[str, Any]) -> None:
    return None
