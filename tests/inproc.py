"""An in-process batchd for tests that send many requests: the ASGI app called directly, no sockets, no uvicorn.

    async with InProcessServer(tmp_path / "data") as srv:
        reply = await srv.call("CreateComputeEnvironment", {...})
        assert reply.status == 200, reply.body

The service is the real one (store, scheduler, local executor), started through the ASGI lifespan exactly as
uvicorn starts it, on a private data dir. With BATCHD_TEST_STORE=postgresql it uses a fresh PostgreSQL database
(tests/pgtest.py). Requests are unsigned (dev mode), so every request runs as account 123456789012 in us-east-1.
`errors` collects every log record of ERROR or above that the app or the scheduler emitted while it ran: a
request can answer 400 and still have logged a fault.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from batchd.api.app import BatchdASGI
from batchd.config import Settings
from batchd.service import Service

REGION = "us-east-1"
ACCOUNT = "123456789012"
LOGS_TARGET = "Logs_20140328."
# A dev-mode Authorization header: only its credential scope (the region) is read.
_AUTH = (
    f"AWS4-HMAC-SHA256 Credential=AKIDDEV/20240101/{REGION}/batch/aws4_request, "
    "SignedHeaders=host, Signature=0"
)
# The settings that make AWS's long minimums short, as conftest.FAST_SETTINGS does for real servers.
FAST = {"terminate_grace_seconds": 2.0, "min_attempt_duration_seconds": 1, "min_state_time_limit_seconds": 1}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None

    @property
    def error_type(self) -> str | None:
        return self.headers.get("x-amzn-errortype")


def _commit_without_waiting(url: str) -> None:
    import psycopg

    server, _, name = url.replace("postgresql+psycopg://", "postgresql://").rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class InProcessServer:
    data_dir: Path
    settings: dict[str, Any] = field(default_factory=dict)
    errors: list[logging.LogRecord] = field(default_factory=list)
    # False: PostgreSQL commits without waiting for the disk (synchronous_commit=off on the test database), for
    # tests that send thousands of requests and do not test durability. SQLite commits never wait (WAL, NORMAL).
    durable: bool = True

    async def __aenter__(self) -> InProcessServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        values = {**FAST, **self.settings}
        if os.environ.get("BATCHD_TEST_STORE") == "postgresql" and "db" not in values:
            from pgtest import fresh_database

            values["db"] = fresh_database()
            if not self.durable:
                _commit_without_waiting(values["db"])
        self.service = Service(Settings(data_dir=self.data_dir, **values))
        self.app = BatchdASGI(self.service)
        self._log = _ErrorLog()
        self.errors = self._log.records
        logging.getLogger("batchd").addHandler(self._log)
        self._lifespan_in: asyncio.Queue = asyncio.Queue()
        self._lifespan_out: asyncio.Queue = asyncio.Queue()
        self._lifespan = asyncio.create_task(
            self.app({"type": "lifespan"}, self._lifespan_in.get, self._lifespan_out.put)
        )
        await self._lifespan_in.put({"type": "lifespan.startup"})
        answer = await self._lifespan_out.get()
        if answer["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"batchd did not start: {answer}")

    async def stop(self) -> None:
        """Stop the service; job processes it started are ended first (a test must leave none behind)."""
        executor = getattr(self.service, "executor", None)
        for handle in list(getattr(self.service.scheduler, "_handles", {}).values()):
            if executor is not None:
                try:
                    await executor.terminate(handle, 0)
                except Exception:  # noqa: BLE001 - the process may have ended already
                    pass
        await self._lifespan_in.put({"type": "lifespan.shutdown"})
        await self._lifespan_out.get()
        await self._lifespan
        logging.getLogger("batchd").removeHandler(self._log)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | dict | list | None = None,
        headers: dict[str, str] | None = None,
        query: bytes = b"",
    ) -> Reply:
        """One HTTP request through the app; `path` is the raw (percent-encoded) path."""
        data = body if isinstance(body, bytes) else b"" if body is None else orjson.dumps(body)
        sent_headers = {"authorization": _AUTH, "content-type": "application/json", **(headers or {})}
        sent_headers["content-length"] = str(len(data))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode("latin-1", "replace"),
            "query_string": query,
            "root_path": "",
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in sent_headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8780),
        }
        chunks = [{"type": "http.request", "body": data, "more_body": False}]
        sent: list[dict] = []

        async def receive() -> dict:
            return chunks.pop(0) if chunks else {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        reply_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}
        payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return Reply(start["status"], reply_headers, payload)

    async def call(self, operation: str, params: dict | bytes) -> Reply:
        """A Batch operation at its model route (POST /v1/<operation in lower case>)."""
        return await self.request("POST", f"/v1/{operation.lower()}", params)

    async def logs(self, operation: str, params: dict | bytes) -> Reply:
        """A CloudWatch Logs operation (X-Amz-Target: Logs_20140328.<operation>)."""
        headers = {"x-amz-target": LOGS_TARGET + operation, "content-type": "application/x-amz-json-1.1"}
        return await self.request("POST", "/", params, headers=headers)

    async def ok(self, operation: str, params: dict) -> dict:
        """Call an operation that must succeed; its decoded answer."""
        reply = await self.call(operation, params)
        if reply.status != 200:
            raise AssertionError(f"{operation} answered {reply.status}: {reply.body[:500]!r}")
        return reply.json()
