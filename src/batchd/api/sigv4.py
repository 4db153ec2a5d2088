"""AWS Signature Version 4 verification, server side, with the standard library only.

`verify_sigv4` recomputes the signature of a request exactly as botocore's `SigV4Auth` computes it and
compares it in constant time. It is on every request's path, so it avoids strptime and botocore objects,
parses the usual Authorization header with one regex, and caches the derived signing key (as ready HMAC
states), the canonical URI and query, the SignedHeaders list and the parsed X-Amz-Date.

Rules (see docs/authentication.md):

* Authorization header `AWS4-HMAC-SHA256 Credential=AKID/YYYYMMDD/region/service/aws4_request,
  SignedHeaders=a;b;c, Signature=hex`. Presigned query auth (`X-Amz-Algorithm`, `X-Amz-Credential`,
  `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Signature` in the query) is also accepted.
* Service in the credential scope: the service of the operation that runs: `logs` for CloudWatch Logs
  requests (a POST with X-Amz-Target `Logs_20140328.*`, `is_logs_request`), `batch` for every other request,
  batchd's own `/batchd/` endpoints included.
* `host` and `x-amz-date` (and `x-amz-target` when present) must be signed, because they decide what the
  request means.
* X-Amz-Date must be within 5 minutes of the server's clock; the scope date must be its date.
* Payload hash: always sha256 of the body received. An `x-amz-content-sha256` header must equal it;
  `UNSIGNED-PAYLOAD` and streaming payloads are refused (Batch bodies are commands to run; we never accept
  them unauthenticated, and no SDK sends those for Batch or Logs).
* The canonical URI is the raw (still percent-encoded) path with dot segments and empty segments removed,
  percent-encoded again with safe '/~' (botocore's rule for every service but S3). The canonical query is
  the raw query decoded with `unquote` (never `unquote_plus`: '+' is literal) and re-encoded per RFC 3986,
  sorted by key then value.
* Header values are trimmed and inner whitespace runs collapsed; repeated headers must reach us joined
  with ',' (use `headers_from_asgi`).

Verification has two phases so that nothing is buffered for a request that cannot be authentic:
`check_headers` runs before the body is read, `check_signature` after. Nothing here logs; api/app.py logs
each refused request with the access key id (`access_key_of`), never the secret, signature or a token.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from batchd.api.errors import AuthError

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_SECONDS = 300
MAX_PRESIGN_EXPIRES = 604800  # one week, as AWS
LOGS_TARGET_PREFIX = "Logs_20140328."
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

MSG_MISSING = "Missing Authentication Token"
MSG_UNKNOWN_KEY = "The security token included in the request is invalid."
MSG_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)

_CACHE_MAX_LEN = 512
_DIGITS = frozenset("0123456789")
# The Authorization header as botocore and the other SDKs write it. Anything else goes to the general parser.
_KEY_RE = re.compile(r"Credential=([A-Za-z0-9]+)")
_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/,\s]+)/([^/,\s]+)/([^/,\s]+)/([^/,\s]+)/aws4_request, ?"
    r"SignedHeaders=([^,\s]+), ?Signature=([0-9a-f]{64})\Z"
)


def _incomplete(message: str) -> AuthError:
    return AuthError("IncompleteSignatureException", message, 400)


def _invalid(message: str) -> AuthError:
    return AuthError("InvalidSignatureException", message, 403)


def is_logs_request(method: str, headers: dict[str, str]) -> bool:
    """Whether a request is a CloudWatch Logs one: a POST with X-Amz-Target `Logs_20140328.*`. The same rule
    routes the request (api/app.py) and names the service its signature must be scoped to, so a signature
    for one service can never run an operation of the other."""
    if method != "POST":
        return False
    target = headers.get("x-amz-target")
    return target is not None and target.startswith(LOGS_TARGET_PREFIX)


class HeadersChecked:
    """A request whose headers passed every SigV4 check; only the signature, which covers the body's hash,
    is left to check (`check_signature`, once the body is read)."""

    __slots__ = ("akid", "region", "service", "scope_date", "amz_date", "query", "canonical_headers",
                 "signed_line", "signature", "declared_sha256", "secret")

    def __init__(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)


def verify_sigv4(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: dict[str, str],
    body: bytes,
    lookup_secret: Callable[[str], str | None],
    now: datetime | None = None,
    service: str | None = None,
) -> tuple[str, str]:
    """Check the SigV4 signature of a request; return (access_key_id, region) or raise AuthError.

    raw_path and raw_query are exactly as on the request line (still percent-encoded; ASGI `raw_path` and
    `query_string` decoded as latin-1); header names are lower-case; body is the raw bytes received.
    `service` is the service of the operation that runs (default: by `is_logs_request`).
    """
    checked = check_headers(method, raw_query, headers, lookup_secret, service, now)
    return check_signature(checked, method, raw_path, body)


def check_headers(
    method: str,
    raw_query: str,
    headers: dict[str, str],
    lookup_secret: Callable[[str], str | None],
    service: str | None = None,
    now: datetime | None = None,
) -> HeadersChecked:
    """Everything that can be checked before the body arrives: the Authorization header (or presigned query)
    is present and well-formed, the scope's service is `service`, its date and the X-Amz-Date are within the
    window, the headers that decide what the request means are signed, and the access key is known."""
    auth = headers.get("authorization")
    if auth:
        if raw_query and ("X-Amz-Signature=" in raw_query or "X-Amz-Algorithm=" in raw_query):
            raise _incomplete(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the "
                "Authorization header should be specified"
            )
        m = _AUTH_RE.match(auth)
        if m is not None:  # the shape every SDK sends
            akid, scope_date, region, scope_service, signed_value, signature = m.groups()
            _check_scope_date(scope_date)
        else:
            akid, scope_date, region, scope_service, signed_value, signature = _parse_authorization(auth)
        amz_date = headers.get("x-amz-date")
        if amz_date is None:
            raise _incomplete(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
                "batchd requires 'X-Amz-Date'."
            )
        query = raw_query
        expires = None
    elif raw_query and "X-Amz-Algorithm=" in raw_query:
        akid, scope_date, region, scope_service, signed_value, signature, amz_date, expires, query = (
            _parse_presigned(raw_query)
        )
    else:
        raise AuthError("MissingAuthenticationTokenException", MSG_MISSING, 403)

    if service is None:
        service = "logs" if is_logs_request(method, headers) else "batch"
    if scope_service != service:
        raise _invalid(f"Credential should be scoped to correct service: '{service}'. ")
    _check_time(amz_date, scope_date, expires, now)
    signed, signed_line = _parse_signed_headers(signed_value)
    canonical_headers = _canonical_headers(signed, headers, expires is None)

    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared.startswith(("UNSIGNED-PAYLOAD", "STREAMING-")):
        raise _invalid(f"x-amz-content-sha256 '{declared}' is not accepted: batchd requires signed payloads.")
    secret = lookup_secret(akid)
    if secret is None:
        raise AuthError("UnrecognizedClientException", MSG_UNKNOWN_KEY, 403)
    return HeadersChecked(
        akid=akid, region=region, service=scope_service, scope_date=scope_date, amz_date=amz_date, query=query,
        canonical_headers=canonical_headers, signed_line=signed_line, signature=signature,
        declared_sha256=declared, secret=secret,
    )


def check_signature(checked: HeadersChecked, method: str, raw_path: str, body: bytes) -> tuple[str, str]:
    """The signature over the request and the body's hash; returns (access_key_id, region)."""
    payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    declared = checked.declared_sha256
    if declared is not None and declared.strip().lower() != payload_hash:
        raise _invalid("The provided 'x-amz-content-sha256' header does not match what was computed.")
    query = checked.query
    canonical_request = (
        f"{method.upper()}\n{_canonical_uri(raw_path)}\n{_canonical_query(query) if query else ''}\n"
        f"{checked.canonical_headers}\n{checked.signed_line}\n{payload_hash}"
    )
    string_to_sign = (
        f"{ALGORITHM}\n{checked.amz_date}\n{checked.scope_date}/{checked.region}/{checked.service}/aws4_request\n"
        f"{hashlib.sha256(canonical_request.encode('utf-8')).hexdigest()}"
    )
    key = _signing_key(checked.secret, checked.scope_date, checked.region, checked.service)
    expected = _hmac_hex(key, string_to_sign.encode())
    if not hmac.compare_digest(expected.encode(), checked.signature.encode("utf-8", "replace")):
        raise _invalid(MSG_MISMATCH)
    return checked.akid, checked.region


