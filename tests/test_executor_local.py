"""The local executor with real processes (no server): exit codes, output, env, terminate, adoption, scale."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import pytest

from batchd.domain import logstreams
from batchd.executors.base import AttemptExit, LaunchSpec
from batchd.executors.local import UNKNOWN_EXIT_REASON, LocalExecutor

BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
ACCOUNT = "123456789012"


def spec(command: list[str], env: dict[str, str] | None = None, attempt: int = 1) -> LaunchSpec:
    job_id = str(uuid.uuid4())
    return LaunchSpec(
        job_id=job_id,
        attempt=attempt,
        command=command,
        environment={**BASE_ENV, **(env or {})},
        log_stream=logstreams.stream_name("jd", job_id, attempt),
        account=ACCOUNT,
    )


def run(coro):
    return asyncio.run(coro)


def group_gone(pgid: int, within: float = 0.0) -> bool:
    deadline = time.monotonic() + within
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def running(pid: int) -> bool:
    try:
        return ") Z " not in Path(f"/proc/{pid}/stat").read_text()  # a zombie waits for init, but is dead
    except FileNotFoundError:
        return False


async def start_and_wait(ex: LocalExecutor, s: LaunchSpec) -> tuple[dict, AttemptExit]:
    handle = await ex.start(s)
    return handle, await asyncio.wait_for(ex.wait(handle), 20)


def output(ex: LocalExecutor, s: LaunchSpec, source: str = logstreams.STDOUT) -> str:
    """What the attempt wrote to its stdout (or stderr)."""
    return logstreams.output_path(ex.output_root, s.job_id, s.attempt, source).read_text()


def errors(ex: LocalExecutor, s: LaunchSpec) -> str:
    return output(ex, s, logstreams.STDERR)


@pytest.fixture
def ex(tmp_path: Path) -> LocalExecutor:
    return LocalExecutor(tmp_path / "jobs")


def test_exit_zero_and_output(ex: LocalExecutor) -> None:
    s = spec(["sh", "-c", "echo one; echo two >&2; echo three"])
    handle, result = run(start_and_wait(ex, s))
    assert result == AttemptExit(0)
    assert output(ex, s) == "one\nthree\n" and errors(ex, s) == "two\n"  # stdout and stderr kept apart
    assert handle["executor"] == "local" and handle["pgid"] == handle["pid"]
    assert Path(handle["dir"]) == logstreams.attempt_dir(ex.jobs_root, ACCOUNT, s.job_id, 1)
    assert handle["output"] == [str(logstreams.output_path(ex.output_root, s.job_id, 1, src))
                                for src in logstreams.SOURCES]


def test_exit_code_three(ex: LocalExecutor) -> None:
    s = spec(["sh", "-c", "echo out; echo err >&2; exit 3"])
    _, result = run(start_and_wait(ex, s))
    assert result.exit_code == 3 and result.reason is None
    assert output(ex, s) == "out\n" and errors(ex, s) == "err\n"


def test_environment_is_exactly_the_spec_and_cwd_is_attempt_dir(ex: LocalExecutor) -> None:
    s = spec(
        ["sh", "-c", 'env | sort; echo "cwd=$(pwd -P)"'], env={"FOO": "bar baz", "AWS_BATCH_JOB_ATTEMPT": "1"}
    )
    handle, result = run(start_and_wait(ex, s))
    assert result.exit_code == 0
    lines = output(ex, s).splitlines()
    env_lines = sorted(line for line in lines if not line.startswith("cwd="))
    # The command's `sh` sets PWD itself; everything else is exactly what the scheduler passed.
    assert [x for x in env_lines if not x.startswith("PWD=")] == sorted(
        ["AWS_BATCH_JOB_ATTEMPT=1", "FOO=bar baz", f"PATH={BASE_ENV['PATH']}"]
    )
    assert f"cwd={Path(handle['dir']).resolve()}" in lines


def test_environment_not_inherited_from_batchd(ex: LocalExecutor) -> None:
    s = spec(["/usr/bin/env"], env={"ONLY": "1"})
    _, result = run(start_and_wait(ex, s))
    assert result.exit_code == 0
    assert sorted(output(ex, s).splitlines()) == sorted([f"PATH={BASE_ENV['PATH']}", "ONLY=1"])


def test_command_not_found_and_not_executable(ex: LocalExecutor, tmp_path: Path) -> None:
    s = spec(["no-such-command-xyz", "arg"])
    _, result = run(start_and_wait(ex, s))
    assert result.exit_code == 127
    assert "not found" in errors(ex, s)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    s2 = spec([str(plain)])
    _, result2 = run(start_and_wait(ex, s2))
    assert result2.exit_code == 126


async def wait_ready(handle: dict) -> None:
    """Until the job printed `ready` (its trap is in place; on a busy machine that can take a while)."""
    log = Path(handle["output"][0])
    for _ in range(6000):
        if "ready" in (log.read_text() if log.exists() else ""):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the job never printed 'ready' in {log}")


def test_terminate_ignoring_sigterm_is_killed_137(ex: LocalExecutor) -> None:
    s = spec(["sh", "-c", "trap '' TERM; echo ready; sleep 300"])

    async def scenario() -> tuple[dict, AttemptExit, float]:
        handle = await ex.start(s)
        await wait_ready(handle)
        t0 = time.monotonic()
        await ex.terminate(handle, 1.0)
        elapsed = time.monotonic() - t0
        return handle, await asyncio.wait_for(ex.wait(handle), 60), elapsed

    handle, result, elapsed = run(scenario())
    assert result.exit_code == 137
    print(f"terminate, SIGTERM ignored, grace 1 s: {elapsed:.3f}s")
    assert elapsed >= 0.9  # SIGKILL came after the grace period, not before (a lower bound: load only adds)
    assert group_gone(handle["pgid"], within=60.0)  # zombies wait for init to reap them
    assert not ex.is_alive(handle)
    # Recorded for a restarted server as well.
    assert (Path(handle["dir"]) / "exit_code").read_text().strip() == "137"


def test_terminate_cooperative_is_143(ex: LocalExecutor) -> None:
    s = spec(["sh", "-c", "echo ready; exec sleep 300"])

    async def scenario() -> tuple[dict, AttemptExit]:
        handle = await ex.start(s)
        await wait_ready(handle)
        # An hour of grace: terminate() returning at all shows that it did not wait for the grace period once
        # the job had stopped on SIGTERM.
        await asyncio.wait_for(ex.terminate(handle, 3600.0), 60)
        return handle, await asyncio.wait_for(ex.wait(handle), 60)

    handle, result = run(scenario())
    assert result.exit_code == 143
    assert group_gone(handle["pgid"], within=60.0)  # zombies wait for init to reap them
    assert "Terminated" not in output(ex, s)  # the wrapper's own job-status noise stays out of the log


def test_terminate_kills_background_grandchild(ex: LocalExecutor, tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    s = spec(["sh", "-c", f"trap '' TERM; sh -c 'trap \"\" TERM; sleep 301' & echo $! > {pidfile}; wait"])

    async def scenario() -> tuple[dict, AttemptExit]:
        handle = await ex.start(s)
        for _ in range(100):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            await asyncio.sleep(0.02)
        await ex.terminate(handle, 0.5)
        return handle, await ex.wait(handle)

    handle, result = run(scenario())
    assert result.exit_code == 137
    assert not running(int(pidfile.read_text()))  # terminate returns once nothing of the group runs
    assert group_gone(handle["pgid"], within=5.0)  # zombies wait for init to reap them


def test_leftover_background_process_killed_when_main_exits(ex: LocalExecutor, tmp_path: Path) -> None:
    # Like a container whose PID 1 exited: stragglers do not outlive the job.
    pidfile = tmp_path / "bg.pid"
    s = spec(["sh", "-c", f"sleep 302 & echo $! > {pidfile}; exit 0"])
    handle, result = run(start_and_wait(ex, s))
    assert result.exit_code == 0
    # Killed right away; reaping the killed straggler is up to init, hence the short wait.
    assert group_gone(handle["pgid"], within=60.0)


def test_adopt_after_restart_gets_exit_code(tmp_path: Path) -> None:
    root = tmp_path / "jobs"
    gate = tmp_path / "gate"  # the job runs until the test has seen it alive
    s = spec(["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done; exit 5"])

    async def first() -> dict:
        return await LocalExecutor(root).start(s)  # this "server" then goes away without waiting

    handle = run(first())
    restarted = LocalExecutor(root)
    assert restarted.is_alive(handle)
    gate.touch()

    async def second() -> AttemptExit:
        return await asyncio.wait_for(restarted.wait(handle), 60)

    assert run(second()) == AttemptExit(5)
    assert (Path(handle["dir"]) / "exit_code").read_text().strip() == "5"
    # Waiting again on an attempt that already ended gives the same answer immediately.
    assert run(LocalExecutor(root).wait(handle)) == AttemptExit(5)


def test_adopted_attempt_can_be_terminated(tmp_path: Path) -> None:
    root = tmp_path / "jobs"
    s = spec(["sh", "-c", "trap '' TERM; echo ready; sleep 300"])
    handle = run(LocalExecutor(root).start(s))
    restarted = LocalExecutor(root)
    # Only once the trap is in place does the job ignore SIGTERM (on a busy machine that can take a while).
    log = Path(handle["output"][0])
    deadline = time.monotonic() + 10
    while "ready" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.01)

    async def scenario() -> AttemptExit:
        await restarted.terminate(handle, 0.3)
        return await restarted.wait(handle)

    assert run(scenario()).exit_code == 137
    assert group_gone(handle["pgid"], within=5.0)  # zombies wait for init to reap them


def test_unknown_exit_when_not_recorded(tmp_path: Path) -> None:
    root = tmp_path / "jobs"
    s = spec(["true"])
    ex = LocalExecutor(root)
    handle, result = run(start_and_wait(ex, s))
    assert result.exit_code == 0
    (Path(handle["dir"]) / "exit_code").unlink()  # as if the wrapper had been SIGKILLed while batchd was down
    late = run(LocalExecutor(root).wait(handle))
    assert late.exit_code is None and late.reason == UNKNOWN_EXIT_REASON


def test_is_alive_dead_pid_and_reused_pid(ex: LocalExecutor) -> None:
    async def scenario() -> dict:
        handle = await ex.start(spec(["sleep", "30"]))
        assert ex.is_alive(handle)
        # Same pid, different start time: the pid was reused by another process.
        assert not ex.is_alive({**handle, "startTime": handle["startTime"] + 1})
        assert not ex.is_alive({**handle, "bootId": "another-boot"})
        await ex.terminate(handle, 1)
        await ex.wait(handle)
        return handle

    handle = run(scenario())
    assert not ex.is_alive(handle)
    assert not ex.is_alive({**handle, "pid": 2**22 + 12345, "pgid": 2**22 + 12345})


def test_wait_for_reused_pid_does_not_wait_for_the_stranger(ex: LocalExecutor) -> None:
    # The handle's pid now belongs to another process (here: our own pid): wait must not block on it.
    async def scenario() -> AttemptExit:
        s = spec(["true"])
        handle = await ex.start(s)
        await ex.wait(handle)
        fake = {**handle, "pid": os.getpid(), "pgid": os.getpid(), "startTime": 1}
        return await asyncio.wait_for(LocalExecutor(ex.jobs_root).wait(fake), 2)

    assert run(scenario()).exit_code == 0  # the exit_code file of that attempt dir


def test_200_concurrent_trivial_jobs(ex: LocalExecutor) -> None:
    async def scenario() -> tuple[list[AttemptExit], float]:
        t0 = time.monotonic()
        handles = await asyncio.gather(*(ex.start(spec(["true"])) for _ in range(200)))
        results = await asyncio.gather(*(ex.wait(h) for h in handles))
        return results, time.monotonic() - t0

    results, elapsed = run(scenario())
    assert all(r.exit_code == 0 for r in results)
    print(f"200 concurrent `true` jobs: {elapsed:.3f}s")  # a figure, not a test: wall time depends on load


def test_terminate_already_finished_is_noop(ex: LocalExecutor) -> None:
    async def scenario() -> AttemptExit:
        handle = await ex.start(spec(["sh", "-c", "exit 2"]))
        await ex.wait(handle)
        await ex.terminate(handle, 1)
        return await ex.wait(handle)

    assert run(scenario()).exit_code == 2


def test_start_errors(ex: LocalExecutor) -> None:
    from batchd.executors.base import ExecutorStartError

    with pytest.raises(ExecutorStartError):
        run(ex.start(spec([])))
    with pytest.raises(ExecutorStartError):
        run(ex.start(spec(["true"], env={"BAD\0NAME": "x"})))


# --- held starts (the scheduler records the handle before the command may run) --------------------------------


def test_held_attempt_runs_only_when_released(ex: LocalExecutor, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    s = spec(["sh", "-c", f"echo run >> {marker}; echo hello"])
    s.held = True

    async def go() -> tuple[dict, AttemptExit]:
        handle = await ex.start(s)
        # Held: the wrapper is blocked reading its gate, which comes before the command in the script.
        for _ in range(6000):
            if Path(f"/proc/{handle['pid']}/wchan").read_text().endswith("pipe_read"):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the held wrapper never blocked on its gate")
        assert not marker.exists() and running(handle["pid"])  # held: the command has not started
        assert ex.never_ran(s.job_id, s.attempt)
        ex.release(handle)
        return handle, await asyncio.wait_for(ex.wait(handle), 20)

    _, result = run(go())
    assert result == AttemptExit(0)
    assert marker.read_text() == "run\n" and output(ex, s) == "hello\n"
    assert not ex.never_ran(s.job_id, s.attempt)  # it started: a restart must not run it again


def test_held_attempt_never_runs_when_not_released(ex: LocalExecutor, tmp_path: Path) -> None:
    """release(run=False), or the pipe closing because batchd died, ends the wrapper before the command."""
    marker = tmp_path / "ran"
    s = spec(["sh", "-c", f"echo run >> {marker}"])
    s.held = True

    async def go() -> AttemptExit:
        handle = await ex.start(s)
        ex.release(handle, run=False)
        return await asyncio.wait_for(ex.wait(handle), 20)

    result = run(go())
    assert result.exit_code == 86 and not marker.exists()
    assert ex.never_ran(s.job_id, s.attempt)


def test_held_attempt_of_a_dead_batchd_never_runs(tmp_path: Path) -> None:
    """The gate's write end lives only in the batchd process: when that process dies, the wrapper sees
    end-of-file and exits without running the command."""
    marker = tmp_path / "ran"
    jobs_root = tmp_path / "jobs"
    job_id = str(uuid.uuid4())
    code = (
        "import asyncio, os, sys\n"
        "from batchd.executors.base import LaunchSpec\n"
        "from batchd.executors.local import LocalExecutor\n"
        f"s = LaunchSpec(job_id={job_id!r}, attempt=1, command=['sh', '-c', 'echo run >> {marker}'],\n"
        "               environment={'PATH': '/usr/bin:/bin'}, log_stream='x', held=True)\n"
        f"h = asyncio.run(LocalExecutor({str(jobs_root)!r}).start(s))\n"
        "print(h['pid'], flush=True)\n"
        "os._exit(0)  # dies without releasing, as a SIGKILLed batchd would\n"
    )
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    pid = int(proc.stdout.strip())
    deadline = time.monotonic() + 10
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not running(pid)
    assert not marker.exists()
    assert LocalExecutor(jobs_root).never_ran(job_id, 1)


def test_never_ran_reads_the_attempt_directory(ex: LocalExecutor) -> None:
    """Which leftovers of a crash prove that the command never ran (see LocalExecutor.start's order)."""
    job_id = str(uuid.uuid4())
    workdir = logstreams.attempt_dir(ex.jobs_root, ACCOUNT, job_id, 1)
    assert ex.never_ran(job_id, 1)  # nothing was even created
    workdir.mkdir(parents=True)
    assert ex.never_ran(job_id, 1)  # stopped right after creating the directory
    (workdir / "output.log").touch()
    assert not ex.never_ran(job_id, 1)  # a spawn from before held starts: it may have run
    assert not ex.never_ran(job_id, 1, ACCOUNT)
    (workdir / "held").touch()
    assert ex.never_ran(job_id, 1)  # held, never released
    (workdir / "started").touch()
    assert not ex.never_ran(job_id, 1)  # released: the command started


# --- files of the working directory are the job's: never waited on, never followed ---------------------------


def test_job_that_replaces_exit_code_by_a_fifo_still_ends_with_its_status(ex: LocalExecutor) -> None:
    """The wrapper opens `exit_code` read-write (a FIFO takes the write), and batchd refuses to read a FIFO:
    the status comes from waitpid, and the job cannot hang its own wrapper."""
    s = spec(["sh", "-c", "rm -f exit_code; mkfifo exit_code; exit 3"])
    _, result = run(start_and_wait(ex, s))
    assert result == AttemptExit(3)


def test_adopting_an_attempt_whose_exit_code_is_a_fifo_does_not_block(ex: LocalExecutor) -> None:
    import threading

    handle, result = run(start_and_wait(ex, spec(["sh", "-c", "exit 4"])))
    assert result == AttemptExit(4)
    fifo = Path(handle["dir"]) / "exit_code"
    fifo.unlink()
    os.mkfifo(fifo)  # as the job (or anyone of its uid) could have done
    answers: list[AttemptExit] = []
    reader = threading.Thread(target=lambda: answers.append(run(LocalExecutor(ex.jobs_root).wait(handle))),
                              daemon=True)
    reader.start()
    reader.join(20)
    if reader.is_alive():  # blocked in open(): give it a writer so that the thread can end, then fail
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        reader.join(5)
        pytest.fail("waiting on an adopted attempt blocked on the FIFO in place of its exit_code")
    assert answers == [AttemptExit(None, UNKNOWN_EXIT_REASON)]  # not our child, and no status to trust


def test_terminate_never_writes_through_a_symlink_the_job_planted(ex: LocalExecutor, tmp_path: Path) -> None:
    """After SIGKILL batchd records 137 via `exit_code.tmp`; a symlink the job put there is replaced, not
    followed (with run_as_user, following it would let a job have root overwrite any file)."""
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    s = spec(["sh", "-c", f"ln -s {target} exit_code.tmp; trap '' TERM; echo ready; sleep 300"])

    async def scenario() -> AttemptExit:
        handle = await ex.start(s)
        await wait_ready(handle)
        await ex.terminate(handle, 0.2)
        return await ex.wait(handle)

    assert run(scenario()).exit_code == 137
    assert target.read_text() == "keep me\n"
