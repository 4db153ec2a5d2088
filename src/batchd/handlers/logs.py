"""The CloudWatch Logs read API for job output: GetLogEvents, DescribeLogStreams, FilterLogEvents.

One log group, `/aws/batch/job`. A stream is one attempt of one job (`logstreams.stream_name`); it exists for
the caller when the job is a row of the caller's account and region and the attempt is known (its stream name
is recorded in the job's runtime, or its stdout file exists). Events are the lines of the attempt's
`<attempt>.stdout.log` and `<attempt>.stderr.log`, merged by time; see `batchd.store.logfiles` for how lines
become events and get their timestamps.

The database is read on the event loop, as everywhere; every file access (the output files, their sidecars,
the `exit_code` a job could replace) runs on a small thread pool, so a slow disk or a hostile job can never
stall the loop, and the files are opened so that no FIFO is waited on and no symlink followed.

Tokens carry byte offsets, one per file: `f/<stdout offset>-<stderr offset>/s` and `b/...` for GetLogEvents (a
forward token that finds no new events comes back unchanged, which is how SDK paginators detect the end),
opaque base64 for the others.
"""

from __future__ import annotations

import base64
import heapq
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import orjson
from sqlalchemy import select

from batchd.api.errors import ApiError
from batchd.api.registry import RequestContext, operation
from batchd.domain import logstreams
from batchd.handlers.log_streams import (
    COLUMNS,
    Roots,
    Stream,
    invalid,
    list_by_name,
    not_found,
    off_loop,
    resolve,
    roots_of,
    streams_of_row,
    valid_cursor,
)
from batchd.store.logfiles import AttemptLog, Event, Position
from batchd.store.schema import jobs

MAX_EVENTS = 10_000
MAX_RESPONSE_BYTES = 1_048_576  # CloudWatch: "as many log events as can fit in 1 MB"
EVENT_OVERHEAD = 26  # bytes counted per event on top of its message, as CloudWatch counts them
DESCRIBE_LIMIT = 50
# Bounded work per call: streams and bytes searched by FilterLogEvents (job rows per page: log_streams).
LAST_EVENT_TIME_JOBS = 1_000
FILTER_MAX_STREAMS = 100
FILTER_SCAN_BYTES = 16 * 1_048_576
MAX_NAME = logstreams.MAX_STREAM_NAME  # logStreamName, logStreamNamePrefix, logGroupName (CloudWatch: 512)
MAX_GROUP_IDENTIFIER = 2048
MAX_TOKEN = 65_536  # our own tokens are far shorter; a token is never inflated past _MAX_TOKEN_JSON
_MAX_TOKEN_JSON = 1_048_576
MAX_TIME = 2**63 - 1  # a CloudWatch `long`

# -- request parsing -----------------------------------------------------------------------------------


def _log_group(ctx: RequestContext, params: dict[str, Any]) -> None:
    name, ident = params.get("logGroupName"), params.get("logGroupIdentifier")
    if name is not None and ident is not None:
        raise invalid("LogGroup name and LogGroup ARN are mutually exclusive parameters.")
    if name is None and ident is None:
        raise invalid("Either logGroupName or logGroupIdentifier must be specified.")
    value = name if name is not None else ident
    if not isinstance(value, str) or not value:
        raise invalid("logGroupName must be a non-empty string")
    key, most = ("logGroupName", MAX_NAME) if name is not None else ("logGroupIdentifier", MAX_GROUP_IDENTIFIER)
    if len(value) > most:
        raise _too_long(key, most)
    if ident is not None and value.startswith("arn:"):
        # arn:<partition>:logs:<region>:<account>:log-group:<name>[:*]
        parts = value.split(":", 6)
        if len(parts) < 7 or parts[2] != "logs" or parts[5] != "log-group":
            raise not_found("The specified log group does not exist.")
        if parts[3] != ctx.region or parts[4] != ctx.account:
            raise not_found("The specified log group does not exist.")
        value = parts[6].removesuffix(":*")
    if value != logstreams.LOG_GROUP:
        raise not_found("The specified log group does not exist.")


def _too_long(key: str, most: int) -> ApiError:
    return invalid(
        f"1 validation error detected: Value at '{key}' failed to satisfy constraint: "
        f"Member must have length less than or equal to {most}"
    )


def _int(
    params: dict[str, Any], key: str, default: int | None, low: int = 0, high: int | None = MAX_TIME
) -> int | None:
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{key} must be an integer")
    if value < low or (high is not None and value > high):
        shown = value if abs(value) < 10**30 else f"{str(value)[:20]}..."
        raise invalid(
            f"1 validation error detected: Value '{shown}' at '{key}' failed to satisfy constraint"
        )
    return value


