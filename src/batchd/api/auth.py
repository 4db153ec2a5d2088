"""Who is calling: the account and region of a request.

With credentials configured every request must carry a valid SigV4 signature (api/sigv4.py), scoped to the
service of the operation that runs; its headers are checked before the body is read. In dev mode
(no credentials) the Authorization header is parsed for its region but not checked, and the account is the
fixed dev account.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from batchd.api.errors import AuthError
from batchd.api.sigv4 import HeadersChecked, check_headers, check_signature
from batchd.config import DEV_ACCOUNT, Credential

DEFAULT_REGION = "us-east-1"
_SCOPE_RE = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")


@dataclass(frozen=True)
class Caller:
    account: str
    region: str
    access_key_id: str | None


class Authenticator:
    def __init__(self, credentials: list[Credential]) -> None:
        self._by_key = {c.access_key_id: c for c in credentials}

    @property
    def dev_mode(self) -> bool:
        return not self._by_key

    def check_headers(
        self, method: str, raw_query: str, headers: dict[str, str], service: str
    ) -> Caller | HeadersChecked:
        """Before the body is read: everything the headers alone decide (api/sigv4.py `check_headers`),
        for the operation's `service`. In dev mode this is the whole check and returns the Caller."""
        if self.dev_mode:
            return self._dev_caller(headers)
        checked = check_headers(method, raw_query, headers, self._secret_of, service)
        _check_region(checked.region)
        return checked

    def check_signature(self, checked: Caller | HeadersChecked, method: str, raw_path: str, body: bytes) -> Caller:
        """After the body is read: the signature over it. Returns the caller, or raises AuthError."""
        if isinstance(checked, Caller):
            return checked
        akid, region = check_signature(checked, method, raw_path, body)
        return Caller(self._by_key[akid].account_id, region, akid)

    def _secret_of(self, akid: str) -> str | None:
        cred = self._by_key.get(akid)
        return cred.secret_access_key if cred else None

    def _dev_caller(self, headers: dict[str, str]) -> Caller:
        auth = headers.get("authorization", "")
        m = _SCOPE_RE.search(auth)
        if not m:
            return Caller(DEV_ACCOUNT, DEFAULT_REGION, None)
        region = m.group(3)
        _check_region(region)
        return Caller(DEV_ACCOUNT, region, m.group(1))


def _check_region(region: str) -> None:
    if not _REGION_RE.match(region):
        raise AuthError(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{region}'.",
        )
