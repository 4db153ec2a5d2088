"""The CloudWatch Logs read API over job output: boto3 `logs` client and the aws CLI against a real server.

Job rows are written straight into the server's SQLite database and output files at the contract's paths, so
these tests do not depend on the scheduler.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from batchd.domain import logstreams
from batchd.store import jobs as jobs_store
from batchd.store import logfiles
from batchd.store.db import Database
from batchd.store.logfiles import LogFile

ACCOUNT = "123456789012"
GROUP = logstreams.LOG_GROUP


# -- helpers -------------------------------------------------------------------------------------------


def add_job(
    server,
    jd: str,
    attempts: int = 1,
    status: str = "RUNNING",
    region: str = "us-east-1",
    job_id: str | None = None,
) -> tuple[str, list[str]]:
    """Insert a job row whose runtime records `attempts` attempts; returns (job id, stream names by attempt)."""
    job_id = job_id or str(uuid.uuid4())
    streams = [logstreams.stream_name(jd, job_id, n) for n in range(1, attempts + 1)]
    now = int(time.time() * 1000)
    runtime = {
        "attempts": [
            {"container": {"logStreamName": s, "exitCode": 1}, "startedAt": now} for s in streams[:-1]
        ],
        "container": {"logStreamName": streams[-1]},
    }
    # Straight into the server's store (SQLite file or PostgreSQL database), as if the scheduler had run it.
    db = Database(server.db_url or f"sqlite:///{server.data_dir / 'batchd.sqlite3'}")
    with db.tx() as conn:
        jobs_store.insert_jobs(conn, [{
            "id": job_id, "account": ACCOUNT, "region": region,
            "queue_arn": f"arn:aws:batch:{region}:{ACCOUNT}:job-queue/logs-test-no-such-queue",
            "name": "logs-test", "status": status, "created_at": now, "started_at": now,
            "jd_arn": f"arn:aws:batch:{region}:{ACCOUNT}:job-definition/{jd}:3", "attempt": attempts,
            "spec": {"jobDefinition": jd}, "runtime": runtime,
        }])
    db.close()
    return job_id, streams


def out_path(server, job_id: str, attempt: int = 1, source: str = logstreams.STDOUT) -> Path:
    """Where the local executor puts an attempt's stdout (or stderr): the server's `<data dir>/output`."""
    path = logstreams.output_path(server.data_dir / "output", job_id, attempt, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def workdir(server, job_id: str, attempt: int = 1) -> Path:
    """The attempt's working directory (where the wrapper writes `exit_code`), under `<data dir>-jobs`."""
    path = logstreams.attempt_dir(server.data_dir.with_name(server.data_dir.name + "-jobs"), ACCOUNT, job_id,
                                  attempt)
    path.mkdir(parents=True, exist_ok=True)
    return path


def append(server, job_id: str, text: str, attempt: int = 1, mtime_ms: int | None = None) -> None:
    path = out_path(server, job_id, attempt)
    with open(path, "ab") as f:
        f.write(text.encode())
    if mtime_ms is not None:
        os.utime(path, ns=(mtime_ms * 1_000_000, mtime_ms * 1_000_000))


def messages(resp: dict) -> list[str]:
    return [e["message"] for e in resp["events"]]


def error_code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.response["Error"]["Code"]


@pytest.fixture
def logs(server):
    return server.client("logs")


# -- GetLogEvents --------------------------------------------------------------------------------------


def test_lines_in_order_and_follow_with_forward_token(server, logs, unique) -> None:
    job_id, [stream] = add_job(server, unique("jd"))
    append(server, job_id, "".join(f"line {i}\n" for i in range(5)))
    resp = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True)
    assert messages(resp) == [f"line {i}" for i in range(5)]
    stamps = [e["timestamp"] for e in resp["events"]]
    assert stamps == sorted(stamps) and all(e["ingestionTime"] == e["timestamp"] for e in resp["events"])
    token = resp["nextForwardToken"]
    assert token.startswith("f/") and resp["nextBackwardToken"].startswith("b/")

    again = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, nextToken=token)
    assert again["events"] == [] and again["nextForwardToken"] == token  # stable: paginators stop on it

    append(server, job_id, "line 5\nline 6\n")
    more = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, nextToken=token)
    assert messages(more) == ["line 5", "line 6"]
    assert more["events"][0]["timestamp"] >= stamps[-1]
    # The first read stamped the first lines: re-reading does not change their timestamps.
    first = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True)
    assert [e["timestamp"] for e in first["events"][:5]] == stamps


