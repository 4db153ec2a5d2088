"""The CloudWatch Logs read API for job output: GetLogEvents, DescribeLogStreams, FilterLogEvents.

One log group, `/aws/batch/job`. A stream is one attempt of one job (`logstreams.stream_name`); it exists for
the caller when the job is a row of the caller's account and region and the attempt is known (its stream name
is recorded in the job's runtime, or its attempt directory exists). Events are the lines of the attempt's
`output.log`; see `batchd.store.logfiles` for how lines become events and get their timestamps.

Tokens carry byte offsets: `f/<offset>/s` and `b/<offset>/s` for GetLogEvents (a forward token that finds no new
events comes back unchanged, which is how SDK paginators detect the end), opaque base64 for the others.
"""

from __future__ import annotations

import base64
import heapq
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import and_, collate, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from batchd.api.errors import ApiError
from batchd.api.registry import RequestContext, operation
from batchd.domain import logstreams
from batchd.store.logfiles import Event, LogFile
from batchd.store.schema import jobs

MAX_EVENTS = 10_000
MAX_RESPONSE_BYTES = 1_048_576  # CloudWatch: "as many log events as can fit in 1 MB"
EVENT_OVERHEAD = 26  # bytes counted per event on top of its message, as CloudWatch counts them
DESCRIBE_LIMIT = 50
# Bounded work per call: job rows looked at by DescribeLogStreams, streams and bytes searched by FilterLogEvents.
DESCRIBE_SCAN_ROWS = 1_000
LAST_EVENT_TIME_JOBS = 1_000
FILTER_MAX_STREAMS = 100
FILTER_SCAN_BYTES = 16 * 1_048_576
_TERMINAL = ("SUCCEEDED", "FAILED")


def _invalid(message: str) -> ApiError:
    return ApiError(message, code="InvalidParameterException", status=400)


def _not_found(message: str) -> ApiError:
    return ApiError(message, code="ResourceNotFoundException", status=400)


# -- request parsing -----------------------------------------------------------------------------------


def _log_group(ctx: RequestContext, params: dict[str, Any]) -> None:
    name, ident = params.get("logGroupName"), params.get("logGroupIdentifier")
    if name is not None and ident is not None:
        raise _invalid("LogGroup name and LogGroup ARN are mutually exclusive parameters.")
    if name is None and ident is None:
        raise _invalid("Either logGroupName or logGroupIdentifier must be specified.")
    value = name if name is not None else ident
    if not isinstance(value, str) or not value:
        raise _invalid("logGroupName must be a non-empty string")
    if ident is not None and value.startswith("arn:"):
        # arn:<partition>:logs:<region>:<account>:log-group:<name>[:*]
        parts = value.split(":", 6)
        if len(parts) < 7 or parts[2] != "logs" or parts[5] != "log-group":
            raise _not_found("The specified log group does not exist.")
        if parts[3] != ctx.region or parts[4] != ctx.account:
            raise _not_found("The specified log group does not exist.")
        value = parts[6].removesuffix(":*")
    if value != logstreams.LOG_GROUP:
        raise _not_found("The specified log group does not exist.")


def _int(
    params: dict[str, Any], key: str, default: int | None, low: int = 0, high: int | None = None
) -> int | None:
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"{key} must be an integer")
    if value < low or (high is not None and value > high):
        raise _invalid(
            f"1 validation error detected: Value '{value}' at '{key}' failed to satisfy constraint"
        )
    return value


def _bool(params: dict[str, Any], key: str, default: bool) -> bool:
    value = params.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _invalid(f"{key} must be a boolean")
    return value


