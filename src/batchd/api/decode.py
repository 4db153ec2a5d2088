"""Decoding request values into bounded, typed, finite values: the one place that turns text into numbers.

Everything a client sends that becomes a number or reaches the store goes through here, so that no handler
meets an unbounded integer, an infinite float or a string the store cannot hold:

* `validate.py` removes optional members sent as `null` (a handler sees them absent), checks numeric strings
  such as `resourceRequirements[].value` with `decimal_ok`, and bounds every integer to its model type;
* `without_nul` refuses request bodies with a string holding U+0000 (PostgreSQL cannot store it), naming the
  member;
* `bounded_int` is the only way text in a request (a query parameter, a ListJobs time filter, a token)
  becomes an integer: ASCII digits only, a length cap before conversion, and a range;
* page tokens (`encode_page_token` / `decode_page_token`) carry a scope and a sequence number; a token whose
  scope or number is not one this server wrote is refused instead of reaching a query.

Every refusal is a ClientException naming the member.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from batchd.api.errors import ClientException

INT64 = (-(2**63), 2**63 - 1)
# Sequence numbers and epoch milliseconds fit a signed 64-bit column on every store.
SEQ_RANGE = (0, 2**63 - 1)
_INTEGER_RE = re.compile(r"-?[0-9]{1,19}")
# A decimal amount: digits with an optional fraction (what AWS documents for VCPU/MEMORY/GPU values).
_DECIMAL_RE = re.compile(r"[0-9]{1,19}(?:\.[0-9]{0,19})?|\.[0-9]{1,19}")


def show(value: Any, limit: int = 60) -> str:
    """A value in a message, shortened: `'abc...' (5000 characters)`."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def bounded_int(text: Any, what: str, lo: int = INT64[0], hi: int = INT64[1]) -> int:
    """`text` as an integer in [lo, hi]; a ClientException naming `what` otherwise (never a 500)."""
    if not isinstance(text, str) or _INTEGER_RE.fullmatch(text) is None:
        raise ClientException(f"{what} must be an integer (ASCII digits, at most 19), not {show(text)}")
    value = int(text)
    if not lo <= value <= hi:
        raise ClientException(f"{what} must be between {lo} and {hi}, not {value}")
    return value


def decimal_ok(text: Any, lo: float, hi: float) -> bool:
    """True when `text` is a plain decimal number (no sign, exponent, inf or nan) within [lo, hi]."""
    if type(text) is not str:
        return False
    if text.isdigit() and text.isascii():  # the common case ("2", "4096") without the regular expression
        if len(text) > 19:
            return False
    elif _DECIMAL_RE.fullmatch(text) is None:
        return False
    return lo <= float(text) <= hi  # at most 19 digits either side of the point: always finite


# --- page tokens --------------------------------------------------------------------------------------------------
# A token is the base64 of "<scope>:<last seq returned>": opaque to clients, stable while records are added (new
# records get higher seqs), and refused when presented to another operation.


def encode_page_token(scope: str, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{scope}:{seq}".encode()).decode()


def decode_page_token(token: Any, scope: str) -> int:
    """The sequence number in a token this server issued for `scope`; ClientException for anything else."""
    if isinstance(token, str) and len(token) <= 256:
        try:
            got_scope, _, seq = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii").rpartition(":")
        except (binascii.Error, UnicodeError, ValueError):
            got_scope, seq = "", ""
        if got_scope == scope and seq.isascii() and seq.isdigit() and len(seq) <= 19:
            value = int(seq)
            if value <= SEQ_RANGE[1]:
                return value
    raise ClientException(f"nextToken {show(token)} is not valid for this request")


# --- the request body ---------------------------------------------------------------------------------------------

_NUL_ESCAPE = b"\\u0000"


def without_nul(params: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The decoded body `params`, once no string (or map key) in it holds U+0000; ClientException otherwise."""
    if _NUL_ESCAPE in body:  # JSON can only carry U+0000 escaped, so a body without the escape is clean
        refuse_nul(params)
    return params


def refuse_nul(value: Any, path: str = "") -> None:
    """Raise a ClientException naming the first string (or map key) below `value` that holds U+0000."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ClientException(
                f"1 validation error detected: Value {show(value)} at '{path or 'request body'}' failed to "
                "satisfy constraint: Member must not contain the NUL character (U+0000)"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if "\x00" in key:
                refuse_nul(key, path)
            refuse_nul(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            refuse_nul(item, f"{path}[{i}]")