def test_partial_last_line_held_back_while_running(server, logs, unique) -> None:
    job_id, [stream] = add_job(server, unique("jd"))
    append(server, job_id, "done\nhalf a li")
    resp = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True)
    assert messages(resp) == ["done"]
    append(server, job_id, "ne\n")
    resp2 = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, nextToken=resp["nextForwardToken"])
    assert messages(resp2) == ["half a line"]
    # Once the attempt has ended (the wrapper's exit_code file), a last line without newline is shown.
    append(server, job_id, "no newline at the end")
    (workdir(server, job_id) / "exit_code").write_text("0\n")
    resp3 = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, nextToken=resp2["nextForwardToken"])
    assert messages(resp3) == ["no newline at the end"]


def test_default_returns_tail_and_backward_paging(server, logs, unique) -> None:
    job_id, [stream] = add_job(server, unique("jd"), status="SUCCEEDED")
    append(server, job_id, "".join(f"l{i}\n" for i in range(10)))
    tail = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, limit=3)
    assert messages(tail) == ["l7", "l8", "l9"]
    seen = messages(tail)
    token = tail["nextBackwardToken"]
    while True:
        page = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, limit=3, nextToken=token)
        if not page["events"]:
            assert page["nextBackwardToken"] == token  # stable at the start
            break
        seen = messages(page) + seen
        token = page["nextBackwardToken"]
    assert seen == [f"l{i}" for i in range(10)]
    # Forward again from a backward page.
    page = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, limit=3, nextToken=token)
    fwd = logs.get_log_events(
        logGroupName=GROUP, logStreamName=stream, limit=4, nextToken=page["nextForwardToken"]
    )
    assert messages(fwd) == ["l0", "l1", "l2", "l3"]


def test_start_from_head_forward_paging(server, logs, unique) -> None:
    job_id, [stream] = add_job(server, unique("jd"), status="SUCCEEDED")
    append(server, job_id, "".join(f"row {i}\n" for i in range(25)) + "\n")  # a blank line is an event too
    got, token = [], None
    for _ in range(20):
        kw = {"nextToken": token} if token else {"startFromHead": True}
        page = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, limit=7, **kw)
        if token == page["nextForwardToken"]:
            break
        got += messages(page)
        token = page["nextForwardToken"]
    assert got == [f"row {i}" for i in range(25)] + [""]


def test_time_range(server, logs, unique) -> None:
    job_id, [stream] = add_job(server, unique("jd"), status="SUCCEEDED")
    append(server, job_id, "early 1\nearly 2\n", mtime_ms=1_000_000)
    assert len(logs.get_log_events(logGroupName=GROUP, logStreamName=stream)["events"]) == 2  # stamps them
    append(server, job_id, "late 1\nlate 2\n", mtime_ms=2_000_000)
    both = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True)
    assert [e["timestamp"] for e in both["events"]] == [1_000_000, 1_000_000, 2_000_000, 2_000_000]
    late = logs.get_log_events(
        logGroupName=GROUP, logStreamName=stream, startTime=1_500_000, startFromHead=True
    )
    assert messages(late) == ["late 1", "late 2"]
    early = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, endTime=2_000_000)
    assert messages(early) == ["early 1", "early 2"]
    exact = logs.get_log_events(
        logGroupName=GROUP, logStreamName=stream, startTime=2_000_000, endTime=2_000_001
    )
    assert messages(exact) == ["late 1", "late 2"]


def test_aws_cli_get_log_events(server, unique) -> None:
    job_id, [stream] = add_job(server, unique("jd"), status="SUCCEEDED")
    append(server, job_id, "hello from the job\nerr line\n")
    out = server.aws("logs", "get-log-events", "--log-group-name", GROUP, "--log-stream-name", stream)
    assert [e["message"] for e in out["events"]] == ["hello from the job", "err line"]
    assert out["nextForwardToken"].startswith("f/")
    out2 = server.aws(
        "logs", "get-log-events", "--log-group-name", GROUP, "--log-stream-name", stream,
        "--start-from-head", "--limit", "1",
    )  # fmt: skip
    assert [e["message"] for e in out2["events"]] == ["hello from the job"]


