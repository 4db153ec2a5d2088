"""Finding and ending the job processes a test started, even after the server that started them is gone.

Job processes outlive a killed or stopped server by design (a restarted server adopts them), so a test that
stops its server would otherwise leave them running, re-parented to init, after its temp dir is deleted. They
are found through /proc by what every job of a test server has: a working directory (its attempt directory)
under the server's data dir, or the server's own TMPDIR, which the scheduler passes to every job (conftest.py
gives each test server one). Each is the leader of its own process group, so killing the group ends the
whole job, grandchildren included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

_DELETED = " (deleted)"


def _under(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root + "/") for root in roots)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a process, None when it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[2])


def _tmpdir(pid: int) -> str:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return ""
    for item in environ.split(b"\0"):
        if item.startswith(b"TMPDIR="):
            return item[len("TMPDIR=") :].decode(errors="replace")
    return ""


def job_processes(roots: Iterable[Path]) -> dict[int, str]:
    """Live processes (not zombies) working in, or with TMPDIR in, one of `roots`: pid -> a description."""
    wanted = [str(Path(r).resolve()) for r in roots]
    found: dict[int, str] = {}
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd").removesuffix(_DELETED)
        except OSError:
            cwd = ""
        tmpdir = _tmpdir(pid)
        if not (_under(cwd, wanted) or _under(tmpdir, wanted)):
            continue
        stat = _stat(pid)
        if stat is None or stat[0] == "Z":
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            cmdline = "?"
        found[pid] = f"pid {pid} pgid {stat[1]} cwd {cwd or '?'}: {cmdline.strip()[:200]}"
    return found


def kill_job_processes(roots: Iterable[Path], timeout: float = 30.0) -> list[str]:
    """SIGKILL the process groups of job_processes(roots) until none is left; returns what was found."""
    roots = list(roots)
    own_group = os.getpgid(0)
    killed: list[str] = []
    deadline = time.monotonic() + timeout
    while found := job_processes(roots):
        killed += [d for d in found.values() if d not in killed]
        for pid in found:
            stat = _stat(pid)
            if stat is None:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if stat[1] > 1 and stat[1] != own_group:
                    os.killpg(stat[1], signal.SIGKILL)
                else:  # not a job's own group (never kill ours): the process alone
                    os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise AssertionError(f"job processes survive SIGKILL: {sorted(found.values())}")
        time.sleep(0.05)
    return killed
