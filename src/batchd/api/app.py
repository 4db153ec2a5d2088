"""The HTTP front: a small ASGI app (no framework on the hot path).

A request flows: check the signature's headers (SigV4, before any body byte is buffered) -> read the body
(size-capped, within the server's body budget) -> check the signature over it -> route from the botocore model
-> decode JSON -> bind URI/query members -> validate against the input shape -> handler -> JSON response.
Every answer carries x-amzn-RequestId; every error is rest-json `{"__type", "message"}` with x-amzn-ErrorType,
and is logged at INFO (logger `batchd.api`: method, path, status, code, message, access key id; never a secret).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError

from batchd.api import decode, model, validate
from batchd.api.auth import Authenticator
from batchd.api.errors import ApiError, ClientException, NotImplementedOperation, ServerException
from batchd.api.registry import HANDLERS, RequestContext
from batchd.api.sigv4 import access_key_of, headers_from_asgi, is_logs_request
from batchd.api.validate import BODY_LIMITS, validate_request
from batchd.store import resources

log = logging.getLogger("batchd.api")

# No Batch request is legitimately larger than this; bigger bodies are refused before they are read whole.
MAX_BODY = 256 * 1024
LOGS_TARGET_PREFIX = "Logs_20140328."

_JSON = b"application/json"
# Operations that never change a compute environment, queue, job definition or scheduling policy.
_READS_AND_JOB_OPS = frozenset({
    "SubmitJob", "DescribeJobs", "ListJobs", "CancelJob", "CancelJobs", "TerminateJob", "TerminateJobs",
    "DescribeComputeEnvironments", "DescribeJobQueues", "DescribeJobDefinitions", "DescribeSchedulingPolicies",
    "ListSchedulingPolicies", "ListTagsForResource", "GetJobQueueSnapshot",
})
_AMZ_JSON = b"application/x-amz-json-1.1"
_CLOSE = (b"connection", b"close")
# Each body being received counts at least this much against the body budget, so that many requests with a
# small Content-Length whose body never comes cannot hold every connection (64 MiB / 64 KiB = 1,024 at once).
MIN_BODY_RESERVATION = 64 * 1024


class BodyTooLarge(ClientException):
    """The body is over MAX_BODY: answered at once, and the connection closed (the rest is not worth reading)."""


class ClientGone(Exception):
    """The connection closed (or was timed out) before the request's body had arrived: nothing to answer."""