def test_output_not_written_yet_is_empty(server, logs, unique) -> None:
    _, [stream] = add_job(server, unique("jd"), status="STARTING")
    resp = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True)
    assert resp["events"] == [] and resp["nextForwardToken"].startswith("f/")


def test_array_child_and_earlier_attempt_streams(server, logs, unique) -> None:
    parent = str(uuid.uuid4())
    child_id, streams = add_job(server, unique("jd"), attempts=2, status="SUCCEEDED", job_id=f"{parent}:3")
    assert streams[0].endswith(f"{parent}_3_1")
    append(server, child_id, "attempt one\n", attempt=1)
    append(server, child_id, "attempt two\n", attempt=2)
    assert messages(logs.get_log_events(logGroupName=GROUP, logStreamName=streams[0])) == ["attempt one"]
    assert messages(logs.get_log_events(logGroupName=GROUP, logStreamName=streams[1])) == ["attempt two"]


def test_not_found_errors(server, logs, unique) -> None:
    jd = unique("jd")
    job_id, [stream] = add_job(server, jd)
    with pytest.raises(ClientError) as exc:
        logs.get_log_events(logGroupName="/aws/lambda/other", logStreamName=stream)
    assert error_code(exc) == "ResourceNotFoundException"
    assert "log group does not exist" in str(exc.value)
    for bad in (
        logstreams.stream_name(jd, str(uuid.uuid4()), 1),  # unknown job
        logstreams.stream_name("another-jd", job_id, 1),  # wrong job definition name
        logstreams.stream_name(jd, job_id, 7),  # attempt that never ran
        "not-a-batch-stream",
    ):
        with pytest.raises(ClientError) as exc:
            logs.get_log_events(logGroupName=GROUP, logStreamName=bad)
        assert error_code(exc) == "ResourceNotFoundException", bad
        assert "log stream does not exist" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        logs.get_log_events(logGroupName=GROUP, logStreamName=stream, nextToken="garbage")
    assert error_code(exc) == "InvalidParameterException"
    err = server.aws("logs", "get-log-events", "--log-group-name", GROUP, "--log-stream-name", "x/default/y_1",
                     check=False)  # fmt: skip
    assert "ResourceNotFoundException" in err


def test_oversized_names_prefixes_and_digit_runs_are_400_naming_the_field(server, logs, unique) -> None:
    """Found by fuzzing: a 5,000-digit attempt (past Python's int-conversion limit) and LIKE patterns longer
    than SQLite accepts were 500s. Names and prefixes are bounded at CloudWatch's 512 characters."""
    job_id, [stream] = add_job(server, unique("jd"))
    digits = "7" * 5000
    calls = [
        ("logStreamName", lambda: logs.get_log_events(logGroupName=GROUP,
                                                      logStreamName=f"x/default/{job_id}_{digits}")),
        ("logStreamNamePrefix", lambda: logs.describe_log_streams(logGroupName=GROUP,
                                                                  logStreamNamePrefix="p" * 60_000)),
        ("logStreamNamePrefix", lambda: logs.describe_log_streams(
            logGroupName=GROUP, logStreamNamePrefix=f"x/default/{job_id}_{digits}")),
        ("logStreamNamePrefix", lambda: logs.filter_log_events(logGroupName=GROUP,
                                                               logStreamNamePrefix="%_" * 30_000)),
        ("logStreamNames", lambda: logs.filter_log_events(logGroupName=GROUP,
                                                          logStreamNames=[f"x/default/{job_id}_{digits}"])),
        ("logGroupName", lambda: logs.get_log_events(logGroupName="/" * 600, logStreamName=stream)),
    ]
    for field, call in calls:
        with pytest.raises(ClientError) as exc:
            call()
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, field
        assert error_code(exc) == "InvalidParameterException" and field in str(exc.value), (field, exc.value)
    # Within 512 characters, a digit run longer than any attempt or array index is simply not one of ours.
    with pytest.raises(ClientError) as exc:
        logs.get_log_events(logGroupName=GROUP, logStreamName=f"x/default/{job_id}_" + "9" * 400)
    assert error_code(exc) == "ResourceNotFoundException"
    assert logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix="j" * 300 + "/default/")[
        "logStreams"] == []


