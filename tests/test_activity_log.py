"""The activity log (GET /batchd/events, `batchd events`): every job state change, in order, AWS-shaped."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

from conftest import REPO, wait_for
from jobkit import describe, make_ce, make_queue, register, submit, wait_status


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _events(server, job_id: str | None = None, after: int = 0, limit: int | None = None) -> dict:
    query = f"after={after}" + (f"&jobId={job_id}" if job_id else "") + (f"&limit={limit}" if limit else "")
    status, doc = _get(f"{server.url}/batchd/events?{query}")
    assert status == 200, doc
    return doc


def _cli(
    server_url: str, *args: str, key: str = "AKIDDEV", secret: str = "dev-secret"
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BATCH", "AWS_PROFILE"):
        env.pop(k, None)
    return subprocess.run(
        [sys.executable, "-m", "batchd", "events", "--endpoint-url", server_url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        cwd=REPO,
    )


def _queue(batch, vcpus: int = 2) -> str:
    return make_queue(batch, [make_ce(batch, vcpus=vcpus)])


def test_simple_job_state_changes_in_order(server, batch):
    queue = _queue(batch)
    job_id = submit(batch, queue, register(batch, ["sh", "-c", "sleep 0.2"]))
    final = wait_status(batch, job_id, ("SUCCEEDED", "FAILED"), timeout=10)
    events = _events(server, job_id)["events"]
    # No event for the submission itself (AWS: "Events aren't created for the initial job submission").
    assert [e["detail"]["status"] for e in events] == ["RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    for e in events:
        assert e["detail-type"] == "Batch Job State Change"
        assert e["source"] == "aws.batch"
        assert e["version"] == "0"
        assert e["account"] == "123456789012" and e["region"] == "us-east-1"
        assert e["resources"] == [final["jobArn"]]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["time"])
        assert e["id"]
        assert e["detail"]["jobId"] == job_id and e["detail"]["jobArn"] == final["jobArn"]
        assert e["detail"]["jobQueue"] == queue
    # `detail` is the DescribeJobs record at that moment; the last one is the record as it stays.
    assert events[-1]["detail"] == final
    assert set(events[0]["detail"]) <= set(final)
    assert "startedAt" not in events[0]["detail"] and "startedAt" not in events[1]["detail"]
    assert events[2]["detail"]["startedAt"] == final["startedAt"]
    assert events[2]["detail"]["container"]["logStreamName"] == final["container"]["logStreamName"]
    assert events[3]["detail"]["container"]["exitCode"] == 0


def test_failed_job_and_dependent_events(server, batch):
    queue = _queue(batch)
    first = submit(batch, queue, register(batch, ["sh", "-c", "sleep 0.3; exit 3"]))
    second = submit(batch, queue, register(batch, ["true"]), dependsOn=[{"jobId": first}])
    wait_status(batch, second, "FAILED", timeout=10)
    assert [e["detail"]["status"] for e in _events(server, first)["events"]] == [
        "RUNNABLE",
        "STARTING",
        "RUNNING",
        "FAILED",
    ]
    ev = _events(server, second)["events"]
    assert [e["detail"]["status"] for e in ev] == ["PENDING", "FAILED"]
    assert ev[-1]["detail"]["statusReason"] == "Dependent Job failed"
    first_events = _events(server, first)["events"]
    assert first_events[-1]["detail"]["container"]["exitCode"] == 3
    assert first_events[-1]["seq"] < ev[-1]["seq"]  # the cascade comes after its cause


def test_array_events(server, batch):
    queue = _queue(batch)
    parent = submit(batch, queue, register(batch, ["true"]), arrayProperties={"size": 2})
    wait_status(batch, parent, ("SUCCEEDED", "FAILED"), timeout=10)
    parent_events = _events(server, parent)["events"]
    assert [e["detail"]["status"] for e in parent_events] == ["PENDING", "SUCCEEDED"]
    assert parent_events[-1]["detail"]["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 2
    kid = _events(server, f"{parent}:1")["events"]
    assert [e["detail"]["status"] for e in kid][-3:] == ["STARTING", "RUNNING", "SUCCEEDED"]
    assert kid[0]["detail"]["status"] in ("PENDING", "RUNNABLE")
    assert all(e["detail"]["arrayProperties"] == {"index": 1} for e in kid)
    assert kid[-1]["seq"] < parent_events[-1]["seq"]


def test_paging_with_after_and_limit(server, batch):
    queue = _queue(batch)
    job_id = submit(batch, queue, register(batch, ["true"]))
    wait_status(batch, job_id, "SUCCEEDED", timeout=10)
    everything = _events(server, job_id)["events"]
    page1 = _events(server, job_id, limit=2)
    assert [e["seq"] for e in page1["events"]] == [e["seq"] for e in everything[:2]]
    assert page1["nextAfter"] == everything[1]["seq"]
    page2 = _events(server, job_id, after=page1["nextAfter"])
    assert [e["seq"] for e in page2["events"]] == [e["seq"] for e in everything[2:]]
    empty = _events(server, job_id, after=everything[-1]["seq"])
    assert empty["events"] == [] and empty["nextAfter"] == everything[-1]["seq"]
    for bad in ("limit=0", "limit=abc", "after=-1", "limit=100000"):
        status, doc = _get(f"{server.url}/batchd/events?{bad}")
        assert status == 400, (bad, doc)
    # Without jobId: the whole log, in order.
    all_events = _events(server, after=everything[0]["seq"] - 1, limit=1000)["events"]
    assert all_events[0]["seq"] == everything[0]["seq"]
    assert [e["seq"] for e in all_events] == sorted(e["seq"] for e in all_events)


def test_cli_prints_the_events(server, batch):
    queue = _queue(batch)
    job_id = submit(batch, queue, register(batch, ["true"]))
    wait_status(batch, job_id, "SUCCEEDED", timeout=10)
    proc = _cli(server.url, "--job-id", job_id)
    assert proc.returncode == 0, proc.stderr
    printed = [json.loads(line) for line in proc.stdout.splitlines()]
    assert printed == _events(server, job_id)["events"]
    proc = _cli(server.url, "--job-id", job_id, "--after", str(printed[1]["seq"]))
    assert [json.loads(line)["detail"]["status"] for line in proc.stdout.splitlines()] == [
        "RUNNING",
        "SUCCEEDED",
    ]


def test_events_survive_a_restart(make_server):
    srv = make_server()
    batch = srv.client()
    queue = _queue(batch)
    job_id = submit(batch, queue, register(batch, ["sleep", "0.5"]))
    cancelled = submit(batch, queue, register(batch, ["true"]), dependsOn=[{"jobId": job_id}])
    batch.cancel_job(jobId=cancelled, reason="kept across restarts")
    wait_status(batch, cancelled, "FAILED")
    wait_status(batch, job_id, "SUCCEEDED")  # (else its end could be logged during the restart)
    before = _events(srv)["events"]
    assert {e["detail"]["jobId"] for e in before} == {job_id, cancelled}
    srv.restart()
    after = _events(srv)["events"]
    assert after == before
    failed = [e for e in after if e["detail"]["jobId"] == cancelled and e["detail"]["status"] == "FAILED"]
    assert (
        failed[0]["detail"]["statusReason"] == "kept across restarts" and failed[0]["detail"]["isCancelled"]
    )
    # New events continue the sequence after a restart.
    batch = srv.client()
    again = submit(batch, queue, register(batch, ["true"]))
    wait_status(batch, again, "SUCCEEDED", timeout=10)
    new = _events(srv, after=before[-1]["seq"])["events"]
    assert [e["detail"]["status"] for e in new] == ["RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]
    assert describe(batch, job_id)["status"] == "SUCCEEDED"


def test_events_need_a_signature_when_credentials_are_configured(make_server):
    config = """
