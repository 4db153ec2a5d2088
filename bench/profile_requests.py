"""Profile one kind of request in-process: the ASGI app called directly (no sockets, no client), under cProfile.

    python bench/profile_requests.py submit --n 5000          # SubmitJob to a queue whose CE has no capacity
    python bench/profile_requests.py describe --n 2000        # DescribeJobs of 100 jobs
    python bench/profile_requests.py list|cancel|null

Prints the CPU per request (process time, including the scheduler passes the requests caused) and the top
functions by own time. Used for the findings in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import orjson

from batchd.api.app import BatchdASGI
from batchd.config import Settings
from batchd.service import Service

AUTH = (b"AWS4-HMAC-SHA256 Credential=AKIDBENCH/20260101/us-east-1/batch/aws4_request, "
        b"SignedHeaders=content-type;host;x-amz-date, Signature=" + b"0" * 64)


async def call(app: BatchdASGI, method: str, path: str, body: dict | None = None) -> dict:
    raw = orjson.dumps(body) if body is not None else b""
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"host", b"localhost"), (b"content-type", b"application/json"),
                         (b"authorization", AUTH), (b"x-amz-date", b"20260101T000000Z"),
                         (b"content-length", str(len(raw)).encode())]}
    sent = False
    out: dict = {}

    async def receive() -> dict:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] = message["body"]

    await app(scope, receive, send)
    if out["status"] != 200:
        raise RuntimeError(f"{path}: {out['status']} {out['body'][:300]!r}")
    return orjson.loads(out["body"]) if out["body"] else {}


async def main(kind: str, n: int, top: int) -> None:
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="batchd-prof-")), port=0)
    service = Service(settings)
    app = BatchdASGI(service)
    await service.start()
    ce = await call(app, "POST", "/v1/createcomputeenvironment",
                    {"computeEnvironmentName": "ce", "type": "UNMANAGED", "unmanagedvCpus": 0})
    await asyncio.sleep(0.2)
    await call(app, "POST", "/v1/createjobqueue", {"jobQueueName": "q", "priority": 1, "computeEnvironmentOrder": [
        {"order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}]})
    await asyncio.sleep(0.2)
    await call(app, "POST", "/v1/registerjobdefinition", {
        "jobDefinitionName": "jd", "type": "container",
        "containerProperties": {"image": "busybox", "command": ["true"],
                                "resourceRequirements": [{"type": "VCPU", "value": "1"}]}})
    submit = {"jobName": "p", "jobQueue": "q", "jobDefinition": "jd"}
    ids = [(await call(app, "POST", "/v1/submitjob", submit))["jobId"] for _ in range(max(100, n if kind == "cancel" else 0))]
    await asyncio.sleep(0.3)
    requests = {
        "submit": lambda i: call(app, "POST", "/v1/submitjob", submit),
        "describe": lambda i: call(app, "POST", "/v1/describejobs", {"jobs": ids[:100]}),
        "list": lambda i: call(app, "POST", "/v1/listjobs", {"jobQueue": "q", "jobStatus": "RUNNABLE", "maxResults": 100}),
        "cancel": lambda i: call(app, "POST", "/v1/canceljob", {"jobId": ids[i], "reason": "profile"}),
        "null": lambda i: call(app, "GET", "/health"),
    }
    fn = requests[kind]
    prof = cProfile.Profile()
    c0 = time.process_time()
    prof.enable()
    for i in range(n):
        await fn(i)
        await asyncio.sleep(0)  # let the scheduler pass a request woke run, as it would between requests
    await asyncio.sleep(0.2)
    prof.disable()
    cpu = time.process_time() - c0
    print(f"{kind}: {cpu / n * 1e3:.3f} ms CPU per request under the profiler ({n} requests)")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)
    await service.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["submit", "describe", "list", "cancel", "null"])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    asyncio.run(main(a.kind, a.n, a.top))
