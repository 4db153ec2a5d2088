"""The embedded executor: each attempt is a local process group; its stdout and stderr go to two files.

Layout of one attempt: its working directory (`logstreams.attempt_dir`, under the jobs root and its account)
holds `held`, `started` and `exit_code`; `exit_code` is written by a tiny `sh` wrapper when the command ends, so
the status survives a batchd restart (a restarted server is no longer the parent and cannot `waitpid` the job).
Its output (`logstreams.output_path`, in the server's data dir) is `<attempt>.stdout.log` and
`<attempt>.stderr.log`, which the job writes straight to, and their timestamp sidecars, kept by the
`OutputWatcher` thread. Every file of the working directory is the job's to replace: batchd reads them without following symlinks or waiting on FIFOs
(`logfiles.read_small_file`) and creates its own there only with O_EXCL | O_NOFOLLOW.

Process model: the wrapper is started with `start_new_session=True`, so it leads a new session and process group
(pgid == its pid) that every child of the job inherits. TerminateJob signals the whole group. When the wrapper
ends, whatever is left in the group is SIGKILLed, as a container runtime kills everything when PID 1 exits.

No thread per job: exits are watched with a pidfd registered on the event loop (works for adopted processes
that are not our children, too); our own children are reaped with `waitpid(WNOHANG)` as soon as they exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import pwd
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchd.domain import logstreams
from batchd.executors.base import AttemptExit, ExecutorStartError, LaunchSpec
from batchd.executors.logwatch import OutputFile, OutputWatcher
from batchd.store.logfiles import open_regular, read_small_file

log = logging.getLogger("batchd.executor.local")

EXIT_CODE_FILE = "exit_code"
UNKNOWN_EXIT_REASON = (
    "The job's process ended while batchd was not its parent (e.g. across a batchd restart) and without "
    "recording an exit status; the exit status is unknown"
)
# How long terminate() waits for the group to die after SIGKILL before giving up (uninterruptible sleep).
_KILL_WAIT_SECONDS = 10.0
_POLL_SECONDS = 0.1  # only used where pidfd_open is unavailable (Linux < 5.3)

# The wrapper. `trap : TERM` installs a *handler* (not '' = ignore, which children would inherit), so the wrapper
# survives a SIGTERM sent to the group long enough to record how the command ended; POSIX defers the trap until
# the foreground command has finished. The wrapper's own stderr goes to /dev/null so that its job-status noise
# ("Terminated") stays out of the job's log; the command's stderr is the saved fd 3. The subshell `( ... )`
# keeps the redirection out of the wrapper (dash otherwise prints "Terminated" into the redirected fd 2); dash
# execs the last command of a subshell directly, so there is no extra process. Exec failures give 127/126 with
# the shell's message in stderr.log. The record needs no tmp+rename: it is a single write(2) of a few bytes, and
# batchd only reads it after the wrapper has exited (an empty file reads as "not recorded"). It is opened `1<>`
# (read-write, no truncation): a FIFO the job left in its place then takes the write instead of blocking the
# wrapper for good, and only its first line counts, so leftovers of a longer file the job wrote do not either.
# `unset PWD` (left out when the job's environment sets PWD itself): dash exports PWD, and the job's
# environment must be exactly the one the scheduler passed.
#
# Held start: the wrapper first reads one line from its stdin, a pipe whose other end only batchd holds. batchd
# writes the line once the attempt's handle is committed (release()); if batchd dies before that, the pipe
# closes, `read` sees end-of-file and the wrapper exits (86) without running anything. `started` is created just
# before the command runs; `held` (created by batchd before spawning) says the attempt used this protocol, so an
# attempt directory with `held` and without `started` proves the command never ran.
_WRAPPER = (
    'trap : TERM; {unset}IFS= read -r _go || exit 86; exec 0</dev/null; : > started; '
    'exec 3>&2 2>/dev/null; ( "$@" 2>&3 3>&- ); rc=$?; echo $rc 1<>exit_code; exit $rc'
)
HELD_FILE, STARTED_FILE = "held", "started"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


_BOOT_ID = _boot_id()


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a process, or None if there is no such process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(b")") + 2 :].split()
    try:
        return rest[0].decode(), int(rest[19])  # field 3 = state, field 22 = starttime
    except (IndexError, ValueError):
        return None


def _waitstatus_to_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by signal N -> 128+N, like a shell and like Docker


@dataclass
class _Watch:
    """One watched process: resolves to its raw wait status (None when it was not our child)."""

    pid: int
    start_time: int
    pgid: int
    future: asyncio.Future[int | None]
    loop: asyncio.AbstractEventLoop
    fd: int = -1
    output: list[OutputFile] = field(default_factory=list)


class LocalExecutor:
    """Runs each attempt as a process group on this host. `image` is recorded by the scheduler but not used.

    ExecutorStartError messages carry no "CannotStartContainerError:" prefix: the scheduler adds it.

    The environment is exactly `spec.environment`: the scheduler is expected to pass a base environment
    (PATH, HOME, LANG...) plus the job's variables and AWS_BATCH_*; without PATH the wrapper shell's default
    search path applies.
    """

    name = "local"

    def __init__(self, jobs_root: Path, output_root: Path | None = None, run_as_user: str | None = None,
                 legacy_root: Path | None = None) -> None:
        self.jobs_root = Path(jobs_root).absolute()  # handles must stay valid whatever the cwd
        root = self.jobs_root
        self.output_root = Path(output_root).absolute() if output_root else root.with_name(root.name + "-output")
        self.legacy_root = legacy_root  # the data dir whose `jobs/` held attempts of older versions
        self.run_as = pwd.getpwnam(run_as_user) if run_as_user else None
        # With run_as_user the job must be able to walk to its own directory (0711: through, not list).
        self._dir_mode = 0o711 if self.run_as else 0o700
        self.output_watcher = OutputWatcher()
        self._watches: dict[int, _Watch] = {}
        # Popen objects of our children, kept referenced so that subprocess's own reaper never sees them.
        self._popens: dict[int, subprocess.Popen[bytes]] = {}
        self._gates: dict[int, Any] = {}  # pid -> the write end of a held attempt's stdin pipe

    # -- start -------------------------------------------------------------------------------------------

    def output_files(self, job_id: str, attempt: int) -> list[OutputFile]:
        """(output file, sidecar) of the attempt's stdout and stderr."""
        out = logstreams.output_dir(self.output_root, job_id)
        return [(out / f"{attempt}.{source}.log", out / f"{attempt}.{source}.idx") for source in logstreams.SOURCES]

    def _prepare(self, spec: LaunchSpec, output: list[OutputFile]) -> tuple[Path, list[int]]:
        """The attempt's working directory and its stdout and stderr fds (opened O_APPEND, not inheritable)."""
        workdir = logstreams.attempt_dir(self.jobs_root, spec.account, spec.job_id, spec.attempt)
        _make_dirs(workdir.parent, self._dir_mode)
        if not _make_dirs(workdir, 0o700):
            for leftover in (EXIT_CODE_FILE, STARTED_FILE, HELD_FILE):  # a re-run of the same attempt
                with contextlib.suppress(FileNotFoundError):
                    (workdir / leftover).unlink()
        if self.run_as is not None:
            os.chown(workdir, self.run_as.pw_uid, self.run_as.pw_gid)
        _create_private(workdir / HELD_FILE, b"")
        _make_dirs(output[0][0].parent, 0o700)
        fds: list[int] = []
        try:
            for path, _ in output:
                fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
                if fd is None:
                    raise FileNotFoundError(errno.ENOENT, f"cannot create {path}")
                fds.append(fd)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return workdir, fds

    async def start(self, spec: LaunchSpec) -> dict[str, Any]:
        if not spec.command:
            raise ExecutorStartError("the job has no command to run")
        output = self.output_files(spec.job_id, spec.attempt)
        try:
            workdir, (out_fd, err_fd) = self._prepare(spec, output)
        except OSError as exc:
            raise ExecutorStartError(f"cannot prepare the attempt's directories: {exc}") from exc
        script = _WRAPPER.format(unset="" if "PWD" in spec.environment else "unset PWD; ")
        user = {}
        if self.run_as is not None:
            user = {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": []}
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", script, "batchd", *spec.command],
                stdin=subprocess.PIPE,  # the gate (see _WRAPPER); the command itself gets /dev/null
                stdout=out_fd,
                stderr=err_fd,
                cwd=workdir,
                env=spec.environment,
                start_new_session=True,  # own session and process group: killpg reaches the whole job
                close_fds=True,
                **user,
            )
        except (OSError, ValueError) as exc:  # ValueError: NUL bytes or '=' in an environment name
            raise ExecutorStartError(f"cannot start /bin/sh for the job: {exc}") from exc
        finally:
            os.close(out_fd)
            os.close(err_fd)
        self.output_watcher.watch(output)
        started_at = int(time.time() * 1000)
        stat = _proc_stat(proc.pid)  # a zombie still has its stat until we reap it, so this cannot miss
        start_time = stat[1] if stat else 0
        self._popens[proc.pid] = proc
        self._gates[proc.pid] = proc.stdin
        self._watch(proc.pid, start_time, proc.pid, output)
        handle = {
            "executor": self.name,
            "pid": proc.pid,
            "pgid": proc.pid,
            "startTime": start_time,
            "bootId": _BOOT_ID,
            "dir": str(workdir),
            "output": [str(path) for path, _ in output],
            "startedAt": started_at,
            "image": spec.extra.get("image"),
        }
        if not spec.held:
            self.release(handle)
        return handle

    def release(self, handle: dict[str, Any], run: bool = True) -> None:
        gate = self._gates.pop(int(handle["pid"]), None)
        if gate is None:
            return
        with contextlib.suppress(OSError):  # the wrapper is gone already (e.g. terminated while held)
            if run:
                gate.write(b"go\n")
            gate.close()

    def never_ran(self, job_id: str, attempt: int, account: str | None = None) -> bool:
        # start() creates, in this order: the directory, `held`, the output files, then spawns; the wrapper
        # creates `started` after its release. Without `held`, an `output.log` means a spawn from before held
        # starts (only attempts of old versions lack `held`).
        workdir = self._find_attempt_dir(job_id, attempt, account)
        if workdir is None:
            return True
        if os.path.lexists(workdir / STARTED_FILE):
            return False
        return os.path.lexists(workdir / HELD_FILE) or not os.path.lexists(workdir / logstreams.LEGACY_OUTPUT)

    def _find_attempt_dir(self, job_id: str, attempt: int, account: str | None) -> Path | None:
        if account is not None:
            candidates = [logstreams.attempt_dir(self.jobs_root, account, job_id, attempt)]
        else:  # job ids are unique across accounts
            name = logstreams.attempt_dir(self.jobs_root, "_", job_id, attempt).relative_to(self.jobs_root / "_")
            candidates = list(self.jobs_root.glob(f"*/{name}"))
        if self.legacy_root is not None:
            candidates.append(logstreams.legacy_attempt_dir(self.legacy_root, job_id, attempt))
        return next((c for c in candidates if c.is_dir() and not c.is_symlink()), None)

    # -- wait ----------------------------------------------------------------------------------------------

    async def wait(self, handle: dict[str, Any]) -> AttemptExit:
        watch = self._adopt(handle)
        status = watch.future.result() if watch.future.done() else await asyncio.shield(watch.future)
        return self._exit_of(handle, status)

    def _exit_of(self, handle: dict[str, Any], status: int | None) -> AttemptExit:
        # The wrapper's record wins: it is the command's status even when the wrapper was not our child.
        code = _read_exit_code(Path(handle["dir"]))
        if code is not None:
            return AttemptExit(code)
        if status is not None:
            return AttemptExit(_waitstatus_to_code(status))
        return AttemptExit(None, UNKNOWN_EXIT_REASON)

    # -- terminate -----------------------------------------------------------------------------------------

    async def terminate(self, handle: dict[str, Any], grace_seconds: float) -> None:
        """SIGTERM the group, SIGKILL it after the grace; returns once no process of the group runs."""
        pgid = int(handle["pgid"])
        watch = self._adopt(handle)
        if watch.future.done():
            # The wrapper is gone; leftovers of its group (if batchd was down when it ended) are still ours.
            self._kill_leftovers(pgid, watch.start_time)
            await _wait_group_gone(pgid, _KILL_WAIT_SECONDS)
            return
        deadline = time.monotonic() + max(0.0, grace_seconds)
        if _killpg(pgid, signal.SIGTERM):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(watch.future), timeout=max(0.0, grace_seconds))
            # The wrapper ended (its watch SIGKILLed any leftovers) or the grace expired.
            if watch.future.done() and await _wait_group_gone(pgid, deadline - time.monotonic()):
                return
            _killpg(pgid, signal.SIGKILL)
        try:
            await asyncio.wait_for(asyncio.shield(watch.future), timeout=_KILL_WAIT_SECONDS)
        except TimeoutError:
            log.warning("process group %s still present %.0fs after SIGKILL", pgid, _KILL_WAIT_SECONDS)
            return
        # SIGKILL also hit the wrapper before it could record anything: record 137 for a restarted server.
        workdir = Path(handle["dir"])
        if _read_exit_code(workdir) is None:
            with contextlib.suppress(OSError):
                tmp = workdir / (EXIT_CODE_FILE + ".tmp")
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()  # whatever the job put there: never write through its symlink
                _create_private(tmp, f"{128 + signal.SIGKILL}\n".encode())
                tmp.replace(workdir / EXIT_CODE_FILE)
        # Killed grandchildren are reaped by init, not by us: wait until none of them runs any more.
        await _wait_group_gone(pgid, _KILL_WAIT_SECONDS)

    # -- is_alive ------------------------------------------------------------------------------------------

    def is_alive(self, handle: dict[str, Any]) -> bool:
        if handle.get("bootId") and _BOOT_ID and handle["bootId"] != _BOOT_ID:
            return False  # the host rebooted: start times restarted from zero
        stat = _proc_stat(int(handle["pid"]))
        return stat is not None and stat[0] != "Z" and stat[1] == int(handle.get("startTime", -1))

    # -- watching ----------------------------------------------------------------------------------------

    def _adopt(self, handle: dict[str, Any]) -> _Watch:
        """The watch of the handle's wrapper process, started if needed (already done if it has ended)."""
        pid, start_time, pgid = int(handle["pid"]), int(handle.get("startTime", -1)), int(handle["pgid"])
        loop = asyncio.get_running_loop()
        watch = self._watches.get(pid)
        if watch is not None and watch.start_time == start_time:
            if watch.future.done() or watch.loop is loop:
                return watch
            # A watch made on another, finished event loop: start over on this one.
            if watch.fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(watch.fd)
            del self._watches[pid]
        output = self._output_of(handle)
        if not self.is_alive(handle):
            watch = _Watch(pid, start_time, pgid, loop.create_future(), loop)
            watch.future.set_result(self._reap_if_child(pid, start_time))
            self.output_watcher.unwatch(output)  # stamps what it wrote while no server ran
            return watch
        self.output_watcher.watch(output)
        return self._watch(pid, start_time, pgid, output)

    def _output_of(self, handle: dict[str, Any]) -> list[OutputFile]:
        out = handle.get("output")
        if not isinstance(out, list) or not all(isinstance(p, str) and p.endswith(".log") for p in out):
            return []  # an attempt of an older version: its output.log is stamped when read
        return [(Path(p), Path(p[: -len(".log")] + ".idx")) for p in out]

    def _watch(self, pid: int, start_time: int, pgid: int, output: list[OutputFile] | None = None) -> _Watch:
        loop = asyncio.get_running_loop()
        watch = _Watch(pid, start_time, pgid, loop.create_future(), loop, output=output or [])
        self._prune()
        try:
            watch.fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._finish(watch)
            return watch
        except (AttributeError, OSError):  # no pidfd (old kernel): poll instead
            self._watches[pid] = watch
            loop.create_task(self._poll(watch))
            return watch
        # The pidfd pins the process: if the start time still matches now, we watch the right one.
        stat = _proc_stat(pid)
        if stat is None or stat[1] != start_time:
            os.close(watch.fd)
            watch.fd = -1
            self._finish(watch)
            return watch
        self._watches[pid] = watch
        loop.add_reader(watch.fd, self._on_exit, watch)
        return watch

    def _prune(self) -> None:
        # Finished watches are kept so that a late wait() still gets the waitpid status; bound their number.
        if len(self._watches) < 4096:
            return
        for pid in [pid for pid, w in self._watches.items() if w.future.done()][:2048]:
            del self._watches[pid]

    async def _poll(self, watch: _Watch) -> None:
        while True:
            stat = _proc_stat(watch.pid)
            if stat is None or stat[0] == "Z" or stat[1] != watch.start_time:
                self._finish(watch)
                return
            await asyncio.sleep(_POLL_SECONDS)

    def _on_exit(self, watch: _Watch) -> None:
        watch.loop.remove_reader(watch.fd)
        os.close(watch.fd)
        watch.fd = -1
        self._finish(watch)

    def _finish(self, watch: _Watch) -> None:
        gate = self._gates.pop(watch.pid, None)
        if gate is not None:  # ended while held (terminated): nothing to release any more
            with contextlib.suppress(OSError):
                gate.close()
        status = self._reap_if_child(watch.pid, watch.start_time)
        # Like a container whose PID 1 exited: nothing of the job outlives its main process.
        self._kill_leftovers(watch.pgid, watch.start_time)
        self.output_watcher.unwatch(watch.output)
        if not watch.future.done():
            watch.future.set_result(status)

    def _reap_if_child(self, pid: int, start_time: int) -> int | None:
        """Reap our exited child and return its wait status; None if it is not ours (or not this process)."""
        stat = _proc_stat(pid)
        if stat is None or stat[1] != start_time:
            if stat is None:
                self._popens.pop(pid, None)
            return None  # gone, or the pid now belongs to another process: never waitpid that one
        try:
            wpid, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if wpid != pid:
            return None
        popen = self._popens.pop(pid, None)
        if popen is not None:
            popen.returncode = os.waitstatus_to_exitcode(status)  # keeps Popen.__del__ quiet
        return status

    def _kill_leftovers(self, pgid: int, start_time: int) -> None:
        # A pgid stays reserved while its group has members, so a live process whose pid equals the pgid is
        # either our wrapper or, once the group emptied, an unrelated process that reused the number: never
        # signal the latter's group.
        stat = _proc_stat(pgid)
        if stat is not None and stat[1] != start_time:
            return
        _killpg(pgid, signal.SIGKILL)


