"""Which log streams a caller has, and where their files are: the database side of the Logs handlers.

A stream is one attempt of one of the caller's jobs (account and region of the request). Rows are read on the
event loop like every database access; the files are only named here (`Roots`) and touched on the file pool
(`off_loop`), never on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import and_, collate, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from batchd.api.errors import ApiError
from batchd.api.registry import RequestContext
from batchd.domain import logstreams
from batchd.store.logfiles import AttemptLog, LogFile
from batchd.store.schema import jobs

# Bounded work per call: job rows looked at by one DescribeLogStreams page.
DESCRIBE_SCAN_ROWS = 1_000
TERMINAL = ("SUCCEEDED", "FAILED")

# File work of the Logs handlers. Bounded: under a flood of log reads, the rest of the API keeps its loop.
_FILE_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="batchd-logs")
_T = TypeVar("_T")


async def off_loop(fn: Callable[..., _T], *args: Any) -> _T:
    return await asyncio.get_running_loop().run_in_executor(_FILE_POOL, functools.partial(fn, *args))


def invalid(message: str) -> ApiError:
    return ApiError(message, code="InvalidParameterException", status=400)


def not_found(message: str) -> ApiError:
    return ApiError(message, code="ResourceNotFoundException", status=400)


@dataclass
class Stream:
    name: str
    job_id: str
    attempt: int
    account: str
    ended: bool  # known to have ended from the job's row; the `exit_code` file may say so too
    created: int


@dataclass(frozen=True)
class Roots:
    """Where attempts' output and working directories are (`service.Service`)."""

    output: Path
    jobs: Path
    data_dir: Path  # attempts of older versions: `<data dir>/jobs/<job>/<attempt>/output.log`

    def workdir(self, s: Stream) -> Path:
        return logstreams.attempt_dir(self.jobs, s.account, s.job_id, s.attempt)

    def exists(self, s: Stream) -> bool:
        return os.path.lexists(logstreams.output_path(self.output, s.job_id, s.attempt)) or os.path.lexists(
            logstreams.legacy_attempt_dir(self.data_dir, s.job_id, s.attempt)
        )

    def open(self, s: Stream) -> AttemptLog:
        """The stream's two files (not opened yet: enter the AttemptLog). On the file pool only."""
        legacy = logstreams.legacy_attempt_dir(self.data_dir, s.job_id, s.attempt)
        files = [[logstreams.output_path(self.output, s.job_id, s.attempt, src),
                  logstreams.index_path(self.output, s.job_id, s.attempt, src)] for src in logstreams.SOURCES]
        workdir = self.workdir(s)
        if not os.path.lexists(files[0][0]) and os.path.lexists(legacy / logstreams.LEGACY_OUTPUT):
            files[0][0], workdir = legacy / logstreams.LEGACY_OUTPUT, legacy  # stdout and stderr in one file
        ended = s.ended or os.path.lexists(workdir / "exit_code")
        return AttemptLog([LogFile(path, ended, index_path=idx, source=n) for n, (path, idx) in enumerate(files)])

    def mtime_ms(self, s: Stream) -> int:
        best = 0
        for src in logstreams.SOURCES:
            try:
                best = max(best, os.lstat(logstreams.output_path(self.output, s.job_id, s.attempt, src))
                           .st_mtime_ns // 1_000_000)
            except OSError:
                continue
        return best


def roots_of(ctx: RequestContext) -> Roots:
    svc = ctx.service
    return Roots(Path(svc.output_root), Path(svc.jobs_root), Path(svc.data_dir))


def _jd_name(jd_arn: str) -> str:
    # arn:aws:batch:<region>:<account>:job-definition/<name>:<revision>
    return jd_arn.split("job-definition/", 1)[-1].rsplit(":", 1)[0]


def _recorded_streams(runtime: Any) -> list[tuple[str, bool, int | None]]:
    """(stream name, attempt ended?, attempt startedAt) recorded in a job's runtime document."""
    out: list[tuple[str, bool, int | None]] = []
    if not isinstance(runtime, dict):
        return out
    attempts = runtime.get("attempts")
    for attempt in attempts if isinstance(attempts, list) else []:
        container = attempt.get("container") if isinstance(attempt, dict) else None
        name = container.get("logStreamName") if isinstance(container, dict) else None
        if isinstance(name, str):
            started = attempt.get("startedAt")
            out.append((name, True, started if isinstance(started, int) else None))
    container = runtime.get("container")
    name = container.get("logStreamName") if isinstance(container, dict) else None
    if isinstance(name, str) and all(name != n for n, _, _ in out):
        out.append((name, False, None))
    return out


def streams_of_row(ctx: RequestContext, row: Any) -> list[Stream]:
    out = []
    for name, attempt_ended, started in _recorded_streams(row.runtime):
        parsed = logstreams.parse_stream_name(name)
        if parsed is None or parsed[1] != row.id:
            continue
        ended = attempt_ended or row.status in TERMINAL
        created = started or (row.started_at if not attempt_ended else None) or row.created_at
        out.append(Stream(name, row.id, parsed[2], row.account, ended, int(created)))
    out.sort(key=lambda s: s.name)
    return out


COLUMNS = (jobs.c.id, jobs.c.account, jobs.c.jd_arn, jobs.c.status, jobs.c.created_at, jobs.c.started_at,
            jobs.c.runtime)


async def resolve(ctx: RequestContext, name: str) -> Stream:
    """The caller's stream called `name`, or ResourceNotFoundException."""
    parsed = logstreams.parse_stream_name(name)
    missing = not_found("The specified log stream does not exist.")
    if parsed is None:
        raise missing
    jd_name, job_id, attempt = parsed
    with ctx.service.db.tx() as c:
        row = c.execute(
            select(*COLUMNS).where(
                jobs.c.id == job_id, jobs.c.account == ctx.account, jobs.c.region == ctx.region
            )
        ).first()
    if row is None or _jd_name(row.jd_arn)[:200] != jd_name:
        raise missing
    for stream in streams_of_row(ctx, row):
        if stream.name == name:
            return stream
    stream = Stream(name, job_id, attempt, row.account, row.status in TERMINAL,
                     int(row.started_at or row.created_at))
    if not await off_loop(roots_of(ctx).exists, stream):  # not recorded (yet) but started: its output exists
        raise missing
    return stream


def _collate(ctx: RequestContext, expr: ColumnElement) -> ColumnElement:
    # Stream names sort by code point, as in CloudWatch; PostgreSQL's default collation would not.
    return expr if ctx.service.db.is_sqlite else collate(expr.self_group(), "C")


def _sort_keys(ctx: RequestContext) -> tuple[ColumnElement, ColumnElement]:
    """SQL expressions that order job rows as their stream names order (`<jd>/default/<id>_<attempt>`)."""
    jd = func.rtrim(func.rtrim(jobs.c.jd_arn, "0123456789"), ":") + "/"  # ".../job-definition/<name>/"
    job = func.replace(jobs.c.id, ":", "_") + "_"
    return _collate(ctx, jd), _collate(ctx, job)


def _arn_prefix(ctx: RequestContext) -> str:
    return f"arn:{ctx.partition}:batch:{ctx.region}:{ctx.account}:job-definition/"


def _prefix_filter(ctx: RequestContext, prefix: str) -> list[ColumnElement]:
    if "/" not in prefix:
        return [jobs.c.jd_arn.startswith(_arn_prefix(ctx) + prefix, autoescape=True)]
    jd_name, rest = prefix.split("/", 1)
    if len(jd_name) > 200:  # no stream's job definition part is that long (`logstreams.stream_name`)
        return [jobs.c.id.is_(None)]
    conds = [jobs.c.jd_arn.startswith(_arn_prefix(ctx) + jd_name + ":", autoescape=True)]
    if rest.startswith("default/") and len(rest) > len("default/"):
        conds.append(jobs.c.id.startswith(rest[len("default/") :][:36], autoescape=True))
    return conds


def list_by_name(
    ctx: RequestContext, prefix: str | None, descending: bool, cursor: list[Any] | None, want: int
) -> tuple[list[Stream], list[Any] | None]:
    """Up to `want` streams in name order, from `cursor`; the cursor to continue from if more may remain.

    A cursor is [jd sort key, job sort key, last stream name returned]: rows are read by keyset from the row of
    the last stream (inclusive: a job's attempts may span two pages) and streams up to that name are skipped.
    """
    jd_key, job_key = _sort_keys(ctx)
    conds: list[ColumnElement] = [jobs.c.account == ctx.account, jobs.c.region == ctx.region]
    if prefix:
        conds += _prefix_filter(ctx, prefix)
    order = (jd_key.desc(), job_key.desc()) if descending else (jd_key, job_key)
    found: list[Stream] = []
    scanned = 0
    batch = min(max(want * 2, 50), DESCRIBE_SCAN_ROWS)
    while True:
        where = list(conds)
        after = None
        if cursor is not None:
            k1, k2, after = cursor
            if descending:
                where.append(or_(jd_key < k1, and_(jd_key == k1, job_key <= k2)))
            else:
                where.append(or_(jd_key > k1, and_(jd_key == k1, job_key >= k2)))
        with ctx.service.db.tx() as c:
            rows = c.execute(
                select(*COLUMNS, jd_key.label("k1"), job_key.label("k2"))
                .where(*where)
                .order_by(*order)
                .limit(batch)
            ).all()
        for row in rows:
            streams = streams_of_row(ctx, row)
            for s in reversed(streams) if descending else streams:
                if prefix and not s.name.startswith(prefix):
                    continue
                if after is not None and (s.name >= after if descending else s.name <= after):
                    continue
                found.append(s)
                if len(found) == want:
                    return found, [row.k1, row.k2, s.name]
        scanned += len(rows)
        if len(rows) < batch:
            return found, None
        cursor = [rows[-1].k1, rows[-1].k2, found[-1].name if found else after]
        if scanned >= DESCRIBE_SCAN_ROWS:
            return found, cursor  # bounded work: what we have, and where to go on from


def valid_cursor(value: Any) -> list[Any] | None:
    if value is None:
        return None
    if (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, str) for v in value[:2])
        and (value[2] is None or isinstance(value[2], str))
    ):
        return value
    raise invalid("The specified nextToken is invalid.")
