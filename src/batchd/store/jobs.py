"""Named queries over jobs, their dependencies and the activity log.

Every status change goes through `save_many` (`save` is its one-job form), and a job's first state through
`insert_jobs` (with `event_at`); both append the "Batch Job State Change" event in the same transaction, so
the activity log and the job can never disagree.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from batchd.domain.jobs import render_detail
from batchd.store.schema import events, job_deps, jobs
from batchd.store.state_log import log_state_changes

# `detail` (the rendered DescribeJobs record) is read only by DescribeJobs; every other read leaves it out.
_COLS = [c.name for c in jobs.columns if c.name != "detail"]

# Statements built once: building one costs more than running it (SQLAlchemy compiles each new statement
# object), and these run once or more per job state change; an array of 10,000 makes that count.
_dependents = (
    select(jobs, job_deps.c.type.label("dep_type"))
    .join(job_deps, job_deps.c.job_id == jobs.c.id)
    .where(job_deps.c.depends_on == bindparam("b_dep"))
)
_child_counts = (
    select(jobs.c.status, func.count()).where(jobs.c.parent_id == bindparam("b_parent")).group_by(jobs.c.status)
)
def _row(r: Any) -> dict[str, Any]:
    return dict(r._mapping)


# --- driver-level statements for the per-job hot path --------------------------------------------------------
# Reading, updating and logging a job happen several times per job; SQLAlchemy's per-execute work costs more
# than SQLite's. These run as plain SQL through the same connection and transaction, with JSON columns encoded
# and decoded here (SQLite hands back text, psycopg already-decoded values).

_SELECT_JOBS = "SELECT " + ", ".join(_COLS) + " FROM jobs"
_JSON = frozenset({"spec", "runtime"})
_driver_sql: dict[tuple, str] = {}


def _sql(conn: Connection, key: tuple, text: str) -> str:
    """`text` written with `?` placeholders, in the driver's own style (cached)."""
    full = (conn.dialect.paramstyle, *key)
    sql = _driver_sql.get(full)
    if sql is None:
        sql = text if conn.dialect.paramstyle == "qmark" else text.replace("?", "%s")
        _driver_sql[full] = sql
    return sql


def _run(conn: Connection, sql: str, params: Any = (), many: bool = False) -> Any:
    """Execute on the driver's own cursor, inside the connection's current transaction. (SQLAlchemy's result
    objects build per-column metadata on every call: more work than the query itself on this path.)"""
    cur = conn.connection.cursor()
    if many and len(params) == 1:
        cur.execute(sql, params[0])  # psycopg's executemany sets up a pipeline: costly for one row
    elif many:
        cur.executemany(sql, params)
    else:
        cur.execute(sql, params)
    return cur


def _decode(values: Sequence[Any]) -> dict[str, Any]:
    row = dict(zip(_COLS, values, strict=True))
    for col in _JSON:
        if isinstance(row[col], str | bytes):
            row[col] = orjson.loads(row[col])
    row["is_cancelled"] = bool(row["is_cancelled"])
    row["is_terminated"] = bool(row["is_terminated"])
    return row


def _encode(col: str, value: Any) -> Any:
    return orjson.dumps(value).decode() if col in _JSON else value


def rendered(row: dict[str, Any]) -> str:
    """The job's DescribeJobs record as JSON text: stored in `detail` by every write of the row (so DescribeJobs
    returns it without decoding or rendering) and used as the detail of the row's events."""
    return orjson.dumps(render_detail(row)).decode()


# --- the record cache (SQLite only) --------------------------------------------------------------------------
# DescribeJobs is mostly polling: the same jobs, again and again, while they change rarely. With SQLite every
# write goes through this one process (the data dir is locked), so a cache of stored records that every write
# path empties for the jobs it touches is exact. With PostgreSQL other servers write too: no cache.

RECORD_CACHE_SIZE = 20_000


def _record_cache(conn: Connection) -> OrderedDict[str, tuple[str, str, bytes]] | None:
    if conn.dialect.name != "sqlite":
        return None
    cache = conn.info.get("batchd_records")
    if cache is None:
        cache = conn.info["batchd_records"] = OrderedDict()
    return cache


