"""State changes that ripple: cancelling, failing, and what a finished job does to the jobs that wait on it.

Each function runs inside the caller's transaction and touches only the database; the scheduler does the
process work (starting, terminating) that follows from what these return.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from batchd.domain.jobs import (
    FAILED,
    PENDING,
    REASON_ARRAY_CHILD,
    REASON_DEPENDENCY,
    RUNNABLE,
    STARTING,
    SUBMITTED,
    SUCCEEDED,
    TERMINAL,
)
from batchd.store import jobs as store


def fail(conn: Connection, row: dict[str, Any], reason: str, now: int, **extra: Any) -> dict[str, Any]:
    """Move a job that never started (or is an array parent) to FAILED, then ripple."""
    store.save(conn, row, {"status": FAILED, "status_reason": reason, "stopped_at": now, **extra}, now)
    finished(conn, row, now)
    return row


def cancel(conn: Connection, row: dict[str, Any], reason: str, now: int) -> bool:
    """CancelJob's rules (the seed) for one job. Returns True when the scheduler should look again.

    SUBMITTED, or PENDING with nothing to wait for: FAILED now. PENDING with unfinished dependencies: marked,
    FAILED once they are all done. RUNNABLE: marked, FAILED when it reaches the head of its queue (the
    scheduler does that). An array parent: every child is cancelled by its own rule; the parent fails when the
    last child is done. STARTING, RUNNING and finished jobs are left alone.
    """
    status = row["status"]
    if status in TERMINAL or status in (STARTING, "RUNNING") or row["is_cancelled"]:
        return False
    if row["array_size"] is not None and row["parent_id"] is None:
        return _cancel_array_parent(conn, row, reason, now)
    if status == SUBMITTED or (status == PENDING and row["pending_deps"] == 0):
        fail(conn, row, reason, now, is_cancelled=True)
        return True
    store.save(conn, row, {"is_cancelled": True, "status_reason": reason, "cancel_reason": reason}, now)
    return status == RUNNABLE


def _cancel_array_parent(conn: Connection, row: dict[str, Any], reason: str, now: int) -> bool:
    if not row["runtime"].get("childrenCreated"):
        # No child exists yet, so nothing can have run. SUBMITTED (its children are created before it leaves
        # SUBMITTED): FAILED now, R1, and it never gets children. A PENDING parent without children was stored
        # by an older batchd: R3, it fails once its dependencies are done.
        if row["status"] == SUBMITTED or row["pending_deps"] == 0:
            fail(conn, row, reason, now, is_cancelled=True, cancel_reason=reason)
        else:
            store.save(conn, row, {"is_cancelled": True, "status_reason": reason, "cancel_reason": reason}, now)
        return True
    store.save(conn, row, {"is_cancelled": True, "status_reason": reason, "cancel_reason": reason}, now)
    # Children with nothing to wait for fail now (R1); there are none in practice: children are created
    # RUNNABLE or waiting on a dependency. The others are marked in one statement (R2, R3), not one by one:
    # an array has up to 10,000 children. Children created after this (the parent is still SUBMITTED) are
    # created cancelled (arrays.py).
    for kid in store.children_to_fail_on_cancel(conn, row["id"]):
        cancel(conn, kid, reason, now)
    store.mark_children_cancelled(conn, row["id"], reason)
    refresh_parent(conn, row["id"], now)
    return True


def finished(conn: Connection, row: dict[str, Any], now: int) -> None:
    """A job reached SUCCEEDED or FAILED: release its dependents and update its array parent."""
    finished_many(conn, [row], now)


def fail_cancelled(conn: Connection, ids: list[str], now: int) -> int:
    """Cancelled RUNNABLE jobs that reached the head of their queue: FAILED with the cancel reason (R2).

    Many at once (one statement for the jobs, one for their events, one per array parent), because a cancelled
    array puts up to 10,000 of them at the head one after the other. Returns how many failed.
    """
    if not ids:
        return 0
    rows = store.fail_cancelled_runnable(conn, ids, now)
    finished_many(conn, rows, now)
    return len(rows)


def finished_many(conn: Connection, rows: list[dict[str, Any]], now: int) -> bool:
    """`finished` for several jobs, level by level: the jobs, then what they released or failed, and so on.
    Returns True when an array parent's dependencies are now met: the scheduler must create its children (any
    other job released is RUNNABLE, or FAILED, already)."""
    todo: list[dict[str, Any]] = list(rows)
    parents_released = False
    while todo:
        level, todo = todo, []
        ids = [d["id"] for d in level]
        waited_on = set(ids) if len(ids) == 1 else store.waited_on(conn, ids)
        for done in level:
            if done["id"] in waited_on:
                failed, released = _release_dependents(conn, done, now)
                todo += failed
                parents_released |= released
        per_parent: dict[str, int] = {}
        for done in level:
            if done.get("parent_id"):
                per_parent[done["parent_id"]] = per_parent.get(done["parent_id"], 0) + 1
        for parent_id, n in per_parent.items():
            parent = store.get_for_update(conn, parent_id)  # children finish on several servers
            if parent is not None and parent["status"] not in TERMINAL and _children_done(conn, parent, n, now):
                todo.append(parent)  # the array just finished: its dependents move on
        for done in level:
            if done["status"] == FAILED and done.get("array_size") is not None and done.get("parent_id") is None:
                # An array that failed before creating all its children (a failed dependency, a cancel):
                # children of another array that wait N_TO_N on the missing ones would wait forever. They
                # failed with it.
                for ghost in store.waits_on_missing_children(conn, done["id"]):
                    todo.append({"id": ghost, "status": FAILED, "parent_id": None, "array_size": None})
    return parents_released


def _parent_dependency_finished(parent: dict[str, Any], status: str, left: int, now: int) -> dict[str, Any]:
    """A dependency of an array parent finished. The parent does not fail or start by itself: its children,
    which exist already and are gated on it (arrays.py), are released once its dependencies are decided, and
    it finishes when they have. A failure decides at once (its children fail with `Dependent Job failed`) unless
    the parent was cancelled: then each child waits for all of them, R3. `pending_deps` 0 means decided."""
    runtime = parent["runtime"]
    if status == FAILED and not parent["is_cancelled"]:
        return {"pending_deps": 0, "runtime": {**runtime, "dependencyFailed": True}}
    if left == 0 and parent["is_cancelled"] and not runtime.get("childrenCreated") and parent["status"] == PENDING:
        # Stored by an older batchd before it had children, then cancelled: it fails now (R3) with no child.
        return {"pending_deps": 0, "status": FAILED, "status_reason": parent["cancel_reason"], "stopped_at": now}
    return {"pending_deps": left}


def _release_dependents(conn: Connection, done: dict[str, Any], now: int) -> tuple[list[dict[str, Any]], bool]:
    """Tell the jobs waiting on `done` that it finished; returns the ones that failed because of it, and whether
    an array parent now waits for nothing (its children are to be created)."""
    failed = []
    parent_released = False
    for waiting in store.dependents(conn, done["id"]):
        # Locked re-read: with several servers on PostgreSQL, two dependencies may finish at once, and each
        # decrement of pending_deps must see the other's.
        dep = store.get_for_update(conn, waiting["id"])
        if dep is None or dep["status"] in TERMINAL:
            continue
        left = max(0, dep["pending_deps"] - 1)
        if dep["array_size"] is not None and dep["parent_id"] is None:
            changes = _parent_dependency_finished(dep, done["status"], left, now)
            store.save(conn, dep, changes, now)
            if changes.get("status") == FAILED:
                failed.append(dep)
            elif changes["pending_deps"] == 0:
                parent_released = True  # its gated children are to be released (or failed): arrays.py
            continue
        if done["status"] == FAILED and not dep["is_cancelled"]:
            # A failed dependency fails the dependent at once, and that cascades down the chain.
            store.save(conn, dep, {"pending_deps": left, "status": FAILED, "status_reason": REASON_DEPENDENCY,
                                   "stopped_at": now}, now)
            failed.append(dep)
            continue
        changes: dict[str, Any] = {"pending_deps": left}
        if left == 0 and dep["status"] == PENDING:
            if dep["is_cancelled"]:
                changes.update(status=FAILED, status_reason=dep["cancel_reason"], stopped_at=now)
            else:
                changes.update(status=RUNNABLE, runnable_at=now)
        store.save(conn, dep, changes, now)
        if changes.get("status") == FAILED:
            failed.append(dep)
    return failed, parent_released


def _children_done(conn: Connection, parent: dict[str, Any], n: int, now: int) -> bool:
    """`n` more children of `parent` finished. True when that finished the parent.

    Counting the children by status costs a scan of all of them (about 20 ms for 10,000), so each finished child
    only bumps a counter; the exact recount runs when the counter says the last child is done (and corrects the
    counter if it was ever off, so a parent never finishes early).
    """
    runtime = parent["runtime"]
    done = int(runtime.get("childrenDone", 0)) + n
    if done < _expected_children(parent):
        store.save(conn, parent, {"runtime": {**runtime, "childrenDone": done}}, now, event=False)
        return False
    recount(conn, parent, now)
    return parent["status"] in TERMINAL


def refresh_parent(conn: Connection, parent_id: str, now: int) -> dict[str, Any] | None:
    """Recount an array parent's children; finish the parent when every child is done."""
    parent = store.get_for_update(conn, parent_id)
    if parent is None or parent["status"] in TERMINAL:
        return parent
    return recount(conn, parent, now)