def test_a_token_that_inflates_past_a_megabyte_is_invalid(server, logs, unique) -> None:
    import base64
    import zlib

    bomb = base64.urlsafe_b64encode(zlib.compress(b'{"o": "LastEventTime", "n": 0' + b" " * 20_000_000 + b"}"))
    with pytest.raises(ClientError) as exc:
        logs.describe_log_streams(logGroupName=GROUP, orderBy="LastEventTime", nextToken=bomb.decode())
    assert error_code(exc) == "InvalidParameterException" and "nextToken" in str(exc.value)


def test_other_region_job_not_visible(server, unique) -> None:
    job_id, [stream] = add_job(server, unique("jd"), region="us-west-2", status="SUCCEEDED")
    append(server, job_id, "west\n")
    with pytest.raises(ClientError) as exc:
        server.client("logs").get_log_events(logGroupName=GROUP, logStreamName=stream)
    assert error_code(exc) == "ResourceNotFoundException"
    west = server.client("logs", region="us-west-2")
    assert messages(west.get_log_events(logGroupName=GROUP, logStreamName=stream)) == ["west"]


def test_log_group_identifier_arn(server, logs, unique) -> None:
    job_id, [stream] = add_job(server, unique("jd"), status="SUCCEEDED")
    append(server, job_id, "x\n")
    arn = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{GROUP}"
    assert messages(logs.get_log_events(logGroupIdentifier=arn, logStreamName=stream)) == ["x"]


def _bytes_read(server) -> int:
    """Bytes the server process has read with read(2) and the like so far (/proc/<pid>/io rchar)."""
    for line in Path(f"/proc/{server.proc.pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/<pid>/io")


def test_large_file_tail_is_read_by_offset(server, logs, unique) -> None:
    job_id, [stream] = add_job(server, unique("jd"), status="SUCCEEDED")
    path = out_path(server, job_id)
    line = b"x" * 99 + b"\n"
    with open(path, "wb") as f:
        for _ in range(40):
            f.write(line * 5000)  # 20 MB
        f.write(b"the end\n")
    read_before = _bytes_read(server)
    resp = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, limit=2)
    assert messages(resp) == ["x" * 99, "the end"]
    # By offset: the server read a little of the 20 MB (counted by the kernel, so load does not matter).
    assert _bytes_read(server) - read_before < 2_000_000
    # A full page is capped at 1 MB of events.
    head = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True)
    assert len(head["events"]) == 1_048_576 // (99 + 26)  # message bytes + 26 per event


# -- DescribeLogStreams --------------------------------------------------------------------------------


def test_describe_log_streams_prefix_order_and_paging(server, logs, unique) -> None:
    base = unique("dls")
    a1, sa1 = add_job(server, f"{base}-a", attempts=2, status="SUCCEEDED")
    a2, sa2 = add_job(server, f"{base}-a")
    b1, sb1 = add_job(server, f"{base}-b")
    append(server, a1, "one\n", attempt=2)
    resp = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=f"{base}-a/")
    names = [s["logStreamName"] for s in resp["logStreams"]]
    assert names == sorted(sa1 + sa2)
    described = {s["logStreamName"]: s for s in resp["logStreams"]}
    assert described[sa1[1]]["storedBytes"] == 4 and "lastEventTimestamp" in described[sa1[1]]
    assert described[sa1[1]]["arn"].endswith(f":log-group:{GROUP}:log-stream:{sa1[1]}")

    everything = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=base)
    assert [s["logStreamName"] for s in everything["logStreams"]] == sorted(sa1 + sa2 + sb1)
    desc = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=base, descending=True)
    assert [s["logStreamName"] for s in desc["logStreams"]] == sorted(sa1 + sa2 + sb1, reverse=True)
    one = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=sa1[0])
    assert [s["logStreamName"] for s in one["logStreams"]] == [sa1[0]]

    pages = logs.get_paginator("describe_log_streams").paginate(
        logGroupName=GROUP, logStreamNamePrefix=base, PaginationConfig={"PageSize": 1}
    )
    paged = [s["logStreamName"] for page in pages for s in page["logStreams"]]
    assert paged == sorted(sa1 + sa2 + sb1)


