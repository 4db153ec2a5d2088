"""Connection limits in front of uvicorn's HTTP protocol, so that idle or slow clients cannot starve others.

uvicorn (0.54, httptools) arms no timer before a connection's first request, none while a request's headers or
body trickle in, and its `limit_concurrency` counts idle connections too: 4,096 sockets that never send a byte
made it answer 503 to everyone. `GuardedProtocol` adds, per connection, one deadline for the phase it is in:

* idle (no byte of a request yet: before the first request and between requests): `connection_idle_timeout`;
* the request head (from its first byte until the headers are complete): `request_header_timeout`, and at
  most `max_header_bytes` received while the headers are incomplete (431 beyond);
* the body (from the end of the headers until the body is complete): `request_body_timeout`;
* the response, while the client does not read it (the transport paused writing): `request_body_timeout`.

A connection past its deadline is aborted. One sweep per interval checks the deadlines, so the request path only
stores a float. At most `max_connections` are open: a new connection beyond that closes the one that has been
idle (or sending its head) the longest, and is itself refused only when every open connection has a request
in progress; those are bounded by the timeouts and by the body budget (api/app.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("batchd.connections")

_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 31\r\nconnection: close\r\n\r\nRequest header fields too large"
)


@dataclass
class ConnectionLimits:
    max_connections: int
    idle_timeout: float
    header_timeout: float
    body_timeout: float
    max_header_bytes: int


class ConnectionGuard:
    """The open connections of one server, their deadlines, and the sweep that enforces them."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open: set[GuardedProtocol] = set()
        # Connections with no request in progress, oldest first (a dict keeps insertion order).
        self.idle: dict[GuardedProtocol, None] = {}
        self.evicted = self.refused = self.expired = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._last_warning = 0.0
        shortest = min(limits.idle_timeout, limits.header_timeout, limits.body_timeout)
        self.sweep_interval = max(0.05, min(1.0, shortest / 4))

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweeper = loop.call_later(self.sweep_interval, self._sweep, loop)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def admit(self, conn: GuardedProtocol) -> bool:
        """Room for a new connection: close the longest-idle one when at the limit. False: refuse it."""
        if len(self.open) >= self.limits.max_connections:
            if not self.idle:
                self.refused += 1
                self._warn("every one of the %d connections has a request in progress: refusing a new one",
                           self.limits.max_connections)
                return False
            oldest = next(iter(self.idle))
            self.forget(oldest)
            self.evicted += 1
            oldest.transport.abort()
        self.open.add(conn)
        self.idle[conn] = None
        return True

    def forget(self, conn: GuardedProtocol) -> None:
        self.open.discard(conn)
        self.idle.pop(conn, None)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        late = [c for c in self.open if c.deadline < now]
        for conn in late:
            self.forget(conn)
            self.expired += 1
            conn.transport.abort()
        self._sweeper = loop.call_later(self.sweep_interval, self._sweep, loop)

    def _warn(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 10:  # a flood must not flood the log too
            self._last_warning = now
            log.warning(message, *args)


_Base = HttpToolsProtocol


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and limits above (see make_protocol_class). The request
    path only stores deadlines (one `loop.time()` per phase); base methods are called directly, not through
    super(), because these run several times per request."""

    guard: ConnectionGuard
    deadline = math.inf
    _in_head = False
    _head_bytes = 0
    _chunk = 0
    _head_too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        _Base.connection_made(self, transport)
        self.deadline = self.loop.time() + self.guard.limits.idle_timeout
        if not self.guard.admit(self):
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        _Base.connection_lost(self, exc)

    def data_received(self, data: bytes) -> None:
        if self._head_too_large:
            return
        self._chunk = len(data)
        _Base.data_received(self, data)
        if self._in_head:  # the headers are still incomplete after this chunk: count it against the limit
            self._head_bytes += len(data)
            if self._head_bytes > self.guard.limits.max_header_bytes:
                self._refuse_head()

    def _refuse_head(self) -> None:
        self._in_head = False
        self._head_too_large = True
        self.transport.write(_TOO_LARGE)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if not self._head_too_large:  # not after our 431
            _Base.send_400_response(self, msg)

    def on_message_begin(self) -> None:
        _Base.on_message_begin(self)
        self._in_head = True
        self._head_bytes = 0
        self.deadline = self.loop.time() + self.guard.limits.header_timeout

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_bytes + self._chunk > self.guard.limits.max_header_bytes and self._head_size() > (
            self.guard.limits.max_header_bytes
        ):  # a large head that completed within one chunk: its exact size (only then: it costs a loop)
            self._refuse_head()
            raise ValueError("request head too large")  # stops the parser; no request starts
        self.guard.idle.pop(self, None)
        self.deadline = self.loop.time() + self.guard.limits.body_timeout
        _Base.on_headers_complete(self)

    def _head_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def on_message_complete(self) -> None:
        _Base.on_message_complete(self)
        self.deadline = math.inf  # the request is the application's now

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        _Base.on_response_complete(self)
        if not pipelined and not self.transport.is_closing() and self in self.guard.open:
            self.deadline = self.loop.time() + self.guard.limits.idle_timeout
            self.guard.idle[self] = None

    def pause_writing(self) -> None:
        _Base.pause_writing(self)
        self.deadline = min(self.deadline, self.loop.time() + self.guard.limits.body_timeout)

    def resume_writing(self) -> None:
        _Base.resume_writing(self)
        if self.cycle is not None and not self.cycle.response_complete and not self.cycle.more_body:
            self.deadline = math.inf


def make_protocol_class(guard: ConnectionGuard) -> type[GuardedProtocol]:
    """uvicorn instantiates the protocol class itself: bind the guard as a class attribute."""
    return type("BatchdHttpProtocol", (GuardedProtocol,), {"guard": guard})