def recount(conn: Connection, parent: dict[str, Any], now: int) -> dict[str, Any]:
    """refresh_parent on a parent row already read (and not finished)."""
    parent_id = parent["id"]
    counts = store.child_status_counts(conn, parent_id)
    summary = {s: counts.get(s, 0) for s in ("SUBMITTED", PENDING, RUNNABLE, STARTING, "RUNNING", SUCCEEDED, FAILED)}
    runtime = {**parent["runtime"], "statusSummary": summary, "statusSummaryLastUpdatedAt": now,
               "childrenDone": summary[SUCCEEDED] + summary[FAILED]}
    changes: dict[str, Any] = {"runtime": runtime}
    total = sum(counts.values())
    if total and total == _expected_children(parent) and summary[SUCCEEDED] + summary[FAILED] == total:
        if parent["is_cancelled"]:
            changes.update(status=FAILED, status_reason=parent["cancel_reason"], stopped_at=now)
        elif parent["runtime"].get("dependencyFailed"):
            changes.update(status=FAILED, status_reason=REASON_DEPENDENCY, stopped_at=now)
        elif summary[FAILED]:
            changes.update(status=FAILED, status_reason=REASON_ARRAY_CHILD, stopped_at=now)
        else:
            changes.update(status=SUCCEEDED, status_reason=None, stopped_at=now)
    store.save(conn, parent, changes, now)
    return parent


def _expected_children(parent: dict[str, Any]) -> int:
    """How many children the parent finishes with: all of them (they are all created, cancelled or not), except
    a cancelled PENDING parent stored by an older batchd before all its children existed: the ones it has."""
    if parent["is_cancelled"] and parent["status"] == PENDING:
        return min(parent["array_size"], int(parent["runtime"].get("childrenCreated", 0)))
    return parent["array_size"]
