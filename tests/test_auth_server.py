"""Authentication end to end: real `batchd serve` processes with [[credentials]], driven by boto3, the aws CLI
and hand-made HTTP requests. Also dev mode's refusal to listen beyond loopback, account isolation and
the region taken from the credential scope."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import REPO, wait_for

CONFIG = """
allow_shared_host_accounts = true

[[credentials]]
access_key_id = "AKIDALPHA"
secret_access_key = "alpha-secret"
account_id = "111111111111"

[[credentials]]
access_key_id = "AKIDBETA"
secret_access_key = "beta-secret"
account_id = "222222222222"
"""

ALPHA = {"key": "AKIDALPHA", "secret": "alpha-secret"}
BETA = {"key": "AKIDBETA", "secret": "beta-secret"}
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)


@pytest.fixture
def srv(make_server):
    return make_server(config=CONFIG)


def error_of(call, *args, **kw) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as info:
        call(*args, **kw)
    resp = info.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"], resp["Error"].get("Message", "")


def signed_request(
    url: str,
    path: str,
    body: bytes,
    key: str = "AKIDALPHA",
    secret: str = "alpha-secret",
    at: datetime | None = None,
    method: str = "POST",
) -> tuple[str, dict[str, str]]:
    """Sign a request with botocore's SigV4Auth at a chosen time; returns (path, headers) to send."""
    req = AWSRequest(method=method, url=url + path, data=body, headers={"Content-Type": "application/json"})
    at = at or datetime.now(UTC)
    with mock.patch("botocore.auth.get_current_datetime", lambda *a, **k: at.replace(tzinfo=None)):
        SigV4Auth(Credentials(key, secret), "batch", "us-east-1").add_auth(req)
    headers = dict(req.headers.items())
    return path, headers


def send(url: str, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict, dict]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(data) if data else {}
    finally:
        conn.close()


def cli(
    url: str, *args: str, key: str, secret: str, region: str = "us-east-1"
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": region,
        "AWS_PAGER": "",
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BATCH"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "awscli", "--endpoint-url", url, *args, "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def assert_authenticated(call, *args, **kw) -> None:
    """The request got past authentication: it answered, or failed with anything but an auth error."""
    try:
        call(*args, **kw)
    except ClientError as exc:
        resp = exc.response
        assert resp["ResponseMetadata"]["HTTPStatusCode"] != 403, resp["Error"]
        assert resp["Error"]["Code"] not in (
            "InvalidSignatureException",
            "UnrecognizedClientException",
            "IncompleteSignatureException",
            "MissingAuthenticationTokenException",
        ), resp["Error"]


def skip_unless_implemented(client, *operations: str) -> None:
    """Skip (never fake) when a resource handler this test needs still answers 'not implemented'."""
    calls = {
        "DescribeComputeEnvironments": client.describe_compute_environments,
        "DescribeJobQueues": client.describe_job_queues,
    }
    for op in operations:
        try:
            calls[op]()
        except ClientError as exc:
            if "not implemented" in exc.response["Error"].get("Message", ""):
                pytest.skip(f"{op} is not implemented by batchd yet (its handler answers 'not implemented')")
            raise


def create_ce_and_queue(client, name: str = "shared-name") -> tuple[str, str]:
    ce = client.create_compute_environment(computeEnvironmentName=name, type="UNMANAGED", unmanagedvCpus=4)
    wait_for(
        lambda: (
            client.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"][0][
                "status"
            ]
            == "VALID"
        ),
        message=f"compute environment {name} VALID",
    )
    jq = client.create_job_queue(
        jobQueueName=name, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": name}]
    )
    return ce["computeEnvironmentArn"], jq["jobQueueArn"]


# --- signatures ------------------------------------------------------------------------------------------------


def test_configured_key_passes(srv) -> None:
    for creds in (ALPHA, BETA):
        assert_authenticated(srv.client(**creds).describe_job_queues)
    # the same endpoint's CloudWatch Logs API is signed with scope service 'logs'
    logs = srv.client("logs", **ALPHA)
    assert_authenticated(logs.get_log_events, logGroupName="/aws/batch/job", logStreamName="nope/default/x")


