"""`batchd events`: read the activity log from a running server (signed like any AWS client would)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.session import Session


def fetch(endpoint: str, region: str, after: int, limit: int, job_id: str | None) -> dict:
    query = {"after": str(after), "limit": str(limit)}
    if job_id:
        query["jobId"] = job_id
    url = f"{endpoint.rstrip('/')}/batchd/events?{urllib.parse.urlencode(query)}"
    request = AWSRequest(method="GET", url=url)
    creds = Session().get_credentials()
    if creds is not None:
        SigV4Auth(creds.get_frozen_credentials(), "batch", region).add_auth(request)
    prepared = request.prepare()
    req = urllib.request.Request(url, headers=dict(prepared.headers), method="GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        raise SystemExit(f"batchd events: {exc.code} {body}") from None
    except urllib.error.URLError as exc:
        raise SystemExit(
            f"batchd events: cannot reach {endpoint}: {exc.reason} (is `batchd serve` running there?)"
        ) from None


def run(
    endpoint: str | None, region: str | None, after: int, job_id: str | None, follow: bool, default_endpoint: str
) -> int:
    """Print the events as JSON lines; the server is --endpoint-url, else AWS_ENDPOINT_URL_BATCH, else
    AWS_ENDPOINT_URL, else the local server (`batchd serve`'s default address)."""
    endpoint = (endpoint or os.environ.get("AWS_ENDPOINT_URL_BATCH") or os.environ.get("AWS_ENDPOINT_URL")
                or default_endpoint)
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    try:
        while True:
            page = fetch(endpoint, region, after, 1000, job_id)
            for event in page["events"]:
                print(json.dumps(event, separators=(",", ":")), flush=True)
            after = page["nextAfter"]
            if not page["events"]:
                if not follow:
                    return 0
                time.sleep(0.5)
    except BrokenPipeError:  # `batchd events | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # so that the interpreter's final flush is silent too
        return 0
    except KeyboardInterrupt:  # --follow ends with ^C
        return 0
