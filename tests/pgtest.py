"""PostgreSQL for the tests: the server at 127.0.0.1:5432 if it answers, else a throwaway cluster.

Each test server gets a fresh database `batchd_test_<hex>`; nothing else on the cluster is touched, and the
databases are dropped when the test session ends.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

_admin_url: str | None = None
_created: list[str] = []
_cluster: tuple[str, Path] | None = None  # (pg_ctl, data dir) of a throwaway cluster we started


def _reachable(host: str, port: int) -> bool:
    try:
        # A generous limit: a slow answer on a loaded machine must not make us start a throwaway cluster.
        with socket.create_connection((host, port), timeout=10):
            return True
    except OSError:
        return False


def _bindir() -> Path | None:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
            if (candidate / "initdb").exists():
                return candidate
        return None
    path = Path(out)
    return path if (path / "initdb").exists() else None


def _start_cluster() -> str:
    """initdb + pg_ctl in a temporary directory (about a second); as the postgres user when we are root."""
    global _cluster
    bindir = _bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server on 127.0.0.1:5432 and no initdb/pg_ctl installed")
    tmp = Path(tempfile.mkdtemp(prefix="batchd-pg-"))
    data = tmp / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True)
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(tmp / "log"), "-w", "-o",
                    f"-k {tmp} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    _cluster = (" ".join([*prefix, str(bindir / "pg_ctl")]), data)
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}"


def admin_url() -> str:
    global _admin_url
    if _admin_url is None:
        explicit = os.environ.get("BATCHD_TEST_PG_URL")
        if explicit:
            _admin_url = explicit.rstrip("/")
        elif _reachable("127.0.0.1", 5432):
            _admin_url = "postgresql+psycopg://postgres@127.0.0.1:5432"
        else:
            _admin_url = _start_cluster()
    return _admin_url


def _connect(dbname: str = "postgres"):
    import psycopg

    url = admin_url().replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(f"{url}/{dbname}", autocommit=True)


def fresh_database() -> str:
    name = f"batchd_test_{uuid.uuid4().hex[:12]}"
    with _connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    _created.append(name)
    return f"{admin_url()}/{name}"


def drop_all() -> None:
    if _created:
        try:
            with _connect() as conn:
                for name in _created:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception:  # noqa: BLE001 - cleanup must not fail the run
            pass
        _created.clear()
    if _cluster is not None:
        subprocess.run(f"{_cluster[0]} -D {_cluster[1]} -m fast stop".split(), capture_output=True)


atexit.register(drop_all)
