"""Jobs are tenants: what a job does with its files cannot stall the server, reach another account's output or
the server's state, and its lines keep the time they were written. Real servers, real jobs, boto3 and the aws CLI.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, TEST_STORE
from jobkit import setup, submit, wait_status

GROUP = "/aws/batch/job"
# Read timeouts turn a hung server into a failure instead of a hung test.
NO_HANG = {"read_timeout": 10, "connect_timeout": 5}


class HealthWatch:
    """From a thread, GET /health every 50 ms with a 1 s timeout while the block runs; every miss is kept."""

    def __init__(self, url: str) -> None:
        self.url = url + "/health"
        self.misses: list[str] = []
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=1) as resp:
                    resp.read()
                self.answers += 1
            except OSError as exc:
                self.misses.append(repr(exc))
            self._stop.wait(0.05)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        assert not self.misses, f"/health did not answer within 1 s: {self.misses[:3]}"
        assert self.answers > 0


def _read_everything(srv, stream: str) -> list[str]:
    """GetLogEvents both ways, DescribeLogStreams and FilterLogEvents on `stream`; the messages seen."""
    logs = srv.client("logs", **NO_HANG)
    seen = []
    for head in (True, False):
        seen += [e["message"] for e in logs.get_log_events(logGroupName=GROUP, logStreamName=stream,
                                                           startFromHead=head)["events"]]
    described = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=stream)["logStreams"]
    assert [d["logStreamName"] for d in described] == [stream]
    logs.describe_log_streams(logGroupName=GROUP, orderBy="LastEventTime", descending=True)
    seen += [e["message"] for e in logs.filter_log_events(logGroupName=GROUP, logStreamNames=[stream])["events"]]
    seen += [e["message"] for e in logs.filter_log_events(logGroupName=GROUP)["events"]]
    return seen


# The job finds its own output files through its fds (they are not in its working directory) and puts a FIFO
# or a symlink in their place and in place of their sidecars (`output.log`/`output.idx`: older layouts).
_FIND_OUTPUT = ('out=$(readlink /proc/$$/fd/1); err=$(readlink /proc/$$/fd/2); d=$(dirname "$out"); '
                'echo visible; echo oops >&2; ')
HOSTILE = {
    "fifo": _FIND_OUTPUT + 'for f in "$out" "$err" "${out%log}idx" "${err%log}idx" "$d/output.idx"; '
                           'do rm -f "$f"; mkfifo "$f"; done; echo after',
    "symlink": _FIND_OUTPUT + 'for f in "$out" "$err"; do rm -f "$f"; ln -s {secret} "$f"; done',
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_job_replacing_its_output_by_a_fifo_or_symlink_never_stalls_the_server(make_server, tmp_path, kind):
    secret = tmp_path / "shadow"
    secret.write_text("root:TOPSECRET-HASH:19000:0:99999:7:::\n")
    secret.chmod(0o600)
    srv = make_server()
    batch = srv.client(**NO_HANG)
    queue, jd = setup(batch, ["sh", "-c", HOSTILE[kind].replace("{secret}", str(secret))])
    job = wait_status(batch, submit(batch, queue, jd), "SUCCEEDED")
    stream = job["container"]["logStreamName"]
    with HealthWatch(srv.url):
        seen = _read_everything(srv, stream)
    assert not any("TOPSECRET" in m for m in seen)  # the symlink is never followed
    assert "after" not in seen  # a FIFO is read as nothing: never waited on
    srv.restart()  # what the job left behind must not hurt a restarted server either
    with HealthWatch(srv.url):
        seen = _read_everything(srv, stream)
    assert not any("TOPSECRET" in m for m in seen)


def test_lines_are_stamped_when_written_and_stderr_is_kept_apart(make_server):
    srv = make_server()
    batch = srv.client()
    script = "echo one; sleep 2; echo two; printf out-a; printf 'ERR\\n' >&2; printf 'out-b\\n'"
    queue, jd = setup(batch, ["sh", "-c", script])
    job = wait_status(batch, submit(batch, queue, jd), "SUCCEEDED")
    out = srv.aws("logs", "get-log-events", "--log-group-name", GROUP, "--start-from-head",
                  "--log-stream-name", job["container"]["logStreamName"])
    events = out["events"]
    # stderr's line stays whole between two writes of one stdout line (one file each, merged by time).
    assert sorted(e["message"] for e in events) == ["ERR", "one", "out-aout-b", "two"]
    stamp = {e["message"]: e["timestamp"] for e in events}
    assert [e["message"] for e in events][:2] == ["one", "two"]
    assert 1700 <= stamp["two"] - stamp["one"] <= 2300, stamp  # the job's own `sleep 2`, to the millisecond
    assert stamp["ERR"] >= stamp["two"] and all(e["ingestionTime"] == e["timestamp"] for e in events)


# -- accounts ------------------------------------------------------------------------------------------------

TWO_ACCOUNTS = """
[[credentials]]
access_key_id = "AKIDALPHA"
secret_access_key = "alpha-secret-value"
account_id = "111111111111"

