"""SigV4 verification: requests signed by botocore itself, checked by batchd.api.sigv4.verify_sigv4."""

from __future__ import annotations

import hashlib
import timeit
from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from batchd.api.errors import AuthError
from batchd.api.sigv4 import MSG_MISMATCH, headers_from_asgi, verify_sigv4

HOST = "127.0.0.1:8780"
NOW = datetime(2026, 11, 28, 17, 35, 5, tzinfo=UTC)
SECRETS = {"AKIDALPHA": "alpha-secret", "AKIDBETA": "beta/secret+with=odd chars"}
TAG_PATH = "/v1/tags/arn%3Aaws%3Abatch%3Aus-east-1%3A123456789012%3Ajob-queue%2Fq"
BODY = b'{"jobQueues": ["q1"]}'


def lookup(akid: str) -> str | None:
    return SECRETS.get(akid)


class Signed:
    """What the server sees of a signed request: method, raw path, raw query, headers, body."""

    def __init__(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> None:
        self.method, self.path, self.query, self.headers, self.body = method, path, query, headers, body

    def verify(self, now: datetime = NOW, service: str | None = None, **changes) -> tuple[str, str]:
        args = {
            "method": self.method,
            "raw_path": self.path,
            "raw_query": self.query,
            "headers": dict(self.headers),
            "body": self.body,
        }
        args.update(changes)
        return verify_sigv4(
            args["method"],
            args["raw_path"],
            args["raw_query"],
            args["headers"],
            args["body"],
            lookup,
            now=now,
            service=service,
        )


def sign(
    method: str = "POST",
    path: str = "/v1/describejobqueues",
    query: str = "",
    body: bytes = BODY,
    key: str = "AKIDALPHA",
    secret: str = "alpha-secret",
    region: str = "us-east-1",
    service: str = "batch",
    at: datetime = NOW,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    presign: bool = False,
) -> Signed:
    """Sign with botocore's own signer (at a chosen time) and return the request as received."""
    url = f"http://{HOST}{path}" + (f"?{query}" if query else "")
    base = {"Content-Type": "application/json"} if body else {}
    req = AWSRequest(method=method, url=url, data=body, headers={**base, **(headers or {})})
    creds = Credentials(key, secret, token)
    signer = (
        SigV4QueryAuth(creds, service, region, expires=300) if presign else SigV4Auth(creds, service, region)
    )
    with mock.patch("botocore.auth.get_current_datetime", lambda *a, **k: at.replace(tzinfo=None)):
        signer.add_auth(req)
    parts = urlsplit(req.url)
    received = {k.lower(): str(v) for k, v in req.headers.items()}
    received["host"] = parts.netloc
    return Signed(method, parts.path, parts.query, received, body)


def expect(code: str, status: int, fn, *args, **kw) -> AuthError:
    with pytest.raises(AuthError) as info:
        fn(*args, **kw)
    assert info.value.code == code, info.value.message
    assert info.value.status == status
    return info.value


# --- requests that must pass ------------------------------------------------------------------------------


def test_plain_post() -> None:
    assert sign().verify() == ("AKIDALPHA", "us-east-1")


def test_empty_body_and_other_region() -> None:
    assert sign(body=b"", region="eu-west-1").verify() == ("AKIDALPHA", "eu-west-1")


def test_secret_with_odd_characters() -> None:
    assert sign(key="AKIDBETA", secret=SECRETS["AKIDBETA"]).verify() == ("AKIDBETA", "us-east-1")


def test_get_tags_with_percent_encoded_arn() -> None:
    assert sign("GET", TAG_PATH, body=b"").verify() == ("AKIDALPHA", "us-east-1")


def test_delete_tags_with_repeated_query_keys() -> None:
    signed = sign("DELETE", TAG_PATH, query="tagKeys=a&tagKeys=b%20c", body=b"")
    assert signed.verify() == ("AKIDALPHA", "us-east-1")


def test_query_order_and_encoding_variants() -> None:
    # botocore sorts the pairs itself; another client may send them in any order and may encode '~' or not.
    signed = sign("DELETE", TAG_PATH, query="tagKeys=b%20c&tagKeys=a", body=b"")
    assert signed.verify(raw_query="tagKeys=b%20c&tagKeys=a") == ("AKIDALPHA", "us-east-1")
    assert signed.verify(raw_query="tagKeys=a&tagKeys=b%20c") == ("AKIDALPHA", "us-east-1")


def test_plus_in_query_is_literal() -> None:
    signed = sign("GET", "/v1/x", query="k=a%2Bb", body=b"")
    assert signed.verify() == ("AKIDALPHA", "us-east-1")
    # '+' would be a space under unquote_plus; SigV4 treats it as a literal '+'
    assert signed.verify(raw_query="k=a+b") == ("AKIDALPHA", "us-east-1")
    expect("InvalidSignatureException", 403, signed.verify, raw_query="k=a%20b")


def test_dot_segments_and_double_slashes_are_normalised() -> None:
    signed = sign("GET", "/v1//tags/./x/../y", body=b"")
    assert signed.verify() == ("AKIDALPHA", "us-east-1")


def test_non_ascii_path_and_query() -> None:
    signed = sign("GET", "/v1/tags/caf%C3%A9", query="k=%E2%82%AC", body=b"")
    assert signed.verify() == ("AKIDALPHA", "us-east-1")


def test_session_token_header() -> None:
    signed = sign(token="FwoGZXIvYXdzEXAMPLETOKEN==")
    assert "x-amz-security-token" in signed.headers["authorization"]
    assert signed.verify() == ("AKIDALPHA", "us-east-1")
    expect(
        "InvalidSignatureException",
        403,
        signed.verify,
        headers={**signed.headers, "x-amz-security-token": "x"},
    )


def test_scope_service_logs() -> None:
    target = {"X-Amz-Target": "Logs_20140328.GetLogEvents"}
    signed = sign(path="/", service="logs", headers=target)
    assert signed.verify() == ("AKIDALPHA", "us-east-1")


def test_header_whitespace_is_trimmed_and_collapsed() -> None:
    signed = sign(headers={"X-Custom": "a   b  c"})
    assert signed.verify(headers={**signed.headers, "x-custom": "  a b    c "}) == ("AKIDALPHA", "us-east-1")


def test_non_ascii_header_value_as_received_from_asgi() -> None:
    signed = sign(headers={"X-Custom": "caf\u00e9  au lait \u00e0 la carte"})
    # the server sees the UTF-8 bytes decoded as latin-1 (0xA0 of 'à' must not be taken for whitespace)
    wire = {k: v.encode("utf-8").decode("latin-1") for k, v in signed.headers.items()}
    assert signed.verify(headers=wire) == ("AKIDALPHA", "us-east-1")


def test_repeated_header_values_joined_with_comma() -> None:
    # botocore signs a repeated header as its trimmed values joined with ','
    signed = sign(headers={"X-Custom": "v1,v2"})
    received = headers_from_asgi(
        [(b"X-Custom", b" v1 "), (b"x-custom", b"v2  ")]
        + [(k.encode(), v.encode()) for k, v in signed.headers.items() if k != "x-custom"]
    )
    assert received["x-custom"] == "v1,v2"
    assert signed.verify(headers=received) == ("AKIDALPHA", "us-east-1")


def test_skew_just_inside_the_window() -> None:
    assert sign(at=NOW - timedelta(minutes=4, seconds=59)).verify() == ("AKIDALPHA", "us-east-1")
    assert sign(at=NOW + timedelta(minutes=4, seconds=59)).verify() == ("AKIDALPHA", "us-east-1")


def test_matching_content_sha256_header() -> None:
    digest = hashlib.sha256(BODY).hexdigest()
    assert sign(headers={"X-Amz-Content-SHA256": digest}).verify() == ("AKIDALPHA", "us-east-1")


def test_presigned_query() -> None:
    signed = sign("GET", TAG_PATH, body=b"", presign=True)
    assert "authorization" not in signed.headers and "X-Amz-Signature=" in signed.query
    assert signed.verify() == ("AKIDALPHA", "us-east-1")
    assert signed.verify(now=NOW + timedelta(seconds=299)) == ("AKIDALPHA", "us-east-1")
    err = expect("InvalidSignatureException", 403, signed.verify, now=NOW + timedelta(seconds=301))
    assert err.message.startswith("Signature expired:")
    expect("InvalidSignatureException", 403, signed.verify, raw_path="/v1/tags/other")


# --- requests that must fail --------------------------------------------------------------------------------


def test_wrong_secret() -> None:
    err = expect("InvalidSignatureException", 403, sign(secret="not-the-secret").verify)
    assert err.message == MSG_MISMATCH


def test_unknown_key() -> None:
    err = expect("UnrecognizedClientException", 403, sign(key="AKIDNOBODY").verify)
    assert err.message == "The security token included in the request is invalid."


def test_stale_date() -> None:
    err = expect("InvalidSignatureException", 403, sign(at=NOW - timedelta(minutes=6)).verify)
    assert err.message == (
        "Signature expired: 20261128T172905Z is now earlier than 20261128T173005Z (20261128T173505Z - 5 min.)"
    )


def test_future_date() -> None:
    err = expect("InvalidSignatureException", 403, sign(at=NOW + timedelta(minutes=6)).verify)
    assert err.message == (
        "Signature not yet current: 20261128T174105Z is still later than 20261128T174005Z "
        "(20261128T173505Z + 5 min.)"
    )


def test_default_now_is_the_clock() -> None:
    signed = sign(at=datetime.now(UTC))
    assert verify_sigv4(signed.method, signed.path, signed.query, signed.headers, signed.body, lookup) == (
        "AKIDALPHA",
        "us-east-1",
    )


def test_tampered_body() -> None:
    signed = sign()
    err = expect("InvalidSignatureException", 403, signed.verify, body=b'{"jobQueues": ["q2"]}')
    assert err.message == MSG_MISMATCH


def test_tampered_path() -> None:
    signed = sign("GET", TAG_PATH, body=b"")
    expect("InvalidSignatureException", 403, signed.verify, raw_path=TAG_PATH.replace("%2Fq", "%2Fr"))
    # the decoded path is a different canonical URI: %2F must not be decoded to '/'
    expect("InvalidSignatureException", 403, signed.verify, raw_path=TAG_PATH.replace("%2F", "/"))


def test_tampered_query_and_method() -> None:
    signed = sign("DELETE", TAG_PATH, query="tagKeys=a&tagKeys=b%20c", body=b"")
    expect("InvalidSignatureException", 403, signed.verify, raw_query="tagKeys=a")
    expect("InvalidSignatureException", 403, signed.verify, method="GET")


def test_tampered_signed_header() -> None:
    signed = sign(service="logs", path="/", headers={"X-Amz-Target": "Logs_20140328.GetLogEvents"})
    changed = {**signed.headers, "x-amz-target": "Logs_20140328.FilterLogEvents"}
    expect("InvalidSignatureException", 403, signed.verify, headers=changed)


def test_missing_authorization() -> None:
    signed = sign()
    headers = {k: v for k, v in signed.headers.items() if k != "authorization"}
    err = expect("MissingAuthenticationTokenException", 403, signed.verify, headers=headers)
    assert err.message == "Missing Authentication Token"


def test_missing_x_amz_date() -> None:
    signed = sign()
    headers = {k: v for k, v in signed.headers.items() if k != "x-amz-date"}
    expect("IncompleteSignatureException", 400, signed.verify, headers=headers)


def test_signed_header_missing_from_request() -> None:
    signed = sign()
    headers = {k: v for k, v in signed.headers.items() if k != "content-type"}
    err = expect("IncompleteSignatureException", 400, signed.verify, headers=headers)
    assert "content-type" in err.message


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 garbage",
        "AWS4-HMAC-SHA256 Credential=AKIDALPHA/20261128/us-east-1/batch/aws4_request, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKIDALPHA/20261128/us-east-1/batch, SignedHeaders=host;x-amz-date, Signature=0",
        "AWS4-HMAC-SHA256 Credential=AKIDALPHA/2026-11-28/us-east-1/batch/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=0",
        "AWS4-HMAC-SHA256 Credential=AKIDALPHA/20261128/us-east-1/batch/aws4_request, SignedHeaders=;, Signature=0",
        "AWS4-HMAC-SHA256 Credential=AKIDALPHA/20261128/us-east-1/batch/aws4_request, "
        "SignedHeaders=content-type;x-amz-date, Signature=0",
        "AWS4-HMAC-SHA256 Credential=AKIDALPHA/20261128/us-east-1/batch/aws4_request, "
        "SignedHeaders=content-type;host, Signature=0",
        "AWS4-HMAC-SHA512 Credential=AKIDALPHA/20261128/us-east-1/batch/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=0",
        "AWS AKIDALPHA:c2lnbmF0dXJl",
    ],
)
def test_malformed_authorization(authorization: str) -> None:
    signed = sign()
    expect(
        "IncompleteSignatureException",
        400,
        signed.verify,
        headers={**signed.headers, "authorization": authorization},
    )