def forget_records(conn: Connection, ids: Iterable[str] | None = None) -> None:
    """Drop these jobs' cached records (all of them when `ids` is None): called by every write of job rows,
    before it commits, so a later read can never see the record from before the write."""
    cache = _record_cache(conn)
    if cache is None:
        return
    if ids is None:
        cache.clear()
    else:
        for job_id in ids:
            cache.pop(job_id, None)


def describe_many(
    conn: Connection, account: str, region: str, ids: Sequence[str]
) -> list[bytes | str | dict[str, Any]]:
    """The caller's jobs with these ids, in the order asked, each as its stored DescribeJobs record (JSON text;
    bytes from SQLite, which then needs no decoding on the way out) or, where that cannot be used as stored, as
    the full row for the caller to render: an unfinished array parent (its statusSummary is counted at read
    time) or a row whose record a bulk update cleared."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return []
    cache = _record_cache(conn)
    found: dict[str, bytes | str | dict[str, Any]] = {}
    missing = ids
    if cache is not None:
        missing = []
        for job_id in ids:
            hit = cache.get(job_id)
            if hit is None:
                missing.append(job_id)
            elif hit[0] == account and hit[1] == region:
                found[job_id] = hit[2]
    if missing:
        sql = _sql(conn, ("describe_many", len(missing)),
                   "SELECT id, account, region, " + ("CAST(detail AS BLOB)" if cache is not None else "detail")
                   + ", array_size IS NOT NULL AND parent_id IS NULL AND status NOT IN ('SUCCEEDED', 'FAILED') "
                   f"FROM jobs WHERE id IN ({', '.join('?' * len(missing))})")
        # Only a read outside a write transaction sees committed rows only: only such a read may fill the cache.
        fill = cache is not None and not conn.info.get("batchd_writing")
        for job_id, acct, reg, detail, live_parent in _run(conn, sql, tuple(missing)).fetchall():
            if detail is None or live_parent:
                if acct == account and reg == region and (row := get(conn, job_id)) is not None:
                    found[job_id] = row
                continue
            if fill:
                if len(cache) >= RECORD_CACHE_SIZE:
                    # The oldest entry. (OrderedDict: a plain dict's first key is found by skipping the slots of
                    # every key deleted before it, which makes this eviction slower and slower.)
                    cache.popitem(last=False)
                cache[job_id] = (acct, reg, detail)
            if acct == account and reg == region:
                found[job_id] = detail
    return [found[i] for i in ids if i in found]


def get(conn: Connection, job_id: str) -> dict[str, Any] | None:
    r = _run(conn, _sql(conn, ("get",), _SELECT_JOBS + " WHERE id = ?"), (job_id,)).fetchone()
    return _decode(r) if r else None


def get_many(conn: Connection, account: str, region: str, ids: Sequence[str]) -> list[dict[str, Any]]:
    ids = list(dict.fromkeys(ids))
    if not ids:
        return []
    # Look up by id alone (the unique index) and check the owner here: with account/region in the WHERE
    # clause SQLite may pick the (account, region, seq) index and scan every job of the account.
    sql = _sql(conn, ("get_many", len(ids)), _SELECT_JOBS + f" WHERE id IN ({', '.join('?' * len(ids))})")
    by_id = {}
    for r in _run(conn, sql, tuple(ids)).fetchall():
        row = _decode(r)
        if row["account"] == account and row["region"] == region:
            by_id[row["id"]] = row
    return [by_id[i] for i in ids if i in by_id]


_INSERT_COLS = [c.name for c in jobs.columns if c.name not in ("seq", "detail")] + ["detail"]
_JSON_COLS = {"spec", "runtime"}
_INSERT_DEFAULTS = {"is_cancelled": False, "is_terminated": False, "attempt": 0, "vcpus": 1.0, "memory": 0,
                    "gpus": 0, "pending_deps": 0}
_insert_sql: dict[str, str] = {}


def insert_jobs(conn: Connection, rows: list[dict[str, Any]], event_at: int | None = None) -> None:
    """Insert jobs with one driver-level statement: SubmitJob and array fan-out are hot paths, and this skips
    SQLAlchemy's per-call statement handling. A column a row leaves out gets its default, or NULL. With
    `event_at`, each job's state change event is recorded too (from the same rendered record)."""
    if not rows:
        return
    style = conn.dialect.paramstyle
    sql = _insert_sql.get(style)
    if sql is None:
        mark = "?" if style == "qmark" else "%s"
        sql = f"INSERT INTO jobs ({', '.join(_INSERT_COLS)}) VALUES ({', '.join([mark] * len(_INSERT_COLS))})"
        _insert_sql[style] = sql
    details = [rendered(r) for r in rows]
    params = [
        (*(orjson.dumps(r[c]).decode() if c in _JSON_COLS else r.get(c, _INSERT_DEFAULTS.get(c))
           for c in _INSERT_COLS[:-1]), detail)
        for r, detail in zip(rows, details, strict=True)
    ]
    _run(conn, sql, params, many=True)
    if event_at is not None:
        _record(conn, zip(rows, details, strict=True), event_at)


