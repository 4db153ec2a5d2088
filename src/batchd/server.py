"""Run the service under uvicorn and announce the address once it is ready."""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import sys

import uvicorn

from batchd.api.app import BatchdASGI
from batchd.api.connections import ConnectionGuard, ConnectionLimits, make_protocol_class
from batchd.config import Settings
from batchd.service import Service

log = logging.getLogger("batchd.server")


class EachLineFormatter(logging.Formatter):
    """Prints every line of a several-line message with the record's prefix (time, level, logger): the job
    state changes of one loop turn come as one record (store/state_log.py) and read as one line each."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.exc_info or record.stack_info:
            return text
        message = record.getMessage()
        if "\n" not in message or not text.endswith(message):
            return text
        prefix = text[: len(text) - len(message)]
        return prefix + message.replace("\n", "\n" + prefix)


def raise_open_file_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit (every connection is a file); returns
    the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            pass
    return soft


def connection_limits(settings: Settings, open_file_limit: int) -> ConnectionLimits:
    # Half of the files are kept for the database, job processes' pipes and pidfds, and log files.
    allowed = max(64, open_file_limit // 2)
    if settings.max_connections > allowed:
        log.warning("max_connections %d lowered to %d: the open-file limit is %d",
                    settings.max_connections, allowed, open_file_limit)
    return ConnectionLimits(
        max_connections=min(settings.max_connections, allowed),
        idle_timeout=settings.connection_idle_timeout_seconds,
        header_timeout=settings.request_header_timeout_seconds,
        body_timeout=settings.request_body_timeout_seconds,
        max_header_bytes=settings.max_header_bytes,
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)  # a burst of connections waits here, not in SYN retries
    sock.setblocking(False)
    return sock


async def serve(settings: Settings) -> int:
    service = Service(settings)
    service.open_store()  # fail fast, before binding, with the store's own message
    try:
        sock = _bind(settings.host, settings.port)
    except OSError as exc:
        print(f"batchd: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    app = BatchdASGI(service)
    guard = ConnectionGuard(connection_limits(settings, raise_open_file_limit()))
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="debug" if settings.log_level.lower() == "debug" else "warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        # uvicorn's own limit counts idle connections too (4,096 idle sockets made it answer 503 to all):
        # connections are limited by the guard instead, which closes idle ones to make room.
        limit_concurrency=None,
        http=make_protocol_class(guard),
        timeout_keep_alive=settings.connection_idle_timeout_seconds,  # type: ignore[arg-type]
        backlog=4096,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            return 1
        await asyncio.sleep(0.005)
    guard.start(asyncio.get_running_loop())
    shown = f"[{host}]" if ":" in host else host
    print(f"batchd listening on http://{shown}:{port}", flush=True)
    try:
        await task
    finally:
        guard.stop()
    return 0 if server.started else 1


def run(settings: Settings) -> int:
    # Skip what the format does not show (the caller's frame, thread and process names; the logging HOWTO's
    # "Optimization"): a third of a record's cost.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(EachLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    try:
        import uvloop  # installed with uvicorn[standard]; about twice as fast per request as asyncio's loop

        return uvloop.run(serve(settings))
    except ImportError:
        return asyncio.run(serve(settings))