def _str(params: dict[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _invalid(f"{key} must be a non-empty string")
    return value


def _pack(data: object) -> str:
    return base64.urlsafe_b64encode(zlib.compress(orjson.dumps(data))).decode()


def _unpack(token: str) -> Any:
    try:
        return orjson.loads(zlib.decompress(base64.urlsafe_b64decode(token.encode())))
    except (ValueError, zlib.error, orjson.JSONDecodeError):
        raise _invalid("The specified nextToken is invalid.") from None


# -- streams -------------------------------------------------------------------------------------------


@dataclass
class _Stream:
    name: str
    job_id: str
    attempt: int
    path: Path
    ended: bool
    created: int


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


def _jobs_root(ctx: RequestContext) -> Path:
    return Path(ctx.service.data_dir) / "jobs"


def _streams_of_row(ctx: RequestContext, row: Any) -> list[_Stream]:
    out = []
    for name, attempt_ended, started in _recorded_streams(row.runtime):
        parsed = logstreams.parse_stream_name(name)
        if parsed is None or parsed[1] != row.id:
            continue
        path = logstreams.output_path(_jobs_root(ctx), row.id, parsed[2])
        ended = attempt_ended or row.status in _TERMINAL or (path.parent / "exit_code").exists()
        created = started or (row.started_at if not attempt_ended else None) or row.created_at
        out.append(_Stream(name, row.id, parsed[2], path, ended, int(created)))
    out.sort(key=lambda s: s.name)
    return out


_COLUMNS = (jobs.c.id, jobs.c.jd_arn, jobs.c.status, jobs.c.created_at, jobs.c.started_at, jobs.c.runtime)


def _resolve(ctx: RequestContext, name: str) -> _Stream:
    """The caller's stream called `name`, or ResourceNotFoundException."""
    parsed = logstreams.parse_stream_name(name)
    missing = _not_found("The specified log stream does not exist.")
    if parsed is None:
        raise missing
    jd_name, job_id, attempt = parsed
    with ctx.service.db.tx() as c:
        row = c.execute(
            select(*_COLUMNS).where(
                jobs.c.id == job_id, jobs.c.account == ctx.account, jobs.c.region == ctx.region
            )
        ).first()
    if row is None or _jd_name(row.jd_arn)[:200] != jd_name:
        raise missing
    for stream in _streams_of_row(ctx, row):
        if stream.name == name:
            return stream
    path = logstreams.output_path(_jobs_root(ctx), job_id, attempt)
    if not path.parent.is_dir():  # not recorded (yet) but started: the executor made its directory
        raise missing
    ended = row.status in _TERMINAL or (path.parent / "exit_code").exists()
    return _Stream(name, job_id, attempt, path, ended, int(row.started_at or row.created_at))


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
    conds = [jobs.c.jd_arn.startswith(_arn_prefix(ctx) + jd_name + ":", autoescape=True)]
    if rest.startswith("default/") and len(rest) > len("default/"):
        conds.append(jobs.c.id.startswith(rest[len("default/") :][:36], autoescape=True))
    return conds


def _list_by_name(
    ctx: RequestContext, prefix: str | None, descending: bool, cursor: list[Any] | None, want: int
) -> tuple[list[_Stream], list[Any] | None]:
    """Up to `want` streams in name order, from `cursor`; the cursor to continue from if more may remain.

    A cursor is [jd sort key, job sort key, last stream name returned]: rows are read by keyset from the row of
    the last stream (inclusive: a job's attempts may span two pages) and streams up to that name are skipped.
    """
    jd_key, job_key = _sort_keys(ctx)
    conds: list[ColumnElement] = [jobs.c.account == ctx.account, jobs.c.region == ctx.region]
    if prefix:
        conds += _prefix_filter(ctx, prefix)
    order = (jd_key.desc(), job_key.desc()) if descending else (jd_key, job_key)
    found: list[_Stream] = []
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
                select(*_COLUMNS, jd_key.label("k1"), job_key.label("k2"))
                .where(*where)
                .order_by(*order)
                .limit(batch)
            ).all()
        for row in rows:
            streams = _streams_of_row(ctx, row)
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


def _valid_cursor(value: Any) -> list[Any] | None:
    if value is None:
        return None
    if (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, str) for v in value[:2])
        and (value[2] is None or isinstance(value[2], str))
    ):
        return value
    raise _invalid("The specified nextToken is invalid.")


