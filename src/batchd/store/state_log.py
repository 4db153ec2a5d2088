"""The server's terminal shows one line per job state change (INFO, logger `batchd.jobs`).

Called where every state change is recorded as an event (store/jobs.py `_record`, inside the transaction that
makes the change), so no change goes unlogged and none is logged twice. State changes are a hot path (a job
makes four or five; array fan-out and dispatch make thousands at once), so the lines are gathered for at most
FLUSH_SECONDS and written as one log record of several lines (server.py prints each line with its own prefix):
a line costs the formatting of one string, not a log record (about 1 µs instead of 15). The time a line shows
is when it was written, up to FLUSH_SECONDS after the change (the activity log has the exact time). A
transaction that then failed (the request answers 500, logged too) has logged a change that did not happen,
which is rare.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("batchd.jobs")

FLUSH_SECONDS = 0.05
_WITH_REASON = frozenset({"FAILED", "SUCCEEDED"})
_pending: list[str] = []


def log_state_changes(rows: Iterable[dict[str, Any]]) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    first = not _pending
    for row in rows:
        status = row["status"]
        reason = row.get("status_reason") if status in _WITH_REASON else None
        line = f"job {row['id']} ({row['name']}) {status}"
        _pending.append(f"{line}: {reason}" if reason else line)
    if first and _pending:
        try:
            asyncio.get_running_loop().call_later(FLUSH_SECONDS, flush)
        except RuntimeError:  # no event loop (a tool using the store directly): now
            flush()


def flush() -> None:
    if _pending:
        text = "\n".join(_pending)
        _pending.clear()
        log.info("%s", text)


atexit.register(flush)  # before logging's own shutdown (atexit runs the last registered first)