def access_key_of(headers: dict[str, str], raw_query: str) -> str:
    """The access key id a request names (not a secret: it may be logged), or '-'."""
    m = _KEY_RE.search(headers.get("authorization", "") or raw_query)
    return m.group(1)[:32] if m else "-"


def _check_time(amz_date: str, scope_date: str, expires: int | None, now: datetime | None) -> None:
    ts = _parse_amz_date(amz_date)
    if scope_date != amz_date[:8]:
        raise _invalid(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{scope_date}' != '{amz_date[:8]}', from '{amz_date}'."
        )
    now_s = time.time() if now is None else now.timestamp()
    if ts > now_s + MAX_SKEW_SECONDS:
        raise _invalid(
            f"Signature not yet current: {amz_date} is still later than {_fmt(now_s + MAX_SKEW_SECONDS)} "
            f"({_fmt(now_s)} + 5 min.)"
        )
    if expires is None:
        if ts < now_s - MAX_SKEW_SECONDS:
            raise _invalid(
                f"Signature expired: {amz_date} is now earlier than {_fmt(now_s - MAX_SKEW_SECONDS)} "
                f"({_fmt(now_s)} - 5 min.)"
            )
    elif ts + expires < now_s:
        raise _invalid(
            f"Signature expired: {_fmt(ts + expires)} is now earlier than {_fmt(now_s)} "
            f"({amz_date} + {expires} sec.)"
        )