def _killpg(pgid: int, sig: int) -> bool:
    """Signal a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("no permission to signal process group %s", pgid)
        return False
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return False
        raise
    return True


def _group_has_live_member(pgid: int) -> bool:
    """Is any non-zombie process in the group? (Killed members stay zombies until their reaper, often init,
    gets to them; on some hosts that takes a second or two, and they no longer run.)"""
    if not _killpg(pgid, 0):
        return False
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                data = Path(entry.path, "stat").read_bytes()
            except OSError:
                continue
            rest = data[data.rfind(b")") + 2 :].split()
            if len(rest) > 2 and rest[2] == str(pgid).encode() and rest[0] != b"Z":
                return True
    return False


async def _wait_group_gone(pgid: int, timeout: float) -> bool:
    """Poll until no process of the group runs any more; False if one still does at the timeout."""
    deadline = time.monotonic() + max(0.0, timeout)
    delay = 0.005
    while _group_has_live_member(pgid):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def _read_exit_code(workdir: Path) -> int | None:
    # The job may have replaced the file by a FIFO or a symlink: read_small_file neither waits nor follows.
    data = read_small_file(workdir / EXIT_CODE_FILE, 32)
    text = data.split(b"\n", 1)[0].strip() if data else b""
    return int(text) if text.isdigit() and len(text) <= 3 else None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import, before any thread runs


def _make_dirs(path: Path, mode: int) -> bool:
    """Create `path` and missing parents with `mode` (pathlib gives parents the default mode); False if it
    existed already."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return False
    except FileNotFoundError:
        _make_dirs(path.parent, mode)
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            return False
    if mode & _UMASK:
        os.chmod(path, mode)  # the umask took bits away
    return True


def _create_private(path: Path, data: bytes) -> None:
    """Create a new file (never an existing one, never through a symlink) holding `data`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        if data:
            os.write(fd, data)
    finally:
        os.close(fd)