allow_shared_host_accounts = true

[[credentials]]
access_key_id = "AKIDONE"
secret_access_key = "secret-one"
account_id = "111111111111"

[[credentials]]
access_key_id = "AKIDTWO"
secret_access_key = "secret-two"
account_id = "222222222222"
"""
    srv = make_server(config=config)
    one = srv.client(key="AKIDONE", secret="secret-one")
    queue = _queue(one)
    job_id = submit(one, queue, register(one, ["true"]))
    wait_status(one, job_id, "SUCCEEDED", timeout=10)
    status, _ = _get(f"{srv.url}/batchd/events?jobId={job_id}")
    assert status in (401, 403)
    proc = _cli(srv.url, "--job-id", job_id, key="AKIDONE", secret="secret-one")
    assert proc.returncode == 0, proc.stderr
    printed = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["detail"]["status"] for e in printed] == ["RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]
    assert {e["account"] for e in printed} == {"111111111111"}
    # Another account does not see them.
    proc = _cli(srv.url, "--job-id", job_id, key="AKIDTWO", secret="secret-two")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
    proc = _cli(srv.url, "--job-id", job_id, key="AKIDONE", secret="wrong")
    assert proc.returncode != 0


def test_every_event_of_a_busy_queue_is_recorded(server, batch):
    queue = _queue(batch, vcpus=2)
    ids = [submit(batch, queue, register(batch, ["sh", "-c", f"exit {i % 2}"])) for i in range(6)]
    wait_for(
        lambda: all(describe(batch, i)["status"] in ("SUCCEEDED", "FAILED") for i in ids),
        timeout=20,
        message="all finished",
    )
    for i, job_id in enumerate(ids):
        statuses = [e["detail"]["status"] for e in _events(server, job_id)["events"]]
        assert statuses == ["RUNNABLE", "STARTING", "RUNNING", "FAILED" if i % 2 else "SUCCEEDED"]