def test_wrong_secret_is_refused(srv) -> None:
    status, code, message = error_of(srv.client(key="AKIDALPHA", secret="beta-secret").describe_job_queues)
    assert (status, code, message) == (403, "InvalidSignatureException", MISMATCH)


def test_unknown_key_is_refused(srv) -> None:
    status, code, message = error_of(srv.client(key="AKIDNOBODY", secret="whatever").describe_job_queues)
    assert (status, code) == (403, "UnrecognizedClientException")
    assert message == "The security token included in the request is invalid."


def test_dev_key_is_refused_once_credentials_are_configured(srv) -> None:
    status, code, _ = error_of(srv.client().describe_job_queues)  # AKIDDEV/dev-secret
    assert (status, code) == (403, "UnrecognizedClientException")


def test_stale_date_is_refused(srv) -> None:
    body = b"{}"
    path, headers = signed_request(
        srv.url, "/v1/describejobqueues", body, at=datetime.now(UTC) - timedelta(minutes=10)
    )
    status, resp_headers, data = send(srv.url, "POST", path, body, headers)
    assert status == 403
    assert resp_headers["x-amzn-errortype"] == "InvalidSignatureException"
    assert data["message"].startswith(f"Signature expired: {headers['X-Amz-Date']} is now earlier than ")
    assert data["message"].endswith(" - 5 min.)")
    # the same request signed now passes
    path, headers = signed_request(srv.url, "/v1/describejobqueues", body)
    status, resp_headers, _ = send(srv.url, "POST", path, body, headers)
    assert status != 403, resp_headers


def test_future_date_is_refused(srv) -> None:
    body = b"{}"
    path, headers = signed_request(
        srv.url, "/v1/describejobqueues", body, at=datetime.now(UTC) + timedelta(minutes=10)
    )
    status, resp_headers, data = send(srv.url, "POST", path, body, headers)
    assert (status, resp_headers["x-amzn-errortype"]) == (403, "InvalidSignatureException")
    assert data["message"].startswith("Signature not yet current: ")


def test_tampered_body_is_refused(srv) -> None:
    signed_body = b'{"jobQueues": ["mine"]}'
    path, headers = signed_request(srv.url, "/v1/describejobqueues", signed_body)
    status, resp_headers, data = send(srv.url, "POST", path, b'{"jobQueues": ["else"]}', headers)
    assert (status, resp_headers["x-amzn-errortype"]) == (403, "InvalidSignatureException")
    assert data == {"__type": "InvalidSignatureException", "message": MISMATCH}


def test_tampered_path_is_refused(srv) -> None:
    arn = "arn%3Aaws%3Abatch%3Aus-east-1%3A111111111111%3Ajob-queue%2Fq"
    path, headers = signed_request(srv.url, f"/v1/tags/{arn}", b"", method="GET")
    headers.pop("Content-Type")  # signed, so removing it is a signed header missing -> 400
    status, resp_headers, _ = send(srv.url, "GET", path, b"", headers)
    assert (status, resp_headers["x-amzn-errortype"]) == (400, "IncompleteSignatureException")
    path, headers = signed_request(srv.url, f"/v1/tags/{arn}", b"", method="GET")
    status, resp_headers, _ = send(srv.url, "GET", path.replace("%2Fq", "%2Fr"), b"", headers)
    assert (status, resp_headers["x-amzn-errortype"]) == (403, "InvalidSignatureException")
    status, resp_headers, _ = send(srv.url, "GET", path, b"", headers)
    assert status != 403, resp_headers


