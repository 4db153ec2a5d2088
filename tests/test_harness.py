"""The test harness itself: a hung server start times out, and no job process outlives its test."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import procs
from conftest import Server, wait_for
from jobkit import setup, submit, wait_status


def _groups(descriptions) -> set[str]:
    return {d.split(" pgid ", 1)[1].split()[0] for d in descriptions}


def test_a_server_that_never_answers_is_timed_out_with_its_log(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data")
    # A "server" that prints a line to its log and then hangs without ever printing "batchd listening on".
    srv.launcher = ["sh", "-c", "echo 'stuck before listening' >&2; exec sleep 600"]
    with pytest.raises(RuntimeError, match="did not start within 1s") as info:
        srv.start(timeout=1)
    assert "stuck before listening" in str(info.value)
    assert srv.proc is not None and srv.proc.poll() is not None  # killed, not left hanging


def test_jobs_of_a_killed_server_are_found_and_ended(make_server, gates) -> None:
    srv = make_server()
    batch = srv.client()
    gate = gates()
    queue, jd = setup(batch, gate.command(), vcpus=2)
    job_ids = [submit(batch, queue, jd) for _ in range(2)]
    for job_id in job_ids:
        wait_status(batch, job_id, "RUNNING")
    srv.stop(sig=signal.SIGKILL)
    # Job processes outlive their server by design (a restart adopts them)...
    survivors = procs.job_processes([srv.jobs_dir])
    assert len(survivors) >= 2, survivors
    # ...and the harness ends them, grandchildren included (each job is its own process group).
    killed = srv.reap()
    assert _groups(killed) >= _groups(survivors.values())  # (pids change: the gate loop forks `sleep`)
    assert procs.job_processes([srv.jobs_dir, srv.tmp_dir]) == {}


def test_job_processes_are_found_by_tmpdir_when_they_work_elsewhere(make_server) -> None:
    srv = make_server()
    batch = srv.client()
    queue, jd = setup(batch, ["sh", "-c", "cd / && exec sleep 600"])
    wait_status(batch, submit(batch, queue, jd), "RUNNING")
    srv.stop(sig=signal.SIGKILL)
    # Found by TMPDIR alone: its working directory is no longer the attempt dir.
    wait_for(lambda: any(" cwd /: sleep 600" in d for d in procs.job_processes([srv.tmp_dir]).values()),
             message="the job found by its TMPDIR")
    srv.reap()
    assert procs.job_processes([srv.tmp_dir]) == {}