class BodyBudget:
    """Bytes of request bodies being received at once, before their signature can be checked. Each request
    reserves its declared Content-Length (at least MIN_BODY_RESERVATION; MAX_BODY when chunked) before reading
    and gives it back once read, so what unauthenticated clients can make the server buffer is bounded."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reserved = 0

    def reserve(self, n: int) -> None:
        if self.reserved + n > self.limit:
            raise ApiError(
                f"The server is already receiving {self.reserved} bytes of request bodies (limit {self.limit}); "
                "retry the request",
                code="TooManyRequestsException",
                status=429,
            )
        self.reserved += n

    def release(self, n: int) -> None:
        self.reserved -= n


class Response:
    __slots__ = ("status", "body", "headers", "error")

    def __init__(
        self, status: int, body: bytes, headers: list[tuple[bytes, bytes]], error: ApiError | None = None
    ) -> None:
        self.status, self.body, self.headers, self.error = status, body, headers, error


class BatchdASGI:
    def __init__(self, service: Any) -> None:
        self.service = service
        self.auth = Authenticator(service.settings.credentials)
        self.body_budget = BodyBudget(service.settings.body_buffer_budget_bytes)
        self.log_refused = RefusalLog()
        validate.set_min_attempt_duration(service.settings.min_attempt_duration_seconds)
        validate.set_min_state_time_limit(service.settings.min_state_time_limit_seconds)
        # Import the handler modules so that they register.
        import batchd.handlers  # noqa: F401

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request_id = str(uuid.uuid4())
        try:
            resp = await self._handle(scope, receive, request_id)
        except ClientGone:
            return
        except ApiError as exc:
            resp = _error(exc, request_id, _JSON)
        except DBAPIError as exc:  # e.g. a full disk: the transaction rolled back, nothing was committed
            log.error("state store error (request %s): %s", request_id, exc.orig)
            resp = _error(ServerException(f"The state store refused the request: {exc.orig}"), request_id, _JSON)
        except Exception:  # a real server fault: say so, log the trace, never drop the connection
            log.exception("unhandled error (request %s)", request_id)
            resp = _error(ServerException("Internal server error"), request_id, _JSON)
        if resp.error is not None and resp.status < 500:  # 5xx are logged above, with their cause
            self.log_refused(scope, resp, request_id)
        await send(
            {
                "type": "http.response.start",
                "status": resp.status,
                "headers": [
                    (b"x-amzn-requestid", request_id.encode()),
                    (b"content-length", str(len(resp.body)).encode()),
                    *resp.headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": resp.body})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.service.start()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.service.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, scope: dict, receive: Any, request_id: str) -> Response:
        method = scope["method"]
        raw_path = scope.get("raw_path") or scope["path"].encode()
        raw_path_s = raw_path.decode("latin-1")
        headers = headers_from_asgi(scope["headers"])
        if method == "GET" and raw_path_s in ("/health", "/health/"):
            sched = self.service.scheduler
            info = {"status": "ok", "serverId": getattr(sched, "server_id", None),
                    "scheduler": bool(sched and sched.cluster.is_leader)}
            return Response(200, orjson.dumps(info), [(b"content-type", _JSON)])

        # The operation's service (and so the signature's scope) is decided here, once, by the same rule
        # that routes the request: a Logs-scoped signature can never run a Batch operation, nor the reverse.
        is_logs = is_logs_request(method, headers)
        query_string = _qs(scope)
        try:
            # Authenticate before routing, and check all the headers can tell before buffering the body: with
            # credentials configured, nobody unauthenticated learns anything, not even which paths exist, nor
            # makes the server hold their upload (dev mode only parses the region out of the header).
            checked = self.auth.check_headers(method, query_string, headers, "logs" if is_logs else "batch")
            body = await self._read_body(receive, headers)
        except ApiError as exc:  # the body was not read (or not whole)
            resp = _logs_error(exc, request_id) if is_logs else _error(exc, request_id, _JSON)
            if isinstance(exc, BodyTooLarge):
                resp.headers.append(_CLOSE)
            # Otherwise the connection stays open: uvicorn discards the unread body as it arrives (nothing is
            # buffered) and the connection counts as idle (api/connections.py), so its idle timeout ends a slow
            # one. Closing at once would make the kernel reset the connection, and a client still sending
            # could lose the answer.
            return resp
        if is_logs:
            return await self._logs(checked, scope, raw_path_s, headers, body, request_id)
        caller = self.auth.check_signature(checked, method, raw_path_s, body)
        ctx = RequestContext(caller.account, caller.region, request_id, self.service, caller.access_key_id)
        query = model.query_params(scope.get("query_string", b""))
        route, label, other_method = model.match(method, raw_path_s)
        if route is None:
            if other_method:
                raise ClientException(f"Method {method} is not allowed on {raw_path_s}")
            if raw_path_s.startswith("/batchd/"):
                from batchd.handlers.extras import handle_extra

                result = await handle_extra(ctx, method, raw_path_s, query)
                return Response(200, orjson.dumps(result), [(b"content-type", _JSON)])
            raise ClientException(f"Unknown path {raw_path_s}: no AWS Batch operation is served at {method} {raw_path_s}")
        limit = BODY_LIMITS.get(route.name)
        if limit is not None and len(body) > limit:
            raise ClientException(
                f"{route.name} request body is {len(body)} bytes; the limit is {limit} bytes ({limit // 1024} KiB)"
            )
        params = model.bind_input(route, _decode_json(body), label, query)
        validate_request(route.name, route.input_shape, params)
        handler = HANDLERS.get(route.name)
        if handler is None:
            raise NotImplementedOperation(route.name)
        result = await handler(ctx, params)
        if route.name not in _READS_AND_JOB_OPS:
            resources.invalidate_cache()  # a resource changed: cached queues/definitions may be stale
        return Response(200, orjson.dumps(result if result is not None else {}), [(b"content-type", _JSON)])

    async def _logs(
        self, checked: Any, scope: dict, raw_path: str, headers: dict[str, str], body: bytes, request_id: str
    ) -> Response:
        op = headers["x-amz-target"][len(LOGS_TARGET_PREFIX):]
        try:
            caller = self.auth.check_signature(checked, "POST", raw_path, body)
            params = _decode_json(body)
            handler = HANDLERS.get("logs:" + op)
            if handler is None:
                raise ApiError(
                    f"batchd serves GetLogEvents, DescribeLogStreams and FilterLogEvents; not {op}",
                    code="InvalidOperationException",
                )
            ctx = RequestContext(caller.account, caller.region, request_id, self.service, caller.access_key_id)
            result = await handler(ctx, params)
        except ApiError as exc:
            return _logs_error(exc, request_id)
        return Response(200, orjson.dumps(result), [(b"content-type", _AMZ_JSON)])

    async def _read_body(self, receive: Any, headers: dict[str, str]) -> bytes:
        declared = headers.get("content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                raise ClientException(f"Content-Length {declared!r} is not a number") from None
            if n > MAX_BODY:
                raise BodyTooLarge(f"Request body of {n} bytes is too large; the limit is {MAX_BODY} bytes")
            if n <= 0:
                return b""
            reservation = max(n, MIN_BODY_RESERVATION)
        elif "transfer-encoding" in headers:
            reservation = MAX_BODY
        else:
            return b""  # neither Content-Length nor Transfer-Encoding: the request has no body
        self.body_budget.reserve(reservation)
        try:
            return await _receive_body(receive)
        finally:
            self.body_budget.release(reservation)


def _qs(scope: dict) -> str:
    return scope.get("query_string", b"").decode("latin-1")


async def _receive_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()  # never act on part of a body
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge(f"Request body is too large; the limit is {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _decode_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ClientException(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ClientException(f"Request body must be a JSON object, not {type(data).__name__}")
    return decode.without_nul(data, body)


def _error(exc: ApiError, request_id: str, content_type: bytes) -> Response:
    body = orjson.dumps({"__type": exc.code, "message": exc.message})
    headers = [(b"content-type", content_type), (b"x-amzn-errortype", exc.code.encode())]
    return Response(exc.status, body, headers, exc)


def _logs_error(exc: ApiError, request_id: str) -> Response:
    if exc.code == "ClientException":  # the Logs API's name for a bad parameter
        exc = ApiError(exc.message, code="InvalidParameterException", status=400)
    return _error(exc, request_id, _AMZ_JSON)


class RefusalLog:
    """One INFO line per refused request, at most `per_second` a second (with a burst of as many): a flood of
    bad requests must cost the server little and not flood its log. A line after a gap says how many were
    left out."""

    def __init__(self, per_second: float = 50.0) -> None:
        self.per_second = per_second
        self.tokens = per_second
        self.stamp = time.monotonic()
        self.left_out = 0

    def __call__(self, scope: dict, resp: Response, request_id: str) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        now = time.monotonic()
        self.tokens = min(self.per_second, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now
        if self.tokens < 1:
            self.left_out += 1
            return
        self.tokens -= 1
        error = resp.error
        assert error is not None
        auth = target = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value.decode("latin-1")
            elif name == b"x-amz-target":
                target = value.decode("latin-1")[:64]
        # The path without its query (a presigned request carries its signature there); the access key id is
        # not a secret; the message is what the client was told.
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")[:200]
        key = access_key_of({"authorization": auth}, _qs(scope))
        gap = f"; {self.left_out} more refused requests were not logged" if self.left_out else ""
        self.left_out = 0
        log.info("%s %s%s -> %d %s: %s (key %s, request %s%s)", scope["method"], path,
                 f" ({target})" if target else "", resp.status, error.code, error.message[:300], key, request_id,
                 gap)
