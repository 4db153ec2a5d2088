"""Array jobs: a parent fans out into children `<parentId>:<index>`, created in batches off the request path.

SubmitJob stores only the parent (SUBMITTED), so it answers at once whatever the size; the scheduler creates the
children here, a batch per transaction, yielding to requests in between. The parent leaves SUBMITTED (for
PENDING) in the transaction that creates its last child: once a client sees it PENDING, every child exists.

Children are created at once even when the parent waits on dependencies: each child of a waiting parent is
*gated* (one more in its `pending_deps`, with no dependency row), and the gated children are a prefix of the
indices (`runtime.gated`: children are created in index order, and the gate never closes again). When the
parent's dependencies are decided the gate is released, again a batch per transaction (`runtime.released`
counts the children done so far): each child waits for nothing more (RUNNABLE), still waits on its own
SEQUENTIAL/N_TO_N dependencies (PENDING), or fails (`Dependent Job failed` when a dependency of the parent
failed; the cancel reason when it was cancelled).

SEQUENTIAL makes child i wait for child i-1; N_TO_N makes child i wait for child i of each array it names.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from batchd.domain import jobs as J
from batchd.scheduler import lifecycle
from batchd.store import jobs as store
from batchd.store.schema import jobs

CHILD_BATCH = 1000
_COPIED = ("account", "region", "queue_arn", "name", "jd_arn", "share_id", "vcpus", "memory", "gpus", "array_size")


def gate_decided(parent: dict[str, Any]) -> bool:
    """Whether the parent's dependencies are decided: all finished, or (not cancelled) one failed. A failure
    sets `pending_deps` to 0 (lifecycle), so that is the one test."""
    return parent["pending_deps"] == 0


def has_work(parent: dict[str, Any]) -> bool:
    """Whether an unfinished array parent has children to create or to release."""
    runtime = parent["runtime"]
    if runtime.get("gated", 0) > runtime.get("released", 0) and gate_decided(parent):
        return True
    if parent["status"] == J.SUBMITTED:
        return True  # children to create (the last batch moves it to PENDING)
    # A PENDING parent stored before children were created up front (an older batchd): finish its children.
    return not parent["is_cancelled"] and runtime.get("childrenCreated", 0) < parent["array_size"]


def spawn_children(db: Any, now: int) -> bool:
    """One batch of array work, for the oldest parent that has some: release (or fail) its next gated children,
    or create its next children. True when more remains."""
    with db.tx() as conn:
        parents = [p for p in store.unfinished_array_parents(conn) if has_work(p)]
        if not parents:
            return False
        _lock_what_creation_reads(conn, parents[0])
        # Locked: children finishing on other servers update its runtime, and CancelJob may mark it meanwhile.
        parent = store.get_for_update(conn, parents[0]["id"])
        if parent is None or parent["status"] in J.TERMINAL or not has_work(parent):
            return len(parents) > 1
        runtime = parent["runtime"]
        if runtime.get("gated", 0) > runtime.get("released", 0) and gate_decided(parent):
            more = _release_batch(conn, parent, now)
        else:
            more = _create_batch(conn, parent, now)
        # (A release can leave children to create, and the other way round: `parent` holds what was saved.)
        return more or len(parents) > 1 or (parent["status"] not in J.TERMINAL and has_work(parent))


def _lock_what_creation_reads(conn: Any, parent: dict[str, Any]) -> None:
    """On PostgreSQL, lock the jobs whose state decides what the next batch of children waits on: the previous
    child (SEQUENTIAL), the children of the same indices of the N_TO_N arrays, and those arrays. A job that
    ends on another server at the same moment then either ends first (the batch sees it finished) or after the
    batch is committed (its end then sees, and releases, the new children that wait on it); without the lock
    both could miss the other and a child would wait forever. They are locked before the parent, as every end
    locks a job before its parent. (`parent` is the unlocked read: only the scheduling server creates children,
    so the batch it names is the one `_create_batch` creates.)"""
    runtime = parent["runtime"]
    if conn.dialect.name == "sqlite" or (runtime.get("gated", 0) > runtime.get("released", 0)
                                         and gate_decided(parent)):
        return  # one writer; or this pass releases children instead of creating them
    deps = parent["spec"].get("dependsOn") or []
    start = runtime.get("childrenCreated", 0)
    end = min(parent["array_size"], start + CHILD_BATCH)
    n_to_n = [d["jobId"] for d in deps if d.get("type") == "N_TO_N" and d.get("jobId")]
    ids = [f"{a}:{i}" for a in n_to_n for i in range(start, end)]
    if start > 0 and any(d.get("type") == "SEQUENTIAL" for d in deps):
        ids.append(f"{parent['id']}:{start - 1}")
    store.get_many_for_update(conn, ids)
    store.get_many_for_update(conn, n_to_n)  # after their children, as their children's ends lock them


def _create_batch(conn: Any, parent: dict[str, Any], now: int) -> bool:
    runtime = parent["runtime"]
    start = runtime.get("childrenCreated", 0)
    end = min(parent["array_size"], start + CHILD_BATCH)
    deps = parent["spec"].get("dependsOn") or []
    sequential = any(d.get("type") == "SEQUENTIAL" for d in deps)
    n_to_n = [d["jobId"] for d in deps if d.get("type") == "N_TO_N" and d.get("jobId")]
    dep_status = _n_to_n_status(conn, n_to_n, start, end)
    ended_arrays = {a: r["status"] for a in n_to_n if (r := store.get(conn, a)) and r["status"] in J.TERMINAL}
    # The parent's own dependencies: a failure fails every child (unless cancelled: then each waits for all of
    # them, R3); while any is unfinished, each child is gated.
    dependency_failed = bool(runtime.get("dependencyFailed")) and not parent["is_cancelled"]
    gated = not dependency_failed and parent["pending_deps"] > 0
    child_rows, dep_rows = [], []
    prev_failed = prev_succeeded = False
    if sequential and start > 0:  # the previous batch's last child may have finished already
        prev = store.get(conn, f"{parent['id']}:{start - 1}")
        prev_failed = prev is not None and prev["status"] == J.FAILED
        prev_succeeded = prev is not None and prev["status"] == J.SUCCEEDED
    for i in range(start, end):
        child_id = f"{parent['id']}:{i}"
        waits: list[dict[str, Any]] = []
        failed = dependency_failed
        if sequential and prev_failed:
            failed = True
        elif sequential and i > 0 and not (i == start and prev_succeeded):
            waits.append({"job_id": child_id, "depends_on": f"{parent['id']}:{i - 1}", "type": "SEQUENTIAL"})
        for array_id in n_to_n:
            other = f"{array_id}:{i}"
            status = dep_status.get(other)
            if status is None and ended_arrays.get(array_id) == J.FAILED:
                status = J.FAILED  # that array failed before it created this child: it never will
            if status == J.FAILED:
                failed = True
            elif status != J.SUCCEEDED:
                waits.append({"job_id": child_id, "depends_on": other, "type": "N_TO_N"})
        row = _child_row(parent, i, now, len(waits) + gated, failed)
        if row["status"] != J.FAILED:
            dep_rows += waits
        prev_failed, prev_succeeded = row["status"] == J.FAILED, False
        child_rows.append(row)
    store.insert_jobs(conn, child_rows, event_at=now)
    store.insert_deps(conn, dep_rows)
    changes: dict[str, Any] = {"runtime": {**runtime, "childrenCreated": end, **({"gated": end} if gated else {})}}
    if end == parent["array_size"] and parent["status"] == J.SUBMITTED:
        changes["status"] = J.PENDING  # every child exists now
    store.save(conn, parent, changes, now)
    if any(r["status"] == J.FAILED for r in child_rows) or end == parent["array_size"]:
        lifecycle.refresh_parent(conn, parent["id"], now)
    return end < parent["array_size"]


def _child_row(parent: dict[str, Any], index: int, now: int, waits: int, failed: bool) -> dict[str, Any]:
    """A new child: PENDING while it waits, RUNNABLE when it waits for nothing, FAILED when a dependency
    already failed. The child of a cancelled parent is cancelled from the start, by the rules for its state:
    a failed dependency counts as finished, and it fails (with the cancel reason) once it waits for nothing."""
    row = {
        **{k: parent[k] for k in _COPIED},
        "id": f"{parent['id']}:{index}", "parent_id": parent["id"], "array_index": index, "created_at": now,
        "status": J.PENDING, "is_cancelled": False, "is_terminated": False, "attempt": 0,
        "pending_deps": waits, "spec": parent["spec"], "runtime": {},
    }
    if parent["is_cancelled"]:
        reason = parent["cancel_reason"]
        row.update(is_cancelled=True, status_reason=reason, cancel_reason=reason)
        if waits == 0:
            row.update(status=J.FAILED, stopped_at=now)
    elif failed:
        row.update(status=J.FAILED, status_reason=J.REASON_DEPENDENCY, stopped_at=now, pending_deps=0)
    elif waits == 0:
        row.update(status=J.RUNNABLE, runnable_at=now)
    return row


def _release_batch(conn: Any, parent: dict[str, Any], now: int) -> bool:
    """The parent's dependencies are decided: release its next gated children. In index order when they may
    start; from the highest index down when a failed dependency fails them all, so that no child's failure
    ripples down the SEQUENTIAL chain of the siblings still gated (one ripple level per child, in one
    transaction): each one's successor has failed already."""
    runtime = parent["runtime"]
    released, gated = runtime.get("released", 0), runtime["gated"]
    dependency_failed = bool(runtime.get("dependencyFailed")) and not parent["is_cancelled"]
    from_top = runtime.get("releaseFromTop", dependency_failed)  # fixed by the first batch
    count = min(CHILD_BATCH, gated - released)
    if from_top:
        indices = range(gated - released - 1, gated - released - count - 1, -1)
    else:
        indices = range(released, released + count)
    ids = [f"{parent['id']}:{i}" for i in indices]
    kids = store.get_many_for_update(conn, ids)
    sequential = not from_top and any(d.get("type") == "SEQUENTIAL" for d in parent["spec"].get("dependsOn") or [])
    saves: list[tuple[dict[str, Any], dict[str, Any]]] = []
    ended: list[dict[str, Any]] = []
    prev_failed = False
    for child_id in ids:
        kid = kids.get(child_id)
        if kid is None or kid["status"] != J.PENDING:
            prev_failed = False  # a child that finished before already released the one after it
            continue
        changes = _released(kid, dependency_failed, sequential and prev_failed, now)
        prev_failed = changes.get("status") == J.FAILED
        saves.append((kid, changes))
        if prev_failed:
            ended.append(kid)
    # The parent first: what the ended children ripple re-reads it (their count of finished children).
    store.save(conn, parent, {"runtime": {**runtime, "released": released + count, "releaseFromTop": from_top}}, now)
    store.save_many(conn, saves, now)
    if ended:
        lifecycle.finished_many(conn, ended, now)
    return released + count < gated