def logs_signed(url: str, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    """Headers of a request signed with scope service 'logs' and a CloudWatch Logs X-Amz-Target."""
    headers = {"X-Amz-Target": "Logs_20140328.GetLogEvents", "Content-Type": "application/x-amz-json-1.1"}
    req = AWSRequest(method=method, url=url + path, data=body, headers=headers)
    SigV4Auth(Credentials("AKIDALPHA", "alpha-secret"), "logs", "us-east-1").add_auth(req)
    return dict(req.headers.items())


@pytest.mark.parametrize("method", ["GET", "DELETE", "POST"])
def test_logs_signature_does_not_run_batch_tag_operations(srv, method: str) -> None:
    # A Logs-scoped signature sent to a Batch route (here ListTagsForResource / UntagResource / TagResource)
    # must not run the Batch operation: the signing service must be the one of the operation that runs.
    batch = srv.client(**ALPHA)
    skip_unless_implemented(batch, "DescribeComputeEnvironments", "DescribeJobQueues")
    _, jq = create_ce_and_queue(batch, "tagged")
    batch.tag_resource(resourceArn=jq, tags={"team": "a"})
    path = "/v1/tags/" + jq.replace(":", "%3A").replace("/", "%2F")
    if method == "DELETE":
        path += "?tagKeys=team"
    body = b'{"tags": {"x": "y"}}' if method == "POST" else b""
    status, resp_headers, data = send(srv.url, method, path, body, logs_signed(srv.url, method, path, body))
    if method == "POST":  # a POST with a Logs target is a Logs request (GetLogEvents), never TagResource
        assert resp_headers["content-type"] == "application/x-amz-json-1.1", data
        assert "tags" not in data
    else:
        assert (status, resp_headers["x-amzn-errortype"]) == (403, "InvalidSignatureException"), data
        assert "'batch'" in data["message"]
    assert batch.list_tags_for_resource(resourceArn=jq)["tags"] == {"team": "a"}


def test_batchd_endpoints_take_batch_signatures_only(srv) -> None:
    path = "/batchd/events?after=0"
    status, resp_headers, data = send(srv.url, "GET", path, b"", logs_signed(srv.url, "GET", path))
    assert (status, resp_headers["x-amzn-errortype"]) == (403, "InvalidSignatureException"), data
    _, headers = signed_request(srv.url, path, b"", method="GET")
    status, _, data = send(srv.url, "GET", path, b"", headers)
    assert status == 200 and "events" in data


def test_missing_authorization_is_refused(srv) -> None:
    status, resp_headers, data = send(
        srv.url, "POST", "/v1/describejobqueues", b"{}", {"Content-Type": "application/json"}
    )
    assert (status, resp_headers["x-amzn-errortype"]) == (403, "MissingAuthenticationTokenException")
    assert data["message"] == "Missing Authentication Token"
    assert resp_headers.get("x-amzn-requestid")


def test_malformed_authorization_is_400(srv) -> None:
    headers = {
        "Content-Type": "application/json",
        "Authorization": "AWS4-HMAC-SHA256 garbage",
        "X-Amz-Date": "x",
    }
    status, resp_headers, _ = send(srv.url, "POST", "/v1/describejobqueues", b"{}", headers)
    assert (status, resp_headers["x-amzn-errortype"]) == (400, "IncompleteSignatureException")


def test_secrets_are_never_logged(srv) -> None:
    error_of(srv.client(key="AKIDALPHA", secret="beta-secret").describe_job_queues)
    error_of(srv.client(key="AKIDNOBODY", secret="nobody-secret").describe_job_queues)
    srv.stop()
    log = srv.log_path.read_text()
    assert "InvalidSignatureException" in log and "UnrecognizedClientException" in log
    for secret in ("alpha-secret", "beta-secret", "nobody-secret"):
        assert secret not in log


def test_aws_cli_with_configured_key(srv) -> None:
    proc = cli(srv.url, "batch", "describe-job-queues", **ALPHA)
    if proc.returncode != 0:
        # not implemented yet is fine; an authentication failure is not
        assert "not implemented" in proc.stderr, proc.stderr
    else:
        assert "jobQueues" in json.loads(proc.stdout)
    proc = cli(srv.url, "batch", "describe-job-queues", key="AKIDALPHA", secret="wrong")
    assert proc.returncode != 0 and "InvalidSignatureException" in proc.stderr
    proc = cli(srv.url, "batch", "describe-job-queues", key="AKIDNOBODY", secret="x")
    assert proc.returncode != 0 and "UnrecognizedClientException" in proc.stderr


# --- accounts and regions ---------------------------------------------------------------------------------------


def test_accounts_cannot_see_each_other(srv) -> None:
    alpha, beta = srv.client(**ALPHA), srv.client(**BETA)
    skip_unless_implemented(alpha, "DescribeComputeEnvironments", "DescribeJobQueues")
    ce_a, jq_a = create_ce_and_queue(alpha)
    assert ce_a == "arn:aws:batch:us-east-1:111111111111:compute-environment/shared-name"
    assert jq_a == "arn:aws:batch:us-east-1:111111111111:job-queue/shared-name"

    assert beta.describe_compute_environments()["computeEnvironments"] == []
    assert beta.describe_job_queues()["jobQueues"] == []
    assert (
        beta.describe_compute_environments(computeEnvironments=["shared-name", ce_a])["computeEnvironments"]
        == []
    )
    assert beta.describe_job_queues(jobQueues=["shared-name", jq_a])["jobQueues"] == []

    ce_b, jq_b = create_ce_and_queue(beta)
    assert ce_b == "arn:aws:batch:us-east-1:222222222222:compute-environment/shared-name"
    assert jq_b == "arn:aws:batch:us-east-1:222222222222:job-queue/shared-name"
    assert [q["jobQueueArn"] for q in alpha.describe_job_queues()["jobQueues"]] == [jq_a]
    assert [q["jobQueueArn"] for q in beta.describe_job_queues()["jobQueues"]] == [jq_b]
    ces = beta.describe_compute_environments()["computeEnvironments"]
    assert [c["computeEnvironmentArn"] for c in ces] == [ce_b]


def test_region_comes_from_the_credential_scope(srv) -> None:
    east, west = srv.client(**ALPHA), srv.client(region="eu-west-1", **ALPHA)
    skip_unless_implemented(west, "DescribeComputeEnvironments", "DescribeJobQueues")
    ce, jq = create_ce_and_queue(west, "regional")
    assert ce == "arn:aws:batch:eu-west-1:111111111111:compute-environment/regional"
    assert jq == "arn:aws:batch:eu-west-1:111111111111:job-queue/regional"
    assert east.describe_compute_environments()["computeEnvironments"] == []
    assert east.describe_job_queues()["jobQueues"] == []
    assert [q["jobQueueArn"] for q in west.describe_job_queues()["jobQueues"]] == [jq]

    china = srv.client(region="cn-north-1", **ALPHA)
    ce, jq = create_ce_and_queue(china, "regional")
    assert ce == "arn:aws-cn:batch:cn-north-1:111111111111:compute-environment/regional"
    assert jq == "arn:aws-cn:batch:cn-north-1:111111111111:job-queue/regional"


# --- dev mode and the listening address -------------------------------------------------------------------------


def serve_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in list(env):
        if name.startswith("BATCHD_"):
            del env[name]
    return env


def test_dev_mode_refuses_non_loopback(tmp_path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchd",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=serve_env(),
        cwd=REPO,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "refusing to listen on 0.0.0.0" in proc.stderr
    assert "credentials" in proc.stderr
    assert "batchd listening" not in proc.stdout


def test_dev_mode_accepts_any_key_on_loopback(make_server) -> None:
    srv = make_server()
    assert_authenticated(srv.client(key="ANYTHING", secret="anything").describe_job_queues)


def test_credentials_allow_non_loopback(make_server) -> None:
    srv = make_server(config=CONFIG, extra_args=["--host", "0.0.0.0"])
    try:
        assert srv.url.startswith("http://0.0.0.0:")
        # talk to it over loopback only
        local = f"http://127.0.0.1:{srv.port}"
        status, resp_headers, _ = send(local, "POST", "/v1/describejobqueues", b"{}", {})
        assert (status, resp_headers["x-amzn-errortype"]) == (403, "MissingAuthenticationTokenException")
        path, headers = signed_request(local, "/v1/describejobqueues", b"{}")
        status, resp_headers, _ = send(local, "POST", path, b"{}", headers)
        assert status != 403, resp_headers
    finally:
        srv.stop()
