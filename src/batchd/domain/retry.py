"""The retry policy: given how an attempt ended, retry or fail. Pure; no I/O.

AWS rules: `attempts` (1-10) counts passes through RUNNABLE; `evaluateOnExit` entries are tried in order, an
entry matches when all of its given conditions match (exact text or a trailing `*` prefix), the first match
decides, and when no entry matches the job is retried. Cancelled, terminated and timed-out attempts are
never retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AttemptOutcome:
    exit_code: int | None
    reason: str | None  # the container reason
    status_reason: str | None  # the attempt's statusReason
    cancelled: bool = False
    terminated: bool = False
    timed_out: bool = False


def glob_match(pattern: str, value: str | None) -> bool:
    """AWS's glob: exact text, or a prefix when the pattern ends with `*`."""
    value = value or ""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def _entry_matches(entry: dict[str, Any], outcome: AttemptOutcome) -> bool:
    checks = (
        ("onExitCode", "" if outcome.exit_code is None else str(outcome.exit_code)),
        ("onReason", outcome.reason),
        ("onStatusReason", outcome.status_reason),
    )
    return all(glob_match(entry[key], value) for key, value in checks if entry.get(key) is not None)


def should_retry(retry_strategy: dict[str, Any] | None, attempts_made: int, outcome: AttemptOutcome) -> bool:
    """True when the job goes back to RUNNABLE for another attempt."""
    if outcome.cancelled or outcome.terminated or outcome.timed_out:
        return False
    if outcome.exit_code == 0:
        return False
    allowed = int((retry_strategy or {}).get("attempts") or 1)
    if attempts_made >= allowed:
        return False
    for entry in (retry_strategy or {}).get("evaluateOnExit") or []:
        if _entry_matches(entry, outcome):
            return str(entry.get("action", "")).upper() == "RETRY"
    return True