# -- GetLogEvents --------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"^([fb])/(\d{1,20})(?:/s)?$")


def _offset_token(kind: str, offset: int) -> str:
    return f"{kind}/{offset:020d}/s"


def _fits(events: list[Event], budget: int = MAX_RESPONSE_BYTES) -> int:
    """How many of `events` (from the front) fit in one response."""
    used = 0
    for i, e in enumerate(events):
        used += len(e.message.encode()) + EVENT_OVERHEAD
        if used > budget:
            return i
    return len(events)


def _out(e: Event) -> dict[str, Any]:
    return {"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.timestamp}


@operation("logs:GetLogEvents")
async def get_log_events(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _log_group(ctx, params)
    name = _str(params, "logStreamName")
    if name is None:
        raise _invalid(
            "1 validation error detected: Value null at 'logStreamName' failed to satisfy constraint"
        )
    limit = _int(params, "limit", MAX_EVENTS, 1, MAX_EVENTS) or MAX_EVENTS
    start_time = _int(params, "startTime", None)
    end_time = _int(params, "endTime", None)
    from_head = _bool(params, "startFromHead", False)
    token = _str(params, "nextToken")
    direction, offset = ("f" if from_head else "b"), None
    if token is not None:
        m = _TOKEN_RE.match(token)
        if not m:
            raise _invalid("The specified nextToken is invalid.")
        direction, offset = m.group(1), int(m.group(2))
    stream = _resolve(ctx, name)

    with LogFile(stream.path, stream.ended) as lf:
        low = lf.offset_for_time(start_time) if start_time is not None else 0
        high = lf.offset_for_time(end_time) if end_time is not None else lf.visible_end
        high = max(low, min(high, lf.visible_end))
        if offset is not None:
            offset = lf.next_boundary(min(max(offset, low), high))
        if direction == "f":
            pos = low if offset is None else offset
            events: list[Event] = []
            for e in lf.forward(pos, high):
                events.append(e)
                if len(events) >= limit:
                    break
            events = events[: _fits(events)]
            forward = events[-1].next if events else pos
            backward = events[0].start if events else pos
        else:
            pos = high if offset is None else offset
            events = []
            for window in lf.backward(pos, low):
                events[:0] = window
                if len(events) >= limit or sum(len(e.message) for e in events) > MAX_RESPONSE_BYTES:
                    break
            events = events[-limit:]
            keep = _fits(list(reversed(events)))
            events = events[len(events) - keep :]
            forward = events[-1].next if events else pos
            backward = events[0].start if events else pos
    return {
        "events": [_out(e) for e in events],
        "nextForwardToken": _offset_token("f", forward),
        "nextBackwardToken": _offset_token("b", backward),
    }


# -- DescribeLogStreams --------------------------------------------------------------------------------


def _describe(ctx: RequestContext, stream: _Stream) -> dict[str, Any]:
    with LogFile(stream.path, stream.ended) as lf:
        out: dict[str, Any] = {
            "logStreamName": stream.name,
            "creationTime": stream.created,
            "arn": (
                f"arn:{ctx.partition}:logs:{ctx.region}:{ctx.account}:log-group:{logstreams.LOG_GROUP}"
                f":log-stream:{stream.name}"
            ),
            "storedBytes": lf.size,
        }
        if lf.first_stamp is not None:
            out["firstEventTimestamp"] = lf.first_stamp
            out["lastEventTimestamp"] = lf.last_stamp
            out["lastIngestionTime"] = lf.last_stamp
    return out


def _mtime_ms(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns // 1_000_000
    except OSError:
        return 0


@operation("logs:DescribeLogStreams")
async def describe_log_streams(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _log_group(ctx, params)
    prefix = _str(params, "logStreamNamePrefix")
    order_by = params.get("orderBy", "LogStreamName")
    if order_by not in ("LogStreamName", "LastEventTime"):
        raise _invalid(f"orderBy must be LogStreamName or LastEventTime, not {order_by!r}")
    if order_by == "LastEventTime" and prefix is not None:
        raise _invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
    descending = _bool(params, "descending", False)
    limit = _int(params, "limit", DESCRIBE_LIMIT, 1, DESCRIBE_LIMIT) or DESCRIBE_LIMIT
    token = _str(params, "nextToken")
    state = _unpack(token) if token else {}
    if not isinstance(state, dict) or state.get("o", order_by) != order_by:
        raise _invalid("The specified nextToken is invalid.")

    if order_by == "LogStreamName":
        if state and (state.get("p") != prefix or state.get("d") != descending):
            raise _invalid("The specified nextToken is invalid.")  # from a listing with other parameters
        cursor = _valid_cursor(state.get("c"))
        streams, cursor = _list_by_name(ctx, prefix, descending, cursor, limit)
        result: dict[str, Any] = {"logStreams": [_describe(ctx, s) for s in streams]}
        if cursor is not None:
            result["nextToken"] = _pack({"o": order_by, "p": prefix, "d": descending, "c": cursor})
        return result

    # LastEventTime: the streams of the most recent jobs, ordered by when their output last changed.
    skip = state.get("n", 0) if isinstance(state.get("n", 0), int) else 0
    with ctx.service.db.tx() as c:
        rows = c.execute(
            select(*_COLUMNS)
            .where(jobs.c.account == ctx.account, jobs.c.region == ctx.region)
            .order_by(jobs.c.seq.desc())
            .limit(LAST_EVENT_TIME_JOBS)
        ).all()
    candidates = [s for row in rows for s in _streams_of_row(ctx, row)]
    keyed = sorted(((_mtime_ms(s.path), s.name, s) for s in candidates), key=lambda t: (t[0], t[1]))
    if descending:
        keyed.reverse()
    page = keyed[skip : skip + limit]
    result = {"logStreams": [_describe(ctx, s) for _, _, s in page]}
    if skip + limit < len(keyed):
        result["nextToken"] = _pack({"o": order_by, "n": skip + limit})
    return result


# -- FilterLogEvents -----------------------------------------------------------------------------------


_UNSUPPORTED_PATTERN = (
    'batchd supports filter patterns made of plain terms, "quoted phrases" and -excluded terms; JSON, '
    "space-delimited, regular-expression and ?OR patterns are not supported"
)


def _terms(pattern: str) -> tuple[list[str], list[str]]:
    """(required terms, excluded terms) of a CloudWatch term pattern: words, "quoted phrases", -exclusions.

    Terms are matched case-sensitively anywhere in the message, as CloudWatch does.
    """
    text = pattern.strip()
    if text[:1] in ("{", "[", "%"):
        raise _invalid(_UNSUPPORTED_PATTERN)
    required: list[str] = []
    excluded: list[str] = []
    for m in re.finditer(r'(-?)(?:"((?:[^"\\]|\\.)*)"|(\S+))', text):
        quoted, bare = m.group(2), m.group(3)
        if bare is not None and (bare.startswith("?") or '"' in bare):
            raise _invalid(_UNSUPPORTED_PATTERN)
        term = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        if term:
            (excluded if m.group(1) else required).append(term)
    return required, excluded


def _filter_streams(ctx: RequestContext, params: dict[str, Any]) -> list[_Stream]:
    names = params.get("logStreamNames")
    prefix = _str(params, "logStreamNamePrefix")
    if names is not None and prefix is not None:
        raise _invalid("logStreamNames and logStreamNamePrefix are mutually exclusive parameters.")
    if names is not None:
        if (
            not isinstance(names, list)
            or not names
            or len(names) > 100
            or not all(isinstance(n, str) for n in names)
        ):
            raise _invalid("logStreamNames must be a list of 1 to 100 stream names")
        streams = []
        for name in dict.fromkeys(names):
            try:
                streams.append(_resolve(ctx, name))
            except ApiError:
                continue  # like CloudWatch: names that match no stream simply contribute nothing
        return streams
    if prefix is not None:
        return _list_by_name(ctx, prefix, False, None, FILTER_MAX_STREAMS)[0]
    # No selection: the streams of the most recent jobs.
    with ctx.service.db.tx() as c:
        rows = c.execute(
            select(*_COLUMNS)
            .where(jobs.c.account == ctx.account, jobs.c.region == ctx.region)
            .order_by(jobs.c.seq.desc())
            .limit(FILTER_MAX_STREAMS)
        ).all()
    streams = [s for row in rows for s in _streams_of_row(ctx, row)]
    return sorted(streams, key=lambda s: s.name)[:FILTER_MAX_STREAMS]


@operation("logs:FilterLogEvents")
async def filter_log_events(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _log_group(ctx, params)
    limit = _int(params, "limit", MAX_EVENTS, 1, MAX_EVENTS) or MAX_EVENTS
    start_time = _int(params, "startTime", None)
    end_time = _int(params, "endTime", None)
    pattern = params.get("filterPattern") or ""
    if not isinstance(pattern, str) or len(pattern) > 1024:
        raise _invalid("filterPattern must be a string of at most 1024 characters")
    required, excluded = _terms(pattern)
    token = _str(params, "nextToken")
    positions: dict[str, int] = {}
    if token:
        state = _unpack(token)
        if not isinstance(state, dict) or not isinstance(state.get("p"), dict):
            raise _invalid("The specified nextToken is invalid.")
        positions = {k: v for k, v in state["p"].items() if isinstance(k, str) and isinstance(v, int)}
        streams = []
        for name in positions:
            try:
                streams.append(_resolve(ctx, name))
            except ApiError:
                continue
    else:
        streams = _filter_streams(ctx, params)

    files = [LogFile(s.path, s.ended) for s in streams]
    heads: list[tuple[int, int, int, Event, Iterator[Event]]] = []
    highs: dict[str, int] = {}
    try:
        for i, (s, lf) in enumerate(zip(streams, files, strict=True)):
            lf.__enter__()
            low = lf.offset_for_time(start_time) if start_time is not None else 0
            high = lf.offset_for_time(end_time) if end_time is not None else lf.visible_end
            high = max(low, min(high, lf.visible_end))
            pos = lf.next_boundary(min(max(positions.get(s.name, low), low), high))
            positions[s.name], highs[s.name] = pos, high
            it = lf.forward(pos, high)
            first = next(it, None)
            if first is not None:
                heads.append((first.timestamp, i, first.start, first, it))
        heapq.heapify(heads)
        events: list[dict[str, Any]] = []
        scanned = used = 0
        while heads and len(events) < limit and scanned < FILTER_SCAN_BYTES:
            ts, i, _, e, it = heads[0]
            size = len(e.message.encode()) + EVENT_OVERHEAD
            matched = all(t in e.message for t in required) and not any(t in e.message for t in excluded)
            if matched and used + size > MAX_RESPONSE_BYTES:
                break
            name = streams[i].name
            positions[name] = e.next
            scanned += e.next - e.start
            if matched:
                used += size
                events.append(
                    {
                        "logStreamName": name,
                        "timestamp": e.timestamp,
                        "message": e.message,
                        "ingestionTime": e.timestamp,
                        "eventId": f"{zlib.crc32(name.encode()):010d}{e.start:020d}",
                    }
                )
            nxt = next(it, None)
            if nxt is None:
                heapq.heappop(heads)
            else:
                heapq.heapreplace(heads, (nxt.timestamp, i, nxt.start, nxt, it))
    finally:
        for lf in files:
            lf.__exit__(None, None, None)
    result: dict[str, Any] = {
        "events": events,
        "searchedLogStreams": [
            {"logStreamName": s.name, "searchedCompletely": positions[s.name] >= highs[s.name]}
            for s in streams
        ],
    }
    if heads:
        result["nextToken"] = _pack({"p": {s.name: positions[s.name] for s in streams}})
    return result
