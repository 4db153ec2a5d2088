"""Array jobs: a parent fans out into children `<parentId>:<index>`, created in batches off the request path.

SubmitJob stores only the parent, so it answers at once whatever the size; the scheduler creates the children
here, a batch per transaction, yielding to requests in between. SEQUENTIAL makes child i wait for child i-1;
N_TO_N makes child i wait for child i of each array it names.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from batchd.domain import jobs as J
from batchd.store import jobs as store
from batchd.store.schema import jobs

CHILD_BATCH = 1000


def spawn_children(db: Any, now: int) -> bool:
    """Create the next batch of children for waiting array parents. True when more remain."""
    with db.tx() as conn:
        parents = store.waiting_array_parents(conn)
        if not parents:
            return False
        parent = parents[0]
        start = parent["runtime"].get("childrenCreated", 0)
        end = min(parent["array_size"], start + CHILD_BATCH)
        deps = parent["spec"].get("dependsOn") or []
        sequential = any(d.get("type") == "SEQUENTIAL" for d in deps)
        n_to_n = [d["jobId"] for d in deps if d.get("type") == "N_TO_N" and d.get("jobId")]
        dep_status = _n_to_n_status(conn, n_to_n, start, end)
        ended_arrays = {a: r["status"] for a in n_to_n if (r := store.get(conn, a)) and r["status"] in J.TERMINAL}
        child_rows, dep_rows = [], []
        prev_failed = prev_succeeded = False
        if sequential and start > 0:  # the previous batch's last child may have finished already
            prev = store.get(conn, f"{parent['id']}:{start - 1}")
            prev_failed = prev is not None and prev["status"] == J.FAILED
            prev_succeeded = prev is not None and prev["status"] == J.SUCCEEDED
        for i in range(start, end):
            child_id = f"{parent['id']}:{i}"
            waits, failed = 0, False
            if sequential and prev_failed:
                failed = True
            elif sequential and i > 0 and not (i == start and prev_succeeded):
                dep_rows.append({"job_id": child_id, "depends_on": f"{parent['id']}:{i - 1}", "type": "SEQUENTIAL"})
                waits += 1
            for array_id in n_to_n:
                other = f"{array_id}:{i}"
                status = dep_status.get(other)
                if status is None and ended_arrays.get(array_id) == J.FAILED:
                    status = J.FAILED  # that array failed before it created this child: it never will
                if status == J.SUCCEEDED:
                    continue
                if status == J.FAILED:
                    failed = True
                    continue
                dep_rows.append({"job_id": child_id, "depends_on": other, "type": "N_TO_N"})
                waits += 1
            row = {
                **{k: parent[k] for k in ("account", "region", "queue_arn", "name", "jd_arn", "share_id",
                                          "vcpus", "memory", "gpus", "array_size")},
                "id": child_id, "parent_id": parent["id"], "array_index": i, "created_at": now,
                "status": J.PENDING, "is_cancelled": False, "is_terminated": False, "attempt": 0,
                "pending_deps": waits, "spec": parent["spec"], "runtime": {},
            }
            if failed:
                row.update(status=J.FAILED, status_reason=J.REASON_DEPENDENCY, stopped_at=now)
                dep_rows = [d for d in dep_rows if d["job_id"] != child_id]
            elif waits == 0:
                row.update(status=J.RUNNABLE, runnable_at=now)
            prev_failed = failed
            child_rows.append(row)
        store.insert_jobs(conn, child_rows, event_at=now)
        store.insert_deps(conn, dep_rows)
        store.save(conn, parent, {"runtime": {**parent["runtime"], "childrenCreated": end}}, now, event=False)
        if any(r["status"] == J.FAILED for r in child_rows) or end == parent["array_size"]:
            from batchd.scheduler.lifecycle import refresh_parent

            refresh_parent(conn, parent["id"], now)
        return end < parent["array_size"] or len(parents) > 1


def _n_to_n_status(conn: Any, array_ids: list[str], start: int, end: int) -> dict[str, str]:
    if not array_ids:
        return {}
    ids = [f"{a}:{i}" for a in array_ids for i in range(start, end)]
    out: dict[str, str] = {}
    for chunk in range(0, len(ids), 500):
        rows = conn.execute(select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(ids[chunk:chunk + 500]))).all()
        out.update({r.id: r.status for r in rows})
    return out