def _canonical_headers(signed: tuple[str, ...], headers: dict[str, str], header_auth: bool) -> str:
    if "host" not in signed:
        raise _incomplete("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    if header_auth and "x-amz-date" not in signed:
        raise _incomplete("'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.")
    if "x-amz-target" in headers and "x-amz-target" not in signed:
        raise _incomplete("'X-Amz-Target' must be a 'SignedHeader' in the AWS Authorization.")
    lines = []
    for name in signed:
        value = headers.get(name)
        if value is None:
            raise _incomplete(f"The header '{name}' is listed in SignedHeaders but is not in the request.")
        if not value.isascii():
            value = _wire_text(value)
        lines.append(f"{name}:{' '.join(value.split())}\n")
    return "".join(lines)


def _parse_authorization(auth: str) -> tuple[str, str, str, str, str, str]:
    """The general (slow) parser, for headers that the fast regex does not match: odd spacing, other field
    order, or something malformed, which it explains."""
    algorithm, _, rest = auth.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(
            f"Unsupported AWS 'algorithm': '{algorithm[:32]}'. batchd accepts '{ALGORITHM}' only."
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        if not eq:
            raise _incomplete(
                f"'{part[:64]}' not a valid key=value pair (missing equal-sign) in Authorization header."
            )
        fields[name.strip()] = value.strip()
    missing = [f for f in ("Credential", "SignedHeaders", "Signature") if f not in fields]
    if missing:
        raise _incomplete(" ".join(f"Authorization header requires '{f}' parameter." for f in missing))
    akid, scope_date, region, service = _parse_credential(fields["Credential"])
    return akid, scope_date, region, service, fields["SignedHeaders"], fields["Signature"]


def _check_scope_date(scope_date: str) -> None:
    if len(scope_date) != 8 or not _DIGITS.issuperset(scope_date):
        raise _incomplete(f"Credential scope date '{scope_date[:16]}' is not YYYYMMDD.")


def _parse_credential(credential: str) -> tuple[str, str, str, str]:
    parts = credential.split("/")
    if len(parts) != 5 or not all(parts) or parts[4] != "aws4_request":
        raise _incomplete(
            f"Credential is malformed: expected <access key>/<YYYYMMDD>/<region>/<service>/aws4_request, "
            f"got '{credential[:128]}'."
        )
    _check_scope_date(parts[1])
    return parts[0], parts[1], parts[2], parts[3]


@lru_cache(maxsize=256)
def _parse_signed_headers(value: str) -> tuple[tuple[str, ...], str]:
    """'content-type;host;x-amz-date' -> (sorted lower-case names, the canonical SignedHeaders line)."""
    names = tuple(sorted({n.strip().lower() for n in value.split(";")}))
    if not names or "" in names:
        raise _incomplete(f"SignedHeaders '{value[:128]}' is malformed.")
    return names, ";".join(names)


def _parse_presigned(raw_query: str) -> tuple[str, str, str, str, str, str, str, int, str]:
    params: dict[str, str] = {}
    kept: list[str] = []
    for pair in raw_query.split("&"):
        if not pair:
            continue
        k, _, v = pair.partition("=")
        if k.startswith("X-Amz-"):
            if k in params:
                raise _incomplete(f"Query parameter {k} is repeated.")
            params[k] = unquote_to_bytes(v.encode("latin-1", "replace")).decode("utf-8", "replace")
        if k != "X-Amz-Signature":
            kept.append(pair)
    missing = [
        k
        for k in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders")
        if k not in params
    ]
    if "X-Amz-Signature" not in params:
        missing.append("X-Amz-Signature")
    if missing:
        raise _incomplete(
            " ".join(f"Query-string authentication requires the {k} parameter." for k in missing)
        )
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise _incomplete(f"Unsupported AWS 'algorithm': '{params['X-Amz-Algorithm']}'.")
    try:
        expires = int(params["X-Amz-Expires"])
    except ValueError:
        raise _incomplete("X-Amz-Expires should be a number") from None
    if not 0 <= expires <= MAX_PRESIGN_EXPIRES:
        raise _incomplete(f"X-Amz-Expires must be between 0 and {MAX_PRESIGN_EXPIRES} seconds.")
    akid, scope_date, region, service = _parse_credential(params["X-Amz-Credential"])
    return (
        akid,
        scope_date,
        region,
        service,
        params["X-Amz-SignedHeaders"],
        params["X-Amz-Signature"],
        params["X-Amz-Date"],
        expires,
        "&".join(kept),
    )


@lru_cache(maxsize=256)
def _parse_amz_date(value: str) -> float:
    """'20260101T120000Z' -> epoch seconds, without strptime (which costs more than the whole check)."""
    if (
        len(value) == 16
        and value[8] == "T"
        and value[15] == "Z"
        and _DIGITS.issuperset(value[:8])
        and _DIGITS.issuperset(value[9:15])
    ):
        y, mo, d = int(value[:4]), int(value[4:6]), int(value[6:8])
        h, mi, s = int(value[9:11]), int(value[11:13]), int(value[13:15])
        if 1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and s <= 60:
            return float(calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)))
    raise _incomplete(
        f"Date must be in ISO-8601 'basic format'. Got '{value[:32]}'. See http://en.wikipedia.org/wiki/ISO_8601"
    )


