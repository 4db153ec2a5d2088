"""batchd with many jobs stored: restart time, DescribeJobs(100) and ListJobs latency, server RSS.

    python bench/large.py --jobs 1000000          # SQLite (default)
    python bench/large.py --jobs 1000000 --db postgresql+psycopg://postgres@127.0.0.1:5432/bench_large

The jobs are written straight into the store with the server's own insert (SubmitJob at the measured rate would
take many minutes for a million); they look like finished and queued jobs of one queue. Then a server is started
on that store: the time until it answers is the restart time, and requests are timed from a client process.
Also measures the idle CPU of a server with --runnable jobs RUNNABLE behind a full compute environment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import Conn, Server, pct  # noqa: E402

ACCOUNT, REGION = "123456789012", "us-east-1"


def fill(db_url: str, total: int, runnable: int) -> tuple[str, list[str]]:
    from batchd.domain.jobs import build_container
    from batchd.store import jobs as store
    from batchd.store.db import Database

    db = Database(db_url)
    db.migrate()
    queue_arn = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/big"
    jd_arn = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/big:1"
    container = build_container({"containerProperties": {"image": "busybox", "command": ["true"],
                                                         "resourceRequirements": [{"type": "VCPU", "value": "1"}]}},
                                None, {})
    now = int(time.time() * 1000) - total
    sample: list[str] = []
    batch = 10_000
    for start in range(0, total, batch):
        rows = []
        for i in range(start, min(total, start + batch)):
            job_id = str(uuid.uuid4())
            queued = i >= total - runnable
            rows.append({
                "id": job_id, "account": ACCOUNT, "region": REGION, "queue_arn": queue_arn, "name": f"j{i}",
                "status": "RUNNABLE" if queued else "SUCCEEDED", "created_at": now + i,
                "started_at": None if queued else now + i, "stopped_at": None if queued else now + i + 1,
                "status_reason": None if queued else "Essential container in task exited", "jd_arn": jd_arn,
                "attempt": 0 if queued else 1, "runnable_at": now + i if queued else None,
                "spec": {"jobDefinitionName": "big", "container": container, "parameters": {}, "dependsOn": [],
                         "tags": {}, "propagateTags": False, "platformCapabilities": ["EC2"]},
                "runtime": {} if queued else {"attempts": [{"container": {"exitCode": 0}, "startedAt": now + i,
                                                            "stoppedAt": now + i + 1}],
                                              "container": {"exitCode": 0}},
            })
            if i % (total // 1000 or 1) == 0:
                sample.append(job_id)
        with db.tx() as conn:
            store.insert_jobs(conn, rows)
    db.close()
    return queue_arn, sample


def measure(db: str | None, jobs: int, runnable: int, requests: int) -> dict:
    """Fill a fresh store, start a server on it, and measure; returns the figures."""
    data = Path(tempfile.mkdtemp(prefix="batchd-large-"))
    db_url = db or f"sqlite:///{data / 'batchd.sqlite3'}"
    t = time.monotonic()
    _, sample = fill(db_url, jobs, runnable)
    results: dict = {"large_jobs": jobs, "large_runnable": runnable, "large_fill_s": time.monotonic() - t}
    # Flush the fill's gigabytes to disk first: otherwise the kernel writes them back while the server is being
    # measured, and the figures show the benchmark's own bulk load rather than the server.
    os.sync()
    time.sleep(1)
    t = time.monotonic()
    srv = Server(db, data_dir=str(data))
    results["large_restart_s"] = time.monotonic() - t
    try:
        c = Conn(srv.host, srv.port)
        # The queue and a compute environment with no room, so the RUNNABLE jobs stay queued.
        c.call("CreateComputeEnvironment", {"computeEnvironmentName": "big", "type": "UNMANAGED", "unmanagedvCpus": 0})
        time.sleep(0.3)
        c.call("CreateJobQueue", {"jobQueueName": "big", "priority": 1,
                                  "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "big"}]})
        srv.wait_idle()
        lat = []
        for i in range(requests):
            ids = [sample[(i * 7 + k) % len(sample)] for k in range(100)]
            t = time.perf_counter()
            got = c.call("DescribeJobs", {"jobs": ids})["jobs"]
            lat.append((time.perf_counter() - t) * 1000)
            assert len(got) == len(set(ids))
        results["large_describe100_p50_ms"] = pct(lat, 50)
        results["large_describe100_p99_ms"] = pct(lat, 99)
        lat = []
        token = None
        for _ in range(min(requests, 100)):
            body = {"jobQueue": "big", "jobStatus": "SUCCEEDED", "maxResults": 100}
            if token:
                body["nextToken"] = token
            t = time.perf_counter()
            page = c.call("ListJobs", body)
            lat.append((time.perf_counter() - t) * 1000)
            token = page.get("nextToken")
        results["large_listjobs_page_p50_ms"] = pct(lat, 50)
        results["large_listjobs_page_p99_ms"] = pct(lat, 99)
        srv.wait_idle()
        cpu0 = srv.cpu_seconds()
        time.sleep(5)
        results["queued_idle_cpu_percent"] = (srv.cpu_seconds() - cpu0) / 5 * 100
        results["large_rss_mb"] = srv.rss_mb()
    finally:
        srv.stop()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--runnable", type=int, default=100_000, help="how many of them are RUNNABLE (queued)")
    ap.add_argument("--db", help="database URL (default: SQLite in a temporary data dir)")
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    results = measure(args.db, args.jobs, args.runnable, args.requests)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