def _released(kid: dict[str, Any], dependency_failed: bool, prev_failed: bool, now: int) -> dict[str, Any]:
    """What releasing its gate does to one PENDING child. `prev_failed`: its SEQUENTIAL predecessor failed in
    this same batch; that is applied here when it makes this child fail too, so that a sequential array fails
    child by child within one statement instead of one ripple level per child."""
    left = max(0, kid["pending_deps"] - 1)
    if (dependency_failed or prev_failed) and not kid["is_cancelled"]:
        return {"pending_deps": max(0, left - prev_failed), "status": J.FAILED,
                "status_reason": J.REASON_DEPENDENCY, "stopped_at": now}
    if prev_failed and left == 1:
        left = 0  # cancelled, and its predecessor was all it still waited for
    if left == 0:
        if kid["is_cancelled"]:
            return {"pending_deps": 0, "status": J.FAILED, "status_reason": kid["cancel_reason"], "stopped_at": now}
        return {"pending_deps": 0, "status": J.RUNNABLE, "runnable_at": now}
    return {"pending_deps": left}  # still waits on its own SEQUENTIAL/N_TO_N dependencies


def _n_to_n_status(conn: Any, array_ids: list[str], start: int, end: int) -> dict[str, str]:
    if not array_ids:
        return {}
    ids = [f"{a}:{i}" for a in array_ids for i in range(start, end)]
    out: dict[str, str] = {}
    for chunk in range(0, len(ids), 500):
        rows = conn.execute(select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(ids[chunk:chunk + 500]))).all()
        out.update({r.id: r.status for r in rows})
    return out
