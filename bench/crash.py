"""Crash test: clients submit continuously while the server is killed with SIGKILL and restarted, again and again.

    python bench/crash.py --kills 5                 # SQLite in a temporary data dir
    python bench/crash.py --db postgresql+psycopg://postgres@127.0.0.1:5432/DB

Afterwards every acknowledged job must exist exactly once (no job name twice either), every job must reach a
final state, and no job may have run twice: each job appends its id to a marker file when it runs (O_APPEND
lines are atomic), and no id may appear there twice. Prints the figures and exits non-zero on any violation.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HEADERS = {"Content-Type": "application/json"}


def _call(host: str, port: int, op: str, body: dict, timeout: float = 10) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", f"/v1/{op.lower()}", body=json.dumps(body), headers=HEADERS)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{op} {resp.status}: {data[:200]!r}")
        return json.loads(data)
    finally:
        conn.close()


class CrashServer:
    def __init__(self, data_dir: Path, db: str | None) -> None:
        self.data_dir, self.db = data_dir, db
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = [sys.executable, "-m", "batchd", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        if self.db:
            args += ["--db", self.db]
        env = {**os.environ, "BATCHD_TERMINATE_GRACE_SECONDS": "1"}
        log = open(self.data_dir.parent / "server.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, env=env)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("batchd listening on"):
            raise RuntimeError(f"server did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


def _client(worker: int, port_file: str, queue: str, jd: str, stop_at: float, out: str) -> None:
    """Submit until stop_at; write every acknowledged (jobId, jobName) to `out`."""
    n = 0
    with open(out, "w") as acks:
        while time.time() < stop_at:
            name = f"w{worker}-{n}"
            n += 1
            try:
                port = int(Path(port_file).read_text())
                job = _call("127.0.0.1", port, "SubmitJob", {"jobName": name, "jobQueue": queue, "jobDefinition": jd},
                            timeout=5)
            except (OSError, RuntimeError, http.client.HTTPException, ValueError):
                time.sleep(0.05)  # the server is down (or restarting): not acknowledged, try a new job
                continue
            acks.write(f"{job['jobId']} {name}\n")
            acks.flush()
            time.sleep(0.002)  # a steady stream, not a flood: every acknowledged job must finish within the wait


def run(kills: int = 5, clients: int = 2, db: str | None = None, interval: float = 1.5,
        workdir: Path | None = None) -> dict:
    work = Path(workdir or tempfile.mkdtemp(prefix="batchd-crash-"))
    data = work / "data"
    marker = work / "ran.txt"
    srv = CrashServer(data, db)
    srv.start()
    port_file = work / "port"
    port_file.write_text(str(srv.port))
    h = ("127.0.0.1", srv.port)
    _call(*h, "CreateComputeEnvironment", {"computeEnvironmentName": "crash", "type": "UNMANAGED",
                                           "unmanagedvCpus": 16})
    time.sleep(0.3)
    _call(*h, "CreateJobQueue", {"jobQueueName": "crash", "priority": 1,
                                 "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "crash"}]})
    _call(*h, "RegisterJobDefinition", {
        "jobDefinitionName": "crash", "type": "container",
        "containerProperties": {"image": "none", "command": ["sh", "-c", f'echo "$AWS_BATCH_JOB_ID" >> {marker}; sleep 0.05'],
                                "resourceRequirements": [{"type": "VCPU", "value": "1"}]},
        "retryStrategy": {"attempts": 2}})
    time.sleep(0.3)
    stop_at = time.time() + interval * (kills + 1)
    procs = []
    for w in range(clients):
        p = mp.get_context("fork").Process(target=_client, args=(w, str(port_file), "crash", "crash", stop_at,
                                                                  str(work / f"acks{w}.txt")))
        p.start()
        procs.append(p)
    for _ in range(kills):
        time.sleep(interval)
        srv.kill()
        srv.start()
        port_file.write_text(str(srv.port))
    for p in procs:
        p.join()
    acked = [line.split() for w in range(clients) for line in (work / f"acks{w}.txt").read_text().splitlines()]
    # Wait for every acknowledged job to finish.
    ids = [a[0] for a in acked]
    deadline = time.time() + 180
    jobs: dict[str, dict] = {}
    while time.time() < deadline:
        pending = [i for i in ids if jobs.get(i, {}).get("status") not in ("SUCCEEDED", "FAILED")]
        if not pending:
            break
        for i in range(0, len(pending), 100):
            for j in _call("127.0.0.1", srv.port, "DescribeJobs", {"jobs": pending[i:i + 100]})["jobs"]:
                jobs[j["jobId"]] = j
        time.sleep(0.5)
    listed: list[dict] = []
    for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"):
        token = None
        while True:
            body = {"jobQueue": "crash", "jobStatus": status, "maxResults": 1000}
            if token:
                body["nextToken"] = token
            page = _call("127.0.0.1", srv.port, "ListJobs", body)
            listed += page["jobSummaryList"]
            token = page.get("nextToken")
            if not token:
                break
    srv.stop()
    # A job that moved on while the statuses were listed one after another shows up twice: count each job once
    # (jobs nobody was told about may still be running; only the acknowledged ones were waited for).
    names = Counter(j["jobName"] for j in {j["jobId"]: j for j in listed}.values())
    ran = Counter(marker.read_text().split()) if marker.exists() else Counter()
    unknown = [j for j in jobs.values() if "whether its process ran is unknown" in (j.get("statusReason") or "")]
    result = {
        "kills": kills,
        "acknowledged": len(ids),
        "stored_jobs": len({j["jobId"] for j in listed}),
        "lost": sum(1 for i in ids if i not in jobs),
        "duplicated": sum(n - 1 for n in names.values() if n > 1),
        "ran_twice": sum(1 for n in ran.values() if n > 1),
        "not_finished": sum(1 for i in ids if jobs.get(i, {}).get("status") not in ("SUCCEEDED", "FAILED")),
        "succeeded": sum(1 for j in jobs.values() if j["status"] == "SUCCEEDED"),
        "failed": sum(1 for j in jobs.values() if j["status"] == "FAILED"),
        "failed_unknown_whether_ran": len(unknown),
        "workdir": str(work),
    }
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--interval", type=float, default=1.5, help="seconds between kills")
    ap.add_argument("--db", help="database URL (default SQLite)")
    args = ap.parse_args()
    result = run(args.kills, args.clients, args.db, args.interval)
    for key, value in result.items():
        print(f"{key:28} {value}")
    bad = result["lost"] or result["duplicated"] or result["ran_twice"] or result["not_finished"]
    print("FAIL" if bad else "OK: every acknowledged job exists exactly once, finished, and ran at most once")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
