"""Crash safety and clear failures of the state store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TEST_STORE

sys.path.insert(0, str(REPO / "bench"))


def _serve(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "batchd", "serve", "--port", "0", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.mark.slow
def test_kill_9_loses_nothing_and_runs_nothing_twice(tmp_path):
    import crash

    db = None
    if TEST_STORE == "postgresql":
        from pgtest import fresh_database

        db = fresh_database()
    result = crash.run(kills=3, clients=2, db=db, interval=1.2, workdir=tmp_path)
    assert result["acknowledged"] >= 5, result  # (a loaded machine acknowledges fewer; the checks below matter)
    assert result["lost"] == 0, result
    assert result["duplicated"] == 0, result
    assert result["ran_twice"] == 0, result
    assert result["not_finished"] == 0, result
    # Held starts: a kill between spawning an attempt and recording it leaves a command that never ran, which
    # the restart starts again, so no job is left failed as "whether its process ran is unknown".
    assert result["failed_unknown_whether_ran"] == 0, result


def test_second_server_on_same_data_dir_is_refused(make_server):
    if TEST_STORE == "postgresql":
        pytest.skip("the data-dir lock guards SQLite; PostgreSQL servers share a database by design")
    srv = make_server()
    proc = _serve("--data-dir", str(srv.data_dir))
    assert proc.returncode != 0
    assert "in use by another batchd process" in proc.stderr


def test_corrupt_database_is_reported(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "batchd.sqlite3").write_bytes(b"this is not a database" * 100)
    proc = _serve("--data-dir", str(data))
    assert proc.returncode != 0
    assert "file is not a database" in proc.stderr and "corrupt" in proc.stderr


def test_data_dir_that_is_a_file_is_reported(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    proc = _serve("--data-dir", str(path))
    assert proc.returncode != 0
    assert f"data dir {path}" in proc.stderr


def test_database_locked_by_another_process(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "batchd.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("BEGIN EXCLUSIVE")
    db.execute("CREATE TABLE hold (x)")
    try:
        proc = _serve("--data-dir", str(data))
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert proc.returncode != 0
    assert "database is locked" in proc.stderr


def test_unreachable_postgresql_is_reported(tmp_path):
    proc = _serve("--data-dir", str(tmp_path), "--db", "postgresql+psycopg://batchd@127.0.0.1:1/none")
    assert proc.returncode != 0
    assert "cannot open the database" in proc.stderr and "127.0.0.1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_secret_in_unreachable_postgresql_message(tmp_path):
    proc = _serve("--data-dir", str(tmp_path), "--db", "postgresql+psycopg://batchd:s3cr3t@127.0.0.1:1/none")
    assert proc.returncode != 0 and "s3cr3t" not in proc.stderr


def test_acknowledged_write_survives_kill_9(make_server):
    srv = make_server()
    batch = srv.client()
    batch.create_compute_environment(computeEnvironmentName="durable", type="UNMANAGED", unmanagedvCpus=1)
    srv.stop(sig=9)
    srv.start(port=srv.port)
    envs = srv.client().describe_compute_environments(computeEnvironments=["durable"])["computeEnvironments"]
    assert [e["computeEnvironmentName"] for e in envs] == ["durable"]


def test_durability_doc_exists():
    text = (Path(REPO) / "docs" / "durability.md").read_text()
    assert "synchronous" in text and "kill -9" in text
    assert os.path.exists(REPO / "bench" / "crash.py")


# --- a crash between spawning an attempt and recording it ------------------------------------------------------


def _claim_behind_the_servers_back(srv, job_id: str, ce_arn: str) -> None:
    """Put the job in the state a crash leaves when it hits between the claim and the recorded start: STARTING,
    attempt 1, owned by this server, no process handle."""
    from sqlalchemy import create_engine, text

    url = srv.db_url or f"sqlite:///{srv.data_dir / 'batchd.sqlite3'}"
    engine = create_engine(url)
    owner = (srv.data_dir / "server-id").read_text().strip()
    with engine.begin() as c:
        c.execute(text("UPDATE jobs SET status = 'STARTING', attempt = 1, ce_arn = :ce, owner = :owner, "
                       "detail = NULL WHERE id = :id"), {"ce": ce_arn, "owner": owner, "id": job_id})
    engine.dispose()


@pytest.mark.parametrize("command_started", [False, True])
def test_restart_after_a_crash_while_an_attempt_was_held(make_server, tmp_path, command_started):
    """Held starts: an attempt whose handle was never recorded was still held (its command never ran) unless its
    `started` marker exists. The restart starts a held one again — it runs once and succeeds — and fails one
    that may have run, without retry, so nothing ever runs twice."""
    from batchd.domain.logstreams import attempt_dir
    from jobkit import make_ce, make_queue, register, submit, wait_status

    srv = make_server()
    batch = srv.client()
    ce = make_ce(batch, vcpus=0)  # no room: the job stays RUNNABLE until we claim it by hand
    queue = make_queue(batch, [ce])
    marker = tmp_path / "ran"
    job_id = submit(batch, queue, register(batch, ["sh", "-c", f"echo run >> {marker}"],
                                           retryStrategy={"attempts": 3}))
    wait_status(batch, job_id, "RUNNABLE")
    srv.stop()
    _claim_behind_the_servers_back(srv, job_id, ce)
    workdir = attempt_dir(srv.data_dir.with_name(srv.data_dir.name + "-jobs"), "123456789012", job_id, 1)
    workdir.mkdir(parents=True)
    (workdir / "held").touch()  # spawned and held ...
    if command_started:
        (workdir / "started").touch()  # ... and released: the command may have run
    srv.start()
    job = wait_status(srv.client(), job_id, ("SUCCEEDED", "FAILED"), timeout=20)
    if command_started:
        assert job["status"] == "FAILED"
        assert job["statusReason"] == "batchd stopped while starting the job; whether its process ran is unknown"
        assert len(job["attempts"]) == 1 and not marker.exists()  # not retried, not run again
    else:
        assert job["status"] == "SUCCEEDED" and marker.read_text() == "run\n"  # ran exactly once
        assert len(job["attempts"]) == 1
