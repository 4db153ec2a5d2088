"""Shared fixtures: real `batchd serve` processes on ephemeral ports, driven with boto3 and the aws CLI."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import boto3
import pytest
from botocore.config import Config

import jobkit
import procs

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


# Timeouts are hang detectors, never measurements: on a loaded 2-core machine a server start takes 7-20 s and
# a job's state change seconds, so every wait is generous; waiting costs nothing when the event comes early.
START_TIMEOUT_SECONDS = float(os.environ.get("BATCHD_TEST_START_TIMEOUT", "90"))
STOP_TIMEOUT_SECONDS = 60.0
WAIT_SECONDS = jobkit.WAIT_SECONDS


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The first line of proc's stdout, or what came before the deadline or the end of the stream."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            chunk = os.read(fd, 4096)
            if not chunk:  # the server exited
                break
            data += chunk
    return data.decode(errors="replace")


def _copy_stream(stream: IO[bytes], path: Path) -> None:
    with stream, open(path, "ab") as out:
        for chunk in iter(lambda: stream.read1(65536), b""):
            out.write(chunk)
            out.flush()


class Server:
    """A running `batchd serve` process."""

    def __init__(self, data_dir: Path, config: str | None = None, env: dict[str, str] | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = data_dir.parent / f"{data_dir.name}.toml"
            self.config_path.write_text(config)
        # A TMPDIR of its own: the scheduler passes TMPDIR to every job, so the jobs of this server can be
        # found (and killed) by it even after the server is gone (procs.py).
        self.tmp_dir = data_dir.parent / f"{data_dir.name}.tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **FAST_SETTINGS, "TMPDIR": str(self.tmp_dir), **(env or {})}
        for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BATCH"):
            self.env.pop(key, None)
        self.extra_args = extra_args or []
        self.db_url: str | None = None
        if TEST_STORE == "postgresql" and "--db" not in self.extra_args:
            from pgtest import fresh_database

            self.db_url = fresh_database()
            self.extra_args += ["--db", self.db_url]
        self.launcher = [sys.executable, "-m", "batchd"]  # what runs `serve ...` (a test may put a fake here)
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.port = 0

    def start(self, port: int = 0, timeout: float = START_TIMEOUT_SECONDS) -> Server:
        args = [*self.launcher, "serve", "--port", str(port), "--data-dir", str(self.data_dir)]
        if self.config_path:
            args += ["--config", str(self.config_path)]
        args += self.extra_args
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.server.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log, env=self.env, cwd=REPO)
        assert self.proc.stdout is not None
        line = _read_line(self.proc, timeout)
        if not line.startswith("batchd listening on "):
            self.stop(sig=signal.SIGKILL)
            self.proc.stdout.close()
            raise RuntimeError(
                f"server did not start within {timeout:.0f}s: {line!r}; "
                f"log: {self.log_path.read_text()[-3000:]}"
            )
        # Anything the server prints later goes to its log: an unread pipe would block it once full.
        threading.Thread(target=_copy_stream, args=(self.proc.stdout, self.log_path), daemon=True).start()
        self.url = line.split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop the server; job processes outlive it by design (a restart adopts them), see reap()."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            with contextlib.suppress(OSError, ValueError):
                self._log.close()

    def reap(self) -> list[str]:
        """Stop the server and kill every job process it started (found by a working directory in its data dir
        or its jobs dir `<data dir>-jobs`, or by its TMPDIR); returns what had to be killed."""
        self.stop()
        return procs.kill_job_processes([self.data_dir, self.jobs_dir, self.tmp_dir])

    @property
    def jobs_dir(self) -> Path:
        """Where the server puts its jobs' working directories (next to the data dir, not inside it)."""
        return self.data_dir.with_name(self.data_dir.name + "-jobs")

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
            capture_output=True, text=True, env=env, timeout=180,  # the CLI takes seconds to start under load
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        if proc.returncode != 0:
            return proc.stderr
        return json.loads(proc.stdout) if proc.stdout.strip() else {}


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start a private server (own data dir); it and every job process of the test end with the test."""
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
    procs.kill_job_processes([tmp_path])  # also those of servers a test killed and restarted


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One dev-mode server shared by the tests that only need isolation by unique names."""
    srv = Server(tmp_path_factory.mktemp("shared") / "data").start()
    yield srv
    srv.reap()


@pytest.fixture(autouse=True)
def _end_job_processes_of_the_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Kill what a test left running in its own temp dir (jobs of an in-process executor, of a test's own
    Server); only for tests that have a tmp_path, so that tests without one do not get a directory each."""
    tmp_path = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if tmp_path is not None:
        procs.kill_job_processes([tmp_path])


@pytest.fixture(scope="session", autouse=True)
def _no_job_process_survives_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Torn down after every other fixture: fails the run loudly if a job process from a test data dir is
    still alive (after killing it), so a leak cannot hide behind a green suite."""
    yield
    leaked = procs.kill_job_processes([tmp_path_factory.getbasetemp()])
    if leaked:
        pytest.fail("job processes outlived the test session (killed now):\n" + "\n".join(leaked),
                    pytrace=False)


@pytest.fixture
def gates(tmp_path: Path) -> Iterator[Callable[[], jobkit.Gate]]:
    """Make jobkit.Gate objects; every gate is opened at the end of the test, so no held job outlives it."""
    made: list[jobkit.Gate] = []

    def make() -> jobkit.Gate:
        made.append(jobkit.Gate(tmp_path))
        return made[-1]

    yield make
    for gate in made:
        gate.open()


@pytest.fixture
def batch(server: Server):
    return server.client()


@pytest.fixture
def unique() -> Callable[[str], str]:
    def make(prefix: str = "t") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make


def wait_for(predicate: Callable[[], object], timeout: float = WAIT_SECONDS, interval: float = 0.05,
             message: str = "condition") -> object:
    """Poll until predicate() is truthy; returns its value.

    `timeout` only detects a hang, it never measures: it is raised to at least WAIT_SECONDS, so that a test's
    small figure (written for a quiet machine) cannot fail a loaded one."""
    timeout = max(timeout, WAIT_SECONDS)
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
