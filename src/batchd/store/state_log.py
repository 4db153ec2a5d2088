"""The server's terminal shows one line per job state change (INFO, logger `batchd.jobs`).

Called where every state change is recorded as an event (store/jobs.py `_record`, inside the transaction that
makes the change), so no change goes unlogged and none is logged twice. A transaction that then fails (the
request answers 500) has logged a change that did not happen; that is rare and the 500 is logged too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("batchd.jobs")

_WITH_REASON = frozenset({"FAILED", "SUCCEEDED"})


def log_state_changes(rows: Iterable[dict[str, Any]]) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    for row in rows:
        status = row["status"]
        reason = row.get("status_reason") if status in _WITH_REASON else None
        if reason:
            log.info("job %s (%s) %s: %s", row["id"], row["name"], status, reason)
        else:
            log.info("job %s (%s) %s", row["id"], row["name"], status)