def insert_deps(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(job_deps), rows)


_INSERT_EVENT = "INSERT INTO events (account, region, job_id, time, detail) VALUES (?, ?, ?, ?, ?)"


def unfinished_array_parents(conn: Connection) -> list[dict[str, Any]]:
    """Array parents that may have children to create or to release, oldest first: the SUBMITTED ones (their
    children are being created; SUBMITTED jobs are few) and the PENDING ones whose dependencies are decided.
    The PENDING ones come from the partial index `ix_jobs_pending_parents` (the constants are written out so
    that SQLite can match the index's WHERE), so this does not scan the PENDING children of arrays."""
    # SQLite's planner, without statistics, prefers ix_jobs_status (every PENDING job): name the index.
    hint = " INDEXED BY ix_jobs_pending_parents" if conn.dialect.name == "sqlite" else ""
    pending = _sql(conn, ("pending_parents",), _SELECT_JOBS + hint + " WHERE status = 'PENDING' AND parent_id IS NULL "
                   "AND array_size IS NOT NULL AND pending_deps = 0 ORDER BY seq")
    submitted = _sql(conn, ("submitted_parents",), _SELECT_JOBS + " WHERE status = 'SUBMITTED' "
                     "AND parent_id IS NULL AND array_size IS NOT NULL ORDER BY seq")
    rows = [_decode(r) for sql in (submitted, pending) for r in _run(conn, sql).fetchall()]
    return sorted(rows, key=lambda r: r["seq"])


