"""Shared fixtures: real `batchd serve` processes on ephemeral ports, driven with boto3 and the aws CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
REGION = "us-east-1"

# Which store the servers under test use: "sqlite" (default) or "postgresql" (BATCHD_TEST_STORE).
TEST_STORE = os.environ.get("BATCHD_TEST_STORE", "sqlite")

# Settings that make long AWS waits short in tests; each is a documented server setting.
FAST_SETTINGS = {
    "BATCHD_TERMINATE_GRACE_SECONDS": "2",
    "BATCHD_MIN_ATTEMPT_DURATION_SECONDS": "1",
    "BATCHD_MIN_STATE_TIME_LIMIT_SECONDS": "1",
}


class Server:
    """A running `batchd serve` process."""

    def __init__(self, data_dir: Path, config: str | None = None, env: dict[str, str] | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = data_dir.parent / f"{data_dir.name}.toml"
            self.config_path.write_text(config)
        self.env = {**os.environ, **FAST_SETTINGS, **(env or {})}
        for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BATCH"):
            self.env.pop(key, None)
        self.extra_args = extra_args or []
        self.db_url: str | None = None
        if TEST_STORE == "postgresql" and "--db" not in self.extra_args:
            from pgtest import fresh_database

            self.db_url = fresh_database()
            self.extra_args += ["--db", self.db_url]
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.port = 0

    def start(self, port: int = 0, timeout: float = 20.0) -> Server:
        args = [sys.executable, "-m", "batchd", "serve", "--port", str(port), "--data-dir", str(self.data_dir)]
        if self.config_path:
            args += ["--config", str(self.config_path)]
        args += self.extra_args
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.server.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log, env=self.env, cwd=REPO)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("batchd listening on ") or time.monotonic() > deadline:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r}; log: {self.log_path.read_text()[-3000:]}")
        self.url = line.split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        if getattr(self, "_log", None):
            self._log.close()

    def restart(self) -> Server:
        port = self.port
        self.stop()
        return self.start(port=port)

    def client(self, service: str = "batch", region: str = REGION, key: str = "AKIDDEV",
               secret: str = "dev-secret", **kw) -> object:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1}, **kw),
        )

    def aws(self, *args: str, region: str = REGION, check: bool = True) -> dict | str:
        """Run the aws CLI against this server; returns parsed JSON output when there is any."""
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDDEV", "AWS_SECRET_ACCESS_KEY": "dev-secret",
               "AWS_DEFAULT_REGION": region, "AWS_PAGER": ""}
        proc = subprocess.run(
            [sys.executable, "-m", "awscli", "--endpoint-url", self.url, *args, "--output", "json"],
            capture_output=True, text=True, env=env, timeout=60,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        if proc.returncode != 0:
            return proc.stderr
        return json.loads(proc.stdout) if proc.stdout.strip() else {}


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start a private server (own data dir); stopped at the end of the test."""
    started: list[Server] = []

    def factory(config: str | None = None, env: dict[str, str] | None = None, name: str | None = None,
                extra_args: list[str] | None = None, start: bool = True) -> Server:
        data_dir = tmp_path / (name or f"srv{len(started)}")
        srv = Server(data_dir, config=config, env=env, extra_args=extra_args)
        started.append(srv)
        return srv.start() if start else srv

    yield factory
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One dev-mode server shared by the tests that only need isolation by unique names."""
    srv = Server(tmp_path_factory.mktemp("shared") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture
def batch(server: Server):
    return server.client()


@pytest.fixture
def unique() -> Callable[[str], str]:
    def make(prefix: str = "t") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05,
             message: str = "condition") -> object:
    """Poll until predicate() is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