def _bool(params: dict[str, Any], key: str, default: bool) -> bool:
    value = params.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"{key} must be a boolean")
    return value


def _str(params: dict[str, Any], key: str, most: int = MAX_NAME) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise invalid(f"{key} must be a non-empty string")
    if len(value) > most:
        raise _too_long(key, most)
    return value


def _pack(data: object) -> str:
    return base64.urlsafe_b64encode(zlib.compress(orjson.dumps(data))).decode()


def _unpack(token: str) -> Any:
    try:
        inflater = zlib.decompressobj()
        data = inflater.decompress(base64.urlsafe_b64decode(token.encode()), _MAX_TOKEN_JSON)
        if inflater.unconsumed_tail:
            raise ValueError("token too large")
        return orjson.loads(data)
    except (ValueError, zlib.error, orjson.JSONDecodeError):
        raise invalid("The specified nextToken is invalid.") from None


# -- GetLogEvents --------------------------------------------------------------------------------------

# Two offsets (stdout, stderr); a token with one offset (older versions: one combined file) is stdout's.
_TOKEN_RE = re.compile(r"^([fb])/(\d{1,20})(?:-(\d{1,20}))?(?:/s)?$")


def _offset_token(kind: str, pos: Position) -> str:
    return f"{kind}/" + "-".join(f"{p:020d}" for p in pos) + "/s"


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


def _bounds(al: AttemptLog, start_time: int | None, end_time: int | None) -> tuple[Position, Position]:
    """The positions of `startTime` and `endTime` (an event is in when startTime <= timestamp < endTime)."""
    end = al.visible_end
    low = al.offsets_for_time(start_time) if start_time is not None else tuple(0 for _ in end)
    high = al.offsets_for_time(end_time) if end_time is not None else end
    high = tuple(max(lo, min(hi, e)) for lo, hi, e in zip(low, high, end, strict=True))
    return low, high


@dataclass
class _Read:
    forward: bool
    offset: Position | None
    limit: int
    start_time: int | None
    end_time: int | None


def _read_events(roots: Roots, stream: Stream, req: _Read) -> dict[str, Any]:
    """GetLogEvents' file work (on the file pool)."""
    with roots.open(stream) as al:
        low, high = _bounds(al, req.start_time, req.end_time)
        if req.forward:
            pos = low if req.offset is None else al.clamp(req.offset, low, high)
            events = list(islice(al.forward(pos, high), req.limit))
            events = events[: _fits(events)]
            forward, backward = AttemptLog.after(pos, events), pos
        else:
            pos = high if req.offset is None else al.clamp(req.offset, low, high)
            newest: list[Event] = []
            size = 0
            for e in al.backward(pos, low):
                newest.append(e)
                size += len(e.message) + EVENT_OVERHEAD
                if len(newest) >= req.limit or size > MAX_RESPONSE_BYTES:
                    break
            events = newest[: _fits(newest)][::-1]
            forward, backward = pos, AttemptLog.before(pos, events)
    return {
        "events": [_out(e) for e in events],
        "nextForwardToken": _offset_token("f", forward),
        "nextBackwardToken": _offset_token("b", backward),
    }