def test_malformed_x_amz_date() -> None:
    signed = sign()
    err = expect(
        "IncompleteSignatureException", 400, signed.verify, headers={**signed.headers, "x-amz-date": "now"}
    )
    assert "ISO-8601" in err.message


def test_scope_date_differs_from_x_amz_date() -> None:
    signed = sign()
    headers = {
        **signed.headers,
        "authorization": signed.headers["authorization"].replace("/20261128/", "/20261127/"),
    }
    err = expect("InvalidSignatureException", 403, signed.verify, headers=headers)
    assert "Credential scope" in err.message


def test_wrong_scope_service() -> None:
    err = expect("InvalidSignatureException", 403, sign(service="s3").verify)
    assert "'batch'" in err.message
    # a batch request signed for logs (or the reverse) is refused too
    expect("InvalidSignatureException", 403, sign(service="logs").verify)
    expect(
        "InvalidSignatureException",
        403,
        sign(path="/", headers={"X-Amz-Target": "Logs_20140328.GetLogEvents"}).verify,
    )


def test_logs_target_on_a_batch_route_needs_a_batch_signature() -> None:
    # Only a POST with a Logs target is a Logs request; GET/DELETE /v1/tags/{arn} is a Batch operation
    # whatever X-Amz-Target says, so a Logs-scoped signature must not pass for it.
    target = {"X-Amz-Target": "Logs_20140328.GetLogEvents"}
    for method in ("GET", "DELETE"):
        err = expect("InvalidSignatureException", 403,
                     sign(method=method, path=TAG_PATH, body=b"", service="logs", headers=target).verify)
        assert "'batch'" in err.message
        assert sign(method=method, path=TAG_PATH, body=b"", headers=target).verify() == ("AKIDALPHA", "us-east-1")
    # the service the caller names (the operation that runs) wins over the header
    signed = sign(path="/", service="logs", headers=target)
    expect("InvalidSignatureException", 403, signed.verify, service="batch")