def test_describe_log_streams_last_event_time_and_errors(server, logs, unique) -> None:
    j1, [s1] = add_job(server, unique("let"), status="SUCCEEDED")
    j2, [s2] = add_job(server, unique("let"), status="SUCCEEDED")
    append(server, j1, "new\n", mtime_ms=int(time.time() * 1000) + 60_000)
    append(server, j2, "old\n", mtime_ms=int(time.time() * 1000) + 30_000)
    resp = logs.describe_log_streams(logGroupName=GROUP, orderBy="LastEventTime", descending=True, limit=2)
    assert [s["logStreamName"] for s in resp["logStreams"]] == [s1, s2]
    with pytest.raises(ClientError) as exc:
        logs.describe_log_streams(logGroupName=GROUP, orderBy="LastEventTime", logStreamNamePrefix="x")
    assert error_code(exc) == "InvalidParameterException"
    with pytest.raises(ClientError) as exc:
        logs.describe_log_streams(logGroupName="/no/such/group")
    assert error_code(exc) == "ResourceNotFoundException"


def test_describe_log_streams_other_region_hidden(server, logs, unique) -> None:
    base = unique("reg")
    add_job(server, base, region="eu-west-1")
    assert logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=base)["logStreams"] == []
    eu = server.client("logs", region="eu-west-1")
    assert len(eu.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=base)["logStreams"]) == 1


def test_aws_cli_describe_log_streams(server, unique) -> None:
    base = unique("cli")
    _, streams = add_job(server, base, attempts=3)
    out = server.aws(
        "logs", "describe-log-streams", "--log-group-name", GROUP, "--log-stream-name-prefix", base
    )
    assert [s["logStreamName"] for s in out["logStreams"]] == sorted(streams)


# -- FilterLogEvents -----------------------------------------------------------------------------------


def test_filter_log_events_terms(server, logs, unique) -> None:
    base = unique("flt")
    j1, [s1] = add_job(server, base, status="SUCCEEDED")
    j2, [s2] = add_job(server, base, status="SUCCEEDED")
    append(server, j1, "INFO start\nERROR disk full on /dev/sda\nERROR net down\nINFO stop\n")
    append(server, j2, "ERROR disk quota exceeded\nWARN disk slow\n")

    resp = logs.filter_log_events(logGroupName=GROUP, logStreamNames=[s1, s2], filterPattern="ERROR disk")
    assert sorted(messages(resp)) == ["ERROR disk full on /dev/sda", "ERROR disk quota exceeded"]
    assert all(e["logStreamName"] in (s1, s2) and e["eventId"] for e in resp["events"])
    assert {s["logStreamName"] for s in resp["searchedLogStreams"]} == {s1, s2}

    phrase = logs.filter_log_events(logGroupName=GROUP, logStreamNamePrefix=base, filterPattern='"disk full"')
    assert messages(phrase) == ["ERROR disk full on /dev/sda"]
    excl = logs.filter_log_events(logGroupName=GROUP, logStreamNames=[s1], filterPattern="ERROR -net")
    assert messages(excl) == ["ERROR disk full on /dev/sda"]
    everything = logs.filter_log_events(logGroupName=GROUP, logStreamNamePrefix=base)
    assert len(everything["events"]) == 6 and "nextToken" not in everything
    case = logs.filter_log_events(logGroupName=GROUP, logStreamNames=[s1], filterPattern="error")
    assert case["events"] == []  # terms are case-sensitive, as in CloudWatch

    for unsupported in ('{ $.level = "ERROR" }', "[ip, user]", "?ERROR ?WARN", "%ERR.*%"):
        with pytest.raises(ClientError) as exc:
            logs.filter_log_events(logGroupName=GROUP, logStreamNames=[s1], filterPattern=unsupported)
        assert error_code(exc) == "InvalidParameterException", unsupported


