"""batchd's own endpoints under /batchd/ (outside the AWS API), authenticated like every request.

GET /batchd/events?after=SEQ&limit=N&jobId=ID — the activity log: every job state change, in order, in the
shape of AWS's EventBridge "Batch Job State Change" event (the `detail` is the job's DescribeJobs record).
"""

from __future__ import annotations

import datetime
from typing import Any

from batchd.api.decode import bounded_int, show
from batchd.api.errors import ClientException
from batchd.api.registry import RequestContext
from batchd.domain.jobs import job_arn
from batchd.store import jobs as store

MAX_EVENTS = 1000


def _int(query: dict[str, list[str]], key: str, default: int, low: int, high: int) -> int:
    raw = query.get(key)
    return default if raw is None else bounded_int(raw[-1], key, low, high)


def _job_id(query: dict[str, list[str]]) -> str | None:
    raw = query.get("jobId")
    if raw is None:
        return None
    if len(raw[-1]) > 256 or "\x00" in raw[-1]:  # no job id is longer; PostgreSQL cannot compare U+0000
        raise ClientException(f"jobId {show(raw[-1])} is not a job id")
    return raw[-1]


def event_document(row: dict[str, Any]) -> dict[str, Any]:
    detail = row["detail"]
    when = datetime.datetime.fromtimestamp(row["time"] / 1000, datetime.UTC)
    return {
        "version": "0",
        "id": f"batchd-{row['seq']}",
        "seq": row["seq"],
        "detail-type": "Batch Job State Change",
        "source": "aws.batch",
        "account": row["account"],
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": row["region"],
        "resources": [detail.get("jobArn") or job_arn(detail["jobQueue"], row["job_id"])],
        "detail": detail,
    }


async def handle_extra(ctx: RequestContext, method: str, path: str, query: dict[str, list[str]]) -> dict:
    if method == "GET" and path.rstrip("/") == "/batchd/events":
        after = _int(query, "after", 0, 0, 2**62)
        limit = _int(query, "limit", 100, 1, MAX_EVENTS)
        job_id = _job_id(query)
        rows = store.read_events(ctx.service.db.conn, ctx.account, ctx.region, after, limit, job_id)
        docs = [event_document(r) for r in rows]
        return {"events": docs, "nextAfter": docs[-1]["seq"] if docs else after}
    raise ClientException(f"Unknown path {path}: batchd serves GET /batchd/events")