@operation("logs:GetLogEvents")
async def get_log_events(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _log_group(ctx, params)
    name = _str(params, "logStreamName")
    if name is None:
        raise invalid(
            "1 validation error detected: Value null at 'logStreamName' failed to satisfy constraint"
        )
    limit = _int(params, "limit", MAX_EVENTS, 1, MAX_EVENTS) or MAX_EVENTS
    start_time = _int(params, "startTime", None)
    end_time = _int(params, "endTime", None)
    from_head = _bool(params, "startFromHead", False)
    token = _str(params, "nextToken", MAX_TOKEN)
    direction, offset = ("f" if from_head else "b"), None
    if token is not None:
        m = _TOKEN_RE.match(token)
        if not m:
            raise invalid("The specified nextToken is invalid.")
        direction, offset = m.group(1), (int(m.group(2)), int(m.group(3) or 0))
    stream = await resolve(ctx, name)
    req = _Read(direction == "f", offset, limit, start_time, end_time)
    return await off_loop(_read_events, roots_of(ctx), stream, req)


# -- DescribeLogStreams --------------------------------------------------------------------------------


def _describe(ctx: RequestContext, roots: Roots, streams: list[Stream]) -> list[dict[str, Any]]:
    """The streams' descriptions (on the file pool)."""
    out = []
    arn = f"arn:{ctx.partition}:logs:{ctx.region}:{ctx.account}:log-group:{logstreams.LOG_GROUP}:log-stream:"
    for stream in streams:
        with roots.open(stream) as al:
            one: dict[str, Any] = {
                "logStreamName": stream.name,
                "creationTime": stream.created,
                "arn": arn + stream.name,
                "storedBytes": al.size,
            }
            if al.first_stamp is not None:
                one["firstEventTimestamp"] = al.first_stamp
                one["lastEventTimestamp"] = al.last_stamp
                one["lastIngestionTime"] = al.last_stamp
        out.append(one)
    return out


def _by_last_event_time(roots: Roots, streams: list[Stream], descending: bool) -> list[Stream]:
    keyed = sorted(((roots.mtime_ms(s), s.name, s) for s in streams), key=lambda t: (t[0], t[1]))
    if descending:
        keyed.reverse()
    return [s for _, _, s in keyed]


@operation("logs:DescribeLogStreams")
async def describe_log_streams(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _log_group(ctx, params)
    prefix = _str(params, "logStreamNamePrefix")
    order_by = params.get("orderBy", "LogStreamName")
    if order_by not in ("LogStreamName", "LastEventTime"):
        shown = order_by[:40] if isinstance(order_by, str) else type(order_by).__name__
        raise invalid(f"orderBy must be LogStreamName or LastEventTime, not {shown!r}")
    if order_by == "LastEventTime" and prefix is not None:
        raise invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
    descending = _bool(params, "descending", False)
    limit = _int(params, "limit", DESCRIBE_LIMIT, 1, DESCRIBE_LIMIT) or DESCRIBE_LIMIT
    token = _str(params, "nextToken", MAX_TOKEN)
    state = _unpack(token) if token else {}
    if not isinstance(state, dict) or state.get("o", order_by) != order_by:
        raise invalid("The specified nextToken is invalid.")
    roots = roots_of(ctx)

    if order_by == "LogStreamName":
        if state and (state.get("p") != prefix or state.get("d") != descending):
            raise invalid("The specified nextToken is invalid.")  # from a listing with other parameters
        cursor = valid_cursor(state.get("c"))
        streams, cursor = list_by_name(ctx, prefix, descending, cursor, limit)
        result: dict[str, Any] = {"logStreams": await off_loop(_describe, ctx, roots, streams)}
        if cursor is not None:
            result["nextToken"] = _pack({"o": order_by, "p": prefix, "d": descending, "c": cursor})
        return result

    # LastEventTime: the streams of the most recent jobs, ordered by when their output last changed.
    skip = state.get("n", 0)
    if isinstance(skip, bool) or not isinstance(skip, int) or not 0 <= skip <= MAX_TIME:
        skip = 0
    with ctx.service.db.tx() as c:
        rows = c.execute(
            select(*COLUMNS)
            .where(jobs.c.account == ctx.account, jobs.c.region == ctx.region)
            .order_by(jobs.c.seq.desc())
            .limit(LAST_EVENT_TIME_JOBS)
        ).all()
    candidates = [s for row in rows for s in streams_of_row(ctx, row)]
    ordered = await off_loop(_by_last_event_time, roots, candidates, descending)
    page = ordered[skip : skip + limit]
    result = {"logStreams": await off_loop(_describe, ctx, roots, page)}
    if skip + limit < len(ordered):
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
        raise invalid(_UNSUPPORTED_PATTERN)
    required: list[str] = []
    excluded: list[str] = []
    for m in re.finditer(r'(-?)(?:"((?:[^"\\]|\\.)*)"|(\S+))', text):
        quoted, bare = m.group(2), m.group(3)
        if bare is not None and (bare.startswith("?") or '"' in bare):
            raise invalid(_UNSUPPORTED_PATTERN)
        term = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        if term:
            (excluded if m.group(1) else required).append(term)
    return required, excluded


async def _filter_streams(ctx: RequestContext, params: dict[str, Any]) -> list[Stream]:
    names = params.get("logStreamNames")
    prefix = _str(params, "logStreamNamePrefix")
    if names is not None and prefix is not None:
        raise invalid("logStreamNames and logStreamNamePrefix are mutually exclusive parameters.")
    if names is not None:
        if (
            not isinstance(names, list)
            or not names
            or len(names) > 100
            or not all(isinstance(n, str) and 0 < len(n) <= MAX_NAME for n in names)
        ):
            raise invalid(f"logStreamNames must be a list of 1 to 100 stream names of 1 to {MAX_NAME} characters")
        return await _resolve_many(ctx, list(dict.fromkeys(names)))
    if prefix is not None:
        return list_by_name(ctx, prefix, False, None, FILTER_MAX_STREAMS)[0]
    # No selection: the streams of the most recent jobs.
    with ctx.service.db.tx() as c:
        rows = c.execute(
            select(*COLUMNS)
            .where(jobs.c.account == ctx.account, jobs.c.region == ctx.region)
            .order_by(jobs.c.seq.desc())
            .limit(FILTER_MAX_STREAMS)
        ).all()
    streams = [s for row in rows for s in streams_of_row(ctx, row)]
    return sorted(streams, key=lambda s: s.name)[:FILTER_MAX_STREAMS]


async def _resolve_many(ctx: RequestContext, names: list[str]) -> list[Stream]:
    streams = []
    for name in names:
        try:
            streams.append(await resolve(ctx, name))
        except ApiError:
            continue  # like CloudWatch: names that match no stream simply contribute nothing
    return streams


def _positions(state: Any) -> dict[str, Position]:
    """The per-stream positions of a FilterLogEvents token (one offset: a token of an older version)."""
    if not isinstance(state, dict) or not isinstance(state.get("p"), dict) or len(state["p"]) > FILTER_MAX_STREAMS:
        raise invalid("The specified nextToken is invalid.")
    out: dict[str, Position] = {}
    for name, value in state["p"].items():
        pos = [value] if isinstance(value, int) else value
        if (isinstance(name, str) and isinstance(pos, list) and 1 <= len(pos) <= 2
                and all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= MAX_TIME for p in pos)):
            out[name] = (pos[0], pos[1] if len(pos) > 1 else 0)
    return out


@dataclass
class _Filter:
    limit: int
    start_time: int | None
    end_time: int | None
    required: list[str]
    excluded: list[str]
    positions: dict[str, Position]


def _matches(f: _Filter, message: str) -> bool:
    return all(t in message for t in f.required) and not any(t in message for t in f.excluded)


def _filter(roots: Roots, streams: list[Stream], f: _Filter) -> dict[str, Any]:
    """FilterLogEvents' file work (on the file pool): the streams' events merged by time, filtered."""
    logs = [roots.open(s) for s in streams]
    heads: list[tuple[int, int, int, int, Event, Iterator[Event]]] = []
    positions: dict[str, list[int]] = {}
    highs: dict[str, Position] = {}
    events: list[dict[str, Any]] = []
    try:
        for i, (s, al) in enumerate(zip(streams, logs, strict=True)):
            al.__enter__()
            low, high = _bounds(al, f.start_time, f.end_time)
            pos = al.clamp(f.positions.get(s.name, low), low, high)
            positions[s.name], highs[s.name] = list(pos), high
            it = al.forward(pos, high)
            first = next(it, None)
            if first is not None:
                heads.append((first.timestamp, i, first.source, first.start, first, it))
        heapq.heapify(heads)
        scanned = used = 0
        while heads and len(events) < f.limit and scanned < FILTER_SCAN_BYTES:
            _, i, _, _, e, it = heads[0]
            size = len(e.message.encode()) + EVENT_OVERHEAD
            matched = _matches(f, e.message)
            if matched and used + size > MAX_RESPONSE_BYTES:
                break
            name = streams[i].name
            positions[name][e.source] = e.next
            scanned += e.next - e.start
            if matched:
                used += size
                events.append({
                    "logStreamName": name, "timestamp": e.timestamp, "message": e.message,
                    "ingestionTime": e.timestamp,
                    "eventId": f"{zlib.crc32(name.encode()):010d}{e.source}{e.start:020d}",
                })
            nxt = next(it, None)
            if nxt is None:
                heapq.heappop(heads)
            else:
                heapq.heapreplace(heads, (nxt.timestamp, i, nxt.source, nxt.start, nxt, it))
    finally:
        for al in logs:
            al.__exit__(None, None, None)
    result: dict[str, Any] = {
        "events": events,
        "searchedLogStreams": [
            {"logStreamName": s.name,
             "searchedCompletely": all(p >= h for p, h in zip(positions[s.name], highs[s.name], strict=True))}
            for s in streams
        ],
    }
    if heads:
        result["nextToken"] = _pack({"p": {s.name: positions[s.name] for s in streams}})
    return result


@operation("logs:FilterLogEvents")
async def filter_log_events(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _log_group(ctx, params)
    limit = _int(params, "limit", MAX_EVENTS, 1, MAX_EVENTS) or MAX_EVENTS
    start_time = _int(params, "startTime", None)
    end_time = _int(params, "endTime", None)
    pattern = params.get("filterPattern") or ""
    if not isinstance(pattern, str) or len(pattern) > 1024:
        raise invalid("filterPattern must be a string of at most 1024 characters")
    required, excluded = _terms(pattern)
    token = _str(params, "nextToken", MAX_TOKEN)
    positions: dict[str, Position] = {}
    if token:
        positions = _positions(_unpack(token))
        streams = await _resolve_many(ctx, list(positions))
    else:
        streams = await _filter_streams(ctx, params)
    f = _Filter(limit, start_time, end_time, required, excluded, positions)
    return await off_loop(_filter, roots_of(ctx), streams, f)