def submitted_jobs(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """SUBMITTED jobs other than array parents (those leave SUBMITTED when their children exist), oldest first,
    to move on in the caller's transaction. On PostgreSQL they are locked, and a job another server holds (a
    CancelJob, the release of its dependency, in progress) is skipped rather than waited for: the next pass
    takes it (that server wakes the scheduler, or the heartbeat does), and its write is never overwritten."""
    lock = "" if conn.dialect.name == "sqlite" else " FOR UPDATE SKIP LOCKED"
    sql = _sql(conn, ("submitted_jobs",), _SELECT_JOBS + " WHERE status = 'SUBMITTED' AND array_size IS NULL "
               "ORDER BY seq LIMIT ?" + lock)
    return [_decode(r) for r in _run(conn, sql, (limit,)).fetchall()]


def _record(conn: Connection, rows: Iterable[tuple[dict[str, Any], str]], at: int) -> None:
    pairs = list(rows)
    batch = [(r["account"], r["region"], r["id"], at, detail) for r, detail in pairs]
    if batch:
        _run(conn, _sql(conn, ("event",), _INSERT_EVENT), batch, many=True)
        log_state_changes(r for r, _ in pairs)  # one line per state change on the server's terminal


def save(conn: Connection, row: dict[str, Any], changes: dict[str, Any], at: int, event: bool = True) -> dict:
    """Apply column changes to a job (in the caller's transaction); log an event when the status changed."""
    save_many(conn, [(row, changes)], at, events=event)
    return row


def with_status(conn: Connection, statuses: Sequence[str], limit: int | None = None) -> list[dict[str, Any]]:
    marks = ", ".join("?" * len(statuses))
    text = _SELECT_JOBS + f" WHERE status IN ({marks}) ORDER BY seq" + (" LIMIT ?" if limit else "")
    params = (*statuses, limit) if limit else tuple(statuses)
    return [_decode(r) for r in _run(conn, _sql(conn, ("with_status", len(statuses), bool(limit)), text),
                                     params).fetchall()]


def dependents(conn: Connection, job_id: str) -> list[dict[str, Any]]:
    """Jobs that wait on job_id, with the dependency type."""
    return [_row(r) for r in conn.execute(_dependents, {"b_dep": job_id}).all()]


def waited_on(conn: Connection, ids: Sequence[str]) -> set[str]:
    """Which of these jobs some other job depends on."""
    rows = conn.execute(select(job_deps.c.depends_on).distinct().where(job_deps.c.depends_on.in_(list(ids)))).all()
    return {r.depends_on for r in rows}


def fail_cancelled_runnable(conn: Connection, ids: Sequence[str], now: int) -> list[dict[str, Any]]:
    """FAILED, with their cancel reason, for those of these jobs that are still RUNNABLE and cancelled; returns
    them as they are now (their events are recorded)."""
    cond = and_(jobs.c.id.in_(list(ids)), jobs.c.status == "RUNNABLE", jobs.c.is_cancelled.is_(True))
    # Locked in id order, as every batch locks jobs; failed in queue order.
    rows = [_row(r) for r in conn.execute(select(jobs).where(cond).order_by(jobs.c.id).with_for_update()).all()]
    rows.sort(key=lambda r: r["seq"])
    save_many(conn, [(r, {"status": "FAILED", "stopped_at": now,
                          "status_reason": r["cancel_reason"] or r["status_reason"] or "Cancelled"}) for r in rows], now)
    return rows


def waits_on_missing_children(conn: Connection, parent_id: str) -> list[str]:
    """Ids `<parent_id>:<i>` that some job waits on (N_TO_N) but that were never created."""
    rows = conn.execute(
        select(job_deps.c.depends_on).distinct()
        .where(job_deps.c.depends_on.startswith(f"{parent_id}:", autoescape=True),
               job_deps.c.depends_on.notin_(select(jobs.c.id).where(jobs.c.parent_id == parent_id)))
    ).all()
    return [r.depends_on for r in rows]


def children(conn: Connection, parent_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(jobs).where(jobs.c.parent_id == parent_id).order_by(jobs.c.array_index)).all()
    return [_row(r) for r in rows]


def children_to_fail_on_cancel(conn: Connection, parent_id: str) -> list[dict[str, Any]]:
    """Children a cancel fails at once: SUBMITTED, or PENDING with nothing to wait for."""
    rows = conn.execute(
        select(jobs).where(
            jobs.c.parent_id == parent_id, jobs.c.is_cancelled.is_(False),
            or_(jobs.c.status == "SUBMITTED", and_(jobs.c.status == "PENDING", jobs.c.pending_deps == 0)),
        ).order_by(jobs.c.id).with_for_update()  # the cancel writes them (locked on PostgreSQL, in id order)
    ).all()
    return [_row(r) for r in rows]


def mark_children_cancelled(conn: Connection, parent_id: str, reason: str) -> int:
    """CancelJob on an array parent: mark its waiting (PENDING, RUNNABLE) children; they fail by their rules."""
    forget_records(conn)  # which children change is known only to the statement: forget every cached record
    result = conn.execute(
        update(jobs)
        .where(jobs.c.parent_id == parent_id, jobs.c.status.in_(["PENDING", "RUNNABLE"]),
               jobs.c.is_cancelled.is_(False))
        # Their stored records are cleared (rendered again when read, rewritten by their next change).
        .values(is_cancelled=True, status_reason=reason, cancel_reason=reason, detail=None)
    )
    return result.rowcount


def child_status_counts(conn: Connection, parent_id: str) -> dict[str, int]:
    return {status: n for status, n in conn.execute(_child_counts, {"b_parent": parent_id}).all()}


# --- ListJobs ---------------------------------------------------------------------------------------------

def list_jobs(
    conn: Connection,
    account: str,
    region: str,
    *,
    queue_arn: str | None = None,
    parent_id: str | None = None,
    statuses: Sequence[str] | None = None,
    name_prefix: str | None = None,
    name_exact: str | None = None,
    jd_arn: str | None = None,
    jd_name: str | None = None,
    jd_name_prefix: str | None = None,
    created_before: int | None = None,
    created_after: int | None = None,
    share_id: str | None = None,
    before_seq: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Newest first; `before_seq` continues a page. Array children only when listing by parent.

    Names match case-insensitively; a `*_prefix` is matched literally (`%` and `_` in it are not wildcards).
    """
    cond = [jobs.c.account == account, jobs.c.region == region]
    if queue_arn is not None:
        cond += [jobs.c.queue_arn == queue_arn, jobs.c.parent_id.is_(None)]
    if parent_id is not None:
        cond.append(jobs.c.parent_id == parent_id)
    if statuses:
        cond.append(jobs.c.status.in_(list(statuses)))
    if name_prefix is not None:
        cond.append(func.lower(jobs.c.name).startswith(name_prefix.lower(), autoescape=True))
    if name_exact is not None:
        cond.append(func.lower(jobs.c.name) == name_exact.lower())
    if jd_arn is not None:
        cond.append(jobs.c.jd_arn == jd_arn)
    if jd_name is not None:  # any revision: "...:job-definition/<name>:<revision>"
        cond.append(jobs.c.jd_arn.contains(f":job-definition/{jd_name}:", autoescape=True))
    if jd_name_prefix is not None:
        cond.append(jobs.c.jd_arn.contains(f":job-definition/{jd_name_prefix}", autoescape=True))
    if created_before is not None:
        cond.append(jobs.c.created_at < created_before)
    if created_after is not None:
        cond.append(jobs.c.created_at > created_after)
    if share_id is not None:
        cond.append(jobs.c.share_id == share_id)
    if before_seq is not None:
        cond.append(jobs.c.seq < before_seq)
    # A summary needs no `spec` (the largest document): leave it out of the page.
    rows = conn.execute(select(*_SUMMARY_COLS).where(and_(*cond)).order_by(jobs.c.seq.desc()).limit(limit)).all()
    return [_row(r) for r in rows]


_SUMMARY_COLS = [c for c in jobs.columns if c.name != "spec"]


# --- the activity log -------------------------------------------------------------------------------------

def read_events(
    conn: Connection, account: str, region: str, after: int, limit: int, job_id: str | None = None
) -> list[dict[str, Any]]:
    cond = [events.c.account == account, events.c.region == region, events.c.seq > after]
    if job_id is not None:
        cond.append(or_(events.c.job_id == job_id))
    rows = conn.execute(select(events).where(and_(*cond)).order_by(events.c.seq).limit(limit)).all()
    return [_row(r) for r in rows]


def unfinished_in_queue(conn: Connection, queue_arn: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(jobs).where(jobs.c.queue_arn == queue_arn, jobs.c.status.notin_(["SUCCEEDED", "FAILED"]))
        .order_by(jobs.c.seq)
    ).all()
    return [_row(r) for r in rows]


_heads = (
    select(jobs.c.seq, jobs.c.id, jobs.c.status, jobs.c.is_cancelled, jobs.c.cancel_reason, jobs.c.status_reason,
           jobs.c.vcpus, jobs.c.memory, jobs.c.gpus, jobs.c.runnable_at)
    .where(jobs.c.queue_arn == bindparam("b_queue"), jobs.c.status == "RUNNABLE", jobs.c.seq > bindparam("b_after"))
    .order_by(jobs.c.seq)
    .limit(bindparam("b_limit"))
)


def runnable_heads(conn: Connection, queue_arn: str, after_seq: int, limit: int) -> list[dict[str, Any]]:
    """The first RUNNABLE jobs of a queue in dispatch order, without their documents (cheap to scan)."""
    rows = conn.execute(_heads, {"b_queue": queue_arn, "b_after": after_seq, "b_limit": limit}).all()
    return [dict(r._mapping) for r in rows]


def get_for_update(conn: Connection, job_id: str) -> dict[str, Any] | None:
    """Read a job inside a write transaction, locking its row on PostgreSQL (other servers wait for us).

    SQLite has one writer at a time, so the lock is implicit there."""
    if conn.dialect.name == "sqlite":
        return get(conn, job_id)
    r = _run(conn, _sql(conn, ("get_locked",), _SELECT_JOBS + " WHERE id = ? FOR UPDATE"), (job_id,)).fetchone()
    return _decode(r) if r else None


def get_many_for_update(conn: Connection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`get_for_update` for several jobs in one statement (locked in id order, as every batch locks them, so
    two servers' batches cannot deadlock); returns them by id."""
    ids = sorted(set(ids))
    if not ids:
        return {}
    lock = "" if conn.dialect.name == "sqlite" else " ORDER BY id FOR UPDATE"
    found: dict[str, dict[str, Any]] = {}
    for chunk in range(0, len(ids), 500):
        part = ids[chunk:chunk + 500]
        sql = _sql(conn, ("get_many_locked", len(part)),
                   _SELECT_JOBS + f" WHERE id IN ({', '.join('?' * len(part))})" + lock)
        for r in _run(conn, sql, tuple(part)).fetchall():
            row = _decode(r)
            found[row["id"]] = row
    return found


def lock_dependencies(conn: Connection, ids: Sequence[str]) -> tuple[int, bool]:
    """SubmitJob on PostgreSQL, in its write transaction: lock the jobs the new job waits on, then count how
    many are unfinished and whether one failed. A dependency that ends on another server at the same moment
    then either ended first (counted here) or ends after this commit and so sees, and releases, the new job."""
    rows = get_many_for_update(conn, ids).values()
    return sum(1 for r in rows if r["status"] != "SUCCEEDED"), any(r["status"] == "FAILED" for r in rows)


def save_many(
    conn: Connection, saves: Sequence[tuple[dict[str, Any], dict[str, Any]]], at: int, events: bool = True
) -> None:
    """Apply column changes to several jobs (in the caller's transaction): one statement per set of changed
    columns, one for the events of those whose status changed. Each job's stored DescribeJobs record is
    rewritten in the same statement, so rows must be full ones (not the scheduler's light head rows)."""
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    events_: list[tuple[dict[str, Any], str]] = []
    for row, changes in saves:
        if "spec" not in row:
            raise ValueError(f"saving job {row.get('id')} needs its full row, not a light one (its record is rewritten)")
        if not changes:
            continue
        old_status = row["status"]
        row.update(changes)
        detail = rendered(row)
        cols = tuple(changes)
        groups.setdefault(cols, []).append((*(_encode(c, changes[c]) for c in cols), detail, row["id"]))
        if events and row["status"] != old_status:
            events_.append((row, detail))
    forget_records(conn, [row["id"] for row, _ in saves])
    for cols, params in groups.items():
        sql = _sql(conn, ("save", cols),
                   f"UPDATE jobs SET {', '.join(f'{c} = ?' for c in cols)}, detail = ? WHERE id = ?")
        _run(conn, sql, params, many=True)
    _record(conn, events_, at)


def usage_by_compute_environment(conn: Connection) -> dict[str, tuple[float, int, int]]:
    """vCPUs, memory and GPUs held by STARTING/RUNNING jobs, per compute environment (all servers)."""
    rows = conn.execute(
        select(jobs.c.ce_arn, func.sum(jobs.c.vcpus), func.sum(jobs.c.memory), func.sum(jobs.c.gpus))
        .where(jobs.c.status.in_(["STARTING", "RUNNING"]))
        .group_by(jobs.c.ce_arn)
    ).all()
    return {r[0]: (float(r[1] or 0), int(r[2] or 0), int(r[3] or 0)) for r in rows if r[0]}


def active_owned_by(conn: Connection, owners: Sequence[str]) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(jobs).where(jobs.c.owner.in_(list(owners)), jobs.c.status.in_(["STARTING", "RUNNING"]))
    ).all()
    return [_row(r) for r in rows]


def claimed_by(conn: Connection, owner: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(jobs).where(jobs.c.owner == owner, jobs.c.status == "STARTING")).all()
    return [_row(r) for r in rows]


def terminating_owned_by(conn: Connection, owner: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(jobs).where(
        jobs.c.owner == owner, jobs.c.status.in_(["STARTING", "RUNNING"]), jobs.c.is_terminated.is_(True))).all()
    return [_row(r) for r in rows]