def test_filter_log_events_paging_and_time(server, logs, unique) -> None:
    base = unique("fpg")
    j1, [s1] = add_job(server, base, status="SUCCEEDED")
    j2, [s2] = add_job(server, base, status="SUCCEEDED")
    append(server, j1, "a1 hit\na2\n", mtime_ms=1_000_000)
    append(server, j2, "b1 hit\n", mtime_ms=1_500_000)
    # Stamp both, then add later lines.
    logs.filter_log_events(logGroupName=GROUP, logStreamNamePrefix=base)
    append(server, j1, "a3 hit\n", mtime_ms=2_000_000)
    pages = logs.get_paginator("filter_log_events").paginate(
        logGroupName=GROUP, logStreamNamePrefix=base, filterPattern="hit", PaginationConfig={"PageSize": 1}
    )
    got = [(e["message"], e["timestamp"]) for page in pages for e in page["events"]]
    assert got == [("a1 hit", 1_000_000), ("b1 hit", 1_500_000), ("a3 hit", 2_000_000)]  # interleaved by time
    ranged = logs.filter_log_events(
        logGroupName=GROUP, logStreamNamePrefix=base, startTime=1_200_000, endTime=2_000_000
    )
    assert messages(ranged) == ["b1 hit"]
    cli = server.aws("logs", "filter-log-events", "--log-group-name", GROUP, "--log-stream-name-prefix", base,
                     "--filter-pattern", "hit")  # fmt: skip
    assert [e["message"] for e in cli["events"]] == ["a1 hit", "b1 hit", "a3 hit"]


def test_filter_other_region_and_unknown_names(server, logs, unique) -> None:
    job_id, [stream] = add_job(server, unique("fr"), region="ap-south-1", status="SUCCEEDED")
    append(server, job_id, "secret\n")
    resp = logs.filter_log_events(logGroupName=GROUP, logStreamNames=[stream, "nope/default/x_1"])
    assert resp["events"] == []


# -- event segmentation (no server) --------------------------------------------------------------------


def _naive(data: bytes, cut: int, ended: bool) -> list[tuple[int, str]]:
    """The reference segmentation: lines; a line goes on past `cut` bytes is cut at file offsets that are
    multiples of `cut`, the first at least `cut` bytes after the start of its event."""
    events, pos = [], 0
    while pos < len(data):
        m = -(-(pos + cut) // cut) * cut
        n = data.find(b"\n", pos, min(m + 1, len(data)))
        if n >= 0:
            events.append((pos, data[pos:n]))
            pos = n + 1
        elif m < len(data):
            events.append((pos, data[pos:m]))
            pos = m
        else:
            if ended:
                events.append((pos, data[pos:]))
            break
    return [(p, raw.removesuffix(b"\r").decode("utf-8", "replace")) for p, raw in events]


@pytest.mark.parametrize("seed", range(40))
def test_segmentation_forward_backward_and_boundaries_agree(tmp_path: Path, seed: int, monkeypatch) -> None:
    if seed % 2:  # tiny read windows: exercises window widening and re-reads
        monkeypatch.setattr(logfiles, "_FIRST_WINDOW", 3)
        monkeypatch.setattr(logfiles, "_BLOCK", 40)
    rng = random.Random(seed)
    newline_rate = rng.choice([0.02, 0.1, 0.4])
    data = bytes(
        ord("\n") if rng.random() < newline_rate else rng.choice(b"ab\rx") for _ in range(rng.randint(0, 300))
    )
    path = tmp_path / str(seed) / "output.log"
    path.parent.mkdir()
    path.write_bytes(data)
    for ended in (False, True):
        with LogFile(path, ended, max_event=8) as lf:
            expected = _naive(data, 8, ended)
            fwd = list(lf.forward(0, lf.visible_end))
            assert [(e.start, e.message) for e in fwd] == expected
            back = [e for window in lf.backward(lf.visible_end, 0) for e in reversed(window)][::-1]
            assert [(e.start, e.message) for e in back] == expected
            starts = [e.start for e in fwd] + [lf.visible_end]
            for pos in range(lf.visible_end + 1):
                assert lf.next_boundary(pos) == min(s for s in starts if s >= pos), (ended, pos)
            assert all(e.end - e.start < 16 for e in fwd)
            # Lines up to the cut size are never cut.
            by_start = {e.start: e for e in fwd}
            start = 0
            for line in data.split(b"\n")[:-1]:
                if len(line) <= 8:
                    assert by_start[start].end == start + len(line)
                start += len(line) + 1