def _fmt(epoch: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


def _canonical_uri(raw_path: str) -> str:
    # Cache the common short paths; never let long, client-chosen strings fill the cache.
    return (
        _canonical_uri_cached(raw_path) if len(raw_path) <= _CACHE_MAX_LEN else _make_canonical_uri(raw_path)
    )


def _canonical_query(raw_query: str) -> str:
    return (
        _canonical_query_cached(raw_query)
        if len(raw_query) <= _CACHE_MAX_LEN
        else _make_canonical_query(raw_query)
    )


def _make_canonical_uri(raw_path: str) -> str:
    path = raw_path.partition("?")[0]
    if not path:
        return "/"
    segments = []
    for seg in path.split("/"):
        if seg and seg != ".":
            if seg == "..":
                if segments:
                    segments.pop()
            else:
                segments.append(seg)
    normalized = ("/" if path[0] == "/" else "") + "/".join(segments)
    if path[-1] == "/" and segments:
        normalized += "/"
    try:
        raw = normalized.encode("latin-1")  # the bytes as received (ASGI raw_path decoded as latin-1)
    except UnicodeEncodeError:
        raw = normalized.encode("utf-8")
    return quote(raw, safe="/~")


def _make_canonical_query(raw_query: str) -> str:
    if not raw_query:
        return ""
    pairs = []
    for pair in raw_query.split("&"):
        if not pair:
            continue
        k, _, v = pair.partition("=")
        pairs.append((_rfc3986(k), _rfc3986(v)))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


_canonical_uri_cached = lru_cache(maxsize=2048)(_make_canonical_uri)
_canonical_query_cached = lru_cache(maxsize=2048)(_make_canonical_query)


def _wire_text(value: str) -> str:
    """A header value decoded as latin-1 (as ASGI servers hand them over) back to the text the client
    signed: SDKs sign str values, sent as UTF-8, and trim them with str.split(), for which a latin-1 decoded
    UTF-8 byte such as 0xA0 would wrongly be whitespace."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _rfc3986(text: str) -> str:
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        raw = text.encode("utf-8")
    return quote(unquote_to_bytes(raw), safe="-_.~")


@lru_cache(maxsize=1024)
def _signing_key(secret: str, date: str, region: str, service: str) -> tuple[Any, Any]:
    """The SigV4 signing key for a scope, as HMAC-SHA256 inner and outer hash states with the key pads
    already absorbed: signing is then two hash-object copies instead of a fresh HMAC (half the cost)."""
    k = hmac.digest(("AWS4" + secret).encode("utf-8"), date.encode(), "sha256")
    k = hmac.digest(k, region.encode("utf-8"), "sha256")
    k = hmac.digest(k, service.encode("utf-8"), "sha256")
    k = hmac.digest(k, b"aws4_request", "sha256").ljust(64, b"\0")
    return hashlib.sha256(bytes(b ^ 0x36 for b in k)), hashlib.sha256(bytes(b ^ 0x5C for b in k))


def _hmac_hex(key: tuple[Any, Any], message: bytes) -> str:
    inner, outer = key[0].copy(), key[1].copy()
    inner.update(message)
    outer.update(inner.digest())
    return outer.hexdigest()


def headers_from_asgi(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI header pairs -> {lower-case name: value}; a repeated header's values are trimmed and joined
    with ',' exactly as SigV4 canonicalises them (a plain dict comprehension would keep only the last)."""
    out: dict[str, str] = {}
    for k, v in raw_headers:
        name = k.decode("latin-1").lower()
        value = v.decode("latin-1")
        if name in out:
            out[name] = f"{' '.join(out[name].split())},{' '.join(value.split())}"
        else:
            out[name] = value
    return out