def test_unsigned_target_header_is_refused() -> None:
    signed = sign(service="logs", path="/")
    headers = {**signed.headers, "x-amz-target": "Logs_20140328.GetLogEvents"}
    expect("IncompleteSignatureException", 400, signed.verify, headers=headers)


def test_content_sha256_not_matching_body() -> None:
    err = expect("InvalidSignatureException", 403, sign(headers={"X-Amz-Content-SHA256": "0" * 64}).verify)
    assert "x-amz-content-sha256" in err.message
    # a correct digest header with a different body: the header no longer matches the body received
    signed = sign(headers={"X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()})
    expect("InvalidSignatureException", 403, signed.verify, body=b"{}")


def test_unsigned_payload_is_refused() -> None:
    err = expect(
        "InvalidSignatureException", 403, sign(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}).verify
    )
    assert "UNSIGNED-PAYLOAD" in err.message


def test_header_and_query_auth_together() -> None:
    signed = sign("GET", TAG_PATH, body=b"", presign=True)
    other = sign("GET", TAG_PATH, body=b"")
    expect("IncompleteSignatureException", 400, signed.verify, headers={**signed.headers, **other.headers})


def test_non_ascii_signature_is_a_mismatch_not_a_crash() -> None:
    signed = sign()
    auth = signed.headers["authorization"].rsplit("=", 1)[0] + "=\u00e9" * 64
    expect("InvalidSignatureException", 403, signed.verify, headers={**signed.headers, "authorization": auth})


# --- cost ---------------------------------------------------------------------------------------------------


def test_per_request_cost() -> None:
    signed = sign()
    n = 5000
    per_call = min(timeit.repeat(signed.verify, number=n, repeat=3)) / n
    print(f"verify_sigv4: {per_call * 1e6:.1f} us per request")
    assert per_call < 200e-6  # generous bound for slow CI machines; ~10-20 us expected
