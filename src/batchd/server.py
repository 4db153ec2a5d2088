"""Run the service under uvicorn and announce the address once it is ready."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys

import uvicorn

from batchd.api.app import BatchdASGI
from batchd.config import Settings
from batchd.service import Service


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
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
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        limit_concurrency=4096,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            return 1
        await asyncio.sleep(0.005)
    shown = f"[{host}]" if ":" in host else host
    print(f"batchd listening on http://{shown}:{port}", flush=True)
    await task
    return 0 if server.started else 1


def run(settings: Settings) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop  # installed with uvicorn[standard]; about twice as fast per request as asyncio's loop

        return uvloop.run(serve(settings))
    except ImportError:
        return asyncio.run(serve(settings))