[[credentials]]
access_key_id = "AKIDBETA"
secret_access_key = "beta-secret-value"
account_id = "222222222222"
"""


def test_several_accounts_on_host_processes_need_an_acknowledgement(tmp_path):
    config = tmp_path / "two.toml"
    config.write_text(TWO_ACCOUNTS)
    proc = subprocess.run(
        [sys.executable, "-m", "batchd", "serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
         "--config", str(config)], capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "allow_shared_host_accounts = true" in lines[0], proc.stderr


def _two_account_server(make_server, extra: str = ""):
    srv = make_server(config="allow_shared_host_accounts = true\n" + extra + TWO_ACCOUNTS, start=False)
    assert srv.config_path is not None
    srv.config_path.chmod(0o600)  # as docs/authentication.md asks: the secrets are the server user's only
    srv.start()
    alpha = srv.client(key="AKIDALPHA", secret="alpha-secret-value")
    beta = srv.client(key="AKIDBETA", secret="beta-secret-value")
    return srv, alpha, beta


def _run(batch, script: str) -> dict:
    queue, jd = setup(batch, ["sh", "-c", script])
    return wait_status(batch, submit(batch, queue, jd), ("SUCCEEDED", "FAILED"))


def _output(srv, batch_key: tuple[str, str], job: dict) -> str:
    logs = srv.client("logs", key=batch_key[0], secret=batch_key[1])
    events = logs.get_log_events(logGroupName=GROUP, logStreamName=job["container"]["logStreamName"],
                                 startFromHead=True)["events"]
    return "\n".join(e["message"] for e in events)


def test_no_output_or_state_under_another_accounts_working_directory(make_server):
    """Same uid, so not everything is out of reach (docs/authentication.md); guaranteed: everything a job
    reaches from its working directory without leaving the jobs root — the path `../../<job>/1/output.log`
    that read another account's output before — holds no job output, no database and no config."""
    srv, alpha, beta = _two_account_server(make_server)
    job_a = _run(alpha, "echo SECRET-OF-ALPHA")
    assert job_a["status"] == "SUCCEEDED"
    probe = (f"cat ../../{job_a['jobId']}/1/output.log; "
             "find ../../.. -type f -exec cat {} + 2>&1; find ../../.. | sed 's/^/path: /'; true")
    job_b = _run(beta, probe)
    seen = _output(srv, ("AKIDBETA", "beta-secret-value"), job_b)
    assert "path: ../../../222222222222" in seen  # the probe did walk the jobs root
    for leaked in ("SECRET-OF-ALPHA", "alpha-secret-value", "SQLite format", "batchd.sqlite3", "stdout.log"):
        assert leaked not in seen, seen
    # Not guaranteed with one uid, and documented: account 111111111111's working directory (its scratch
    # files) is in reach too. Only run_as_user (below) or containers (later) separate those.


@pytest.mark.skipif(os.geteuid() != 0, reason="run_as_user needs batchd to run as root")
def test_run_as_user_keeps_jobs_out_of_the_servers_state_and_output(make_server):
    srv, alpha, beta = _two_account_server(make_server, 'run_as_user = "nobody"\n')
    job_a = _run(alpha, "echo SECRET-OF-ALPHA; id -u")
    assert job_a["status"] == "SUCCEEDED"
    assert _output(srv, ("AKIDALPHA", "alpha-secret-value"), job_a) == "SECRET-OF-ALPHA\n65534"
    output_a = srv.data_dir / "output" / job_a["jobId"] / "1.stdout.log"
    assert "SECRET-OF-ALPHA" in output_a.read_text()
    targets = [output_a, srv.data_dir / "batchd.sqlite3", srv.config_path, srv.data_dir]
    probe = "; ".join(f"cat {t} 2>&1 || ls {t} 2>&1" for t in targets) + "; touch mine && echo wrote-cwd; true"
    job_b = _run(beta, probe)
    seen = _output(srv, ("AKIDBETA", "beta-secret-value"), job_b)
    assert job_b["status"] == "SUCCEEDED" and "wrote-cwd" in seen  # its own working directory is its own
    assert "Permission denied" in seen
    for leaked in ("SECRET-OF-ALPHA", "alpha-secret-value", "SQLite format"):
        assert leaked not in seen, seen


# -- modes ------------------------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_state_is_private_and_working_dirs_are_outside_it(make_server):
    srv = make_server(start=False)
    srv.data_dir.mkdir(mode=0o755)  # a data dir of an older version, or made by hand
    srv.start()
    batch = srv.client()
    job = _run(batch, "echo hello; echo world >&2")
    assert job["status"] == "SUCCEEDED"
    data = srv.data_dir
    jobs_root = data.with_name(data.name + "-jobs")
    assert _mode(data) == 0o700
    private = ["server-id"] + (["batchd.lock", "batchd.sqlite3"] if TEST_STORE == "sqlite" else [])
    for name in private + ["batchd.sqlite3-wal", "batchd.sqlite3-shm"]:
        if (data / name).exists() or name in private:
            assert _mode(data / name) == 0o600, name
    output = data / "output" / job["jobId"]
    assert sorted(p.name for p in output.iterdir()) == ["1.stderr.idx", "1.stderr.log", "1.stdout.idx",
                                                        "1.stdout.log"]
    assert {_mode(p) for p in output.iterdir()} == {0o600}
    assert _mode(output) == _mode(data / "output") == 0o700
    workdir = jobs_root / "123456789012" / job["jobId"] / "1"
    assert job["container"].get("logStreamName") and workdir.is_dir()
    assert {_mode(p) for p in (jobs_root, workdir.parent.parent, workdir.parent, workdir)} == {0o700}
    assert data not in workdir.parents


def test_a_jobs_dir_inside_the_data_dir_is_refused(tmp_path):
    data = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "batchd", "serve", "--port", "0", "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60, cwd=REPO, env={**os.environ, "BATCHD_JOBS_DIR": str(data / "j")},
    )
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        f"batchd: jobs_dir {data / 'j'} must be outside the data dir {data} (and not contain it): "
        "jobs must not start inside the server's state"
    ]
