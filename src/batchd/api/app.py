"""The HTTP front: a small ASGI app (no framework on the hot path).

A request flows: read body (size-capped) -> route from the botocore model -> authenticate (SigV4) ->
decode JSON -> bind URI/query members -> validate against the input shape -> handler -> JSON response.
Every answer carries x-amzn-RequestId; every error is rest-json `{"__type", "message"}` with x-amzn-ErrorType.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError

from batchd.api import model, validate
from batchd.api.auth import Authenticator
from batchd.api.errors import ApiError, ClientException, NotImplementedOperation, ServerException
from batchd.api.registry import HANDLERS, RequestContext
from batchd.api.sigv4 import headers_from_asgi
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


class Response:
    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status, self.body, self.headers = status, body, headers


class BatchdASGI:
    def __init__(self, service: Any) -> None:
        self.service = service
        self.auth = Authenticator(service.settings.credentials)
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
        except ApiError as exc:
            resp = _error(exc, request_id, _JSON)
        except DBAPIError as exc:  # e.g. a full disk: the transaction rolled back, nothing was committed
            log.error("state store error (request %s): %s", request_id, exc.orig)
            resp = _error(ServerException(f"The state store refused the request: {exc.orig}"), request_id, _JSON)
        except Exception:  # a real server fault: say so, log the trace, never drop the connection
            log.exception("unhandled error (request %s)", request_id)
            resp = _error(ServerException("Internal server error"), request_id, _JSON)
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

        body = await _read_body(receive, headers)
        target = headers.get("x-amz-target", "")
        if target.startswith(LOGS_TARGET_PREFIX) and method == "POST":
            return await self._logs(scope, raw_path_s, headers, body, target, request_id)

        # Authenticate before routing: with credentials configured, nobody unauthenticated learns anything,
        # not even which paths exist (dev mode only parses the region out of the header).
        caller = self.auth.authenticate(method, raw_path_s, _qs(scope), headers, body)
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
        self, scope: dict, raw_path: str, headers: dict[str, str], body: bytes, target: str, request_id: str
    ) -> Response:
        op = target[len(LOGS_TARGET_PREFIX):]
        try:
            caller = self.auth.authenticate("POST", raw_path, _qs(scope), headers, body)
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
            if exc.code == "ClientException":
                exc = ApiError(exc.message, code="InvalidParameterException", status=400)
            return _error(exc, request_id, _AMZ_JSON)
        return Response(200, orjson.dumps(result), [(b"content-type", _AMZ_JSON)])


def _qs(scope: dict) -> str:
    return scope.get("query_string", b"").decode("latin-1")


async def _read_body(receive: Any, headers: dict[str, str]) -> bytes:
    declared = headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise ClientException(f"Content-Length {declared!r} is not a number") from None
        if n > MAX_BODY:
            raise ClientException(f"Request body of {n} bytes is too large; the limit is {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise ClientException(f"Request body is too large; the limit is {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
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
    return data


def _error(exc: ApiError, request_id: str, content_type: bytes) -> Response:
    body = orjson.dumps({"__type": exc.code, "message": exc.message})
    return Response(exc.status, body, [(b"content-type", content_type), (b"x-amzn-errortype", exc.code.encode())])
