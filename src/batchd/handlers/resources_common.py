"""What the resource handlers share: parameter checks, tags, page tokens and the asynchronous status settle.

Compute environments and job queues are created CREATING, updated UPDATING and deleted DELETING, as in AWS;
a timer (`settings.resource_create_delay`) then moves them to VALID or removes them. If the server stops before
the timer fires, `finish_pending_creates` completes the change at the next start, so nothing is left half-way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from batchd.api.decode import decode_page_token, encode_page_token
from batchd.api.errors import ClientException
from batchd.api.registry import RequestContext
from batchd.domain.arns import valid_name
from batchd.store import resources as store

log = logging.getLogger("batchd.resources")

MAX_TAGS = 50
MAX_DESCRIBE = 100

# statusReason once a resource has settled; AWS shows these words for a healthy resource.
VALID_REASON = {store.KIND_CE: "ComputeEnvironment Healthy", store.KIND_JQ: "JobQueue Healthy"}
LABEL = {store.KIND_CE: "ComputeEnvironment", store.KIND_JQ: "JobQueue", store.KIND_SP: "SchedulingPolicy"}


# --- parameter checks (the shape validator runs first; these keep the handlers safe on their own) ---------------


def require_str(params: dict[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise ClientException(f"{key} is required and must be a non-empty string")
    return value


def opt_str(params: dict[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is not None and not isinstance(value, str):
        raise ClientException(f"{key} must be a string")
    return value


def opt_int(
    params: dict[str, Any], key: str, lo: int | None = None, hi: int | None = None, *, where: str = ""
) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    label = f"{where}{key}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ClientException(f"{label} must be an integer")
    if lo is not None and value < lo or hi is not None and value > hi:
        span = (
            f"between {lo} and {hi}"
            if lo is not None and hi is not None
            else f">= {lo}"
            if lo is not None
            else f"<= {hi}"
        )
        raise ClientException(f"{label} must be {span}, not {value}")
    return value


def opt_enum(
    params: dict[str, Any], key: str, allowed: tuple[str, ...], default: str | None = None
) -> str | None:
    value = params.get(key)
    if value is None:
        return default
    if value not in allowed:
        raise ClientException(f"{key} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def opt_dict(params: dict[str, Any], key: str) -> dict | None:
    value = params.get(key)
    if value is not None and not isinstance(value, dict):
        raise ClientException(f"{key} must be an object")
    return value


def opt_list(params: dict[str, Any], key: str) -> list | None:
    value = params.get(key)
    if value is not None and not isinstance(value, list):
        raise ClientException(f"{key} must be a list")
    return value


def check_name(value: object, what: str) -> str:
    if not valid_name(value):
        raise ClientException(
            f"{what} {value!r} is not valid: it must be 1 to 128 letters (uppercase and lowercase), numbers, "
            "hyphens and underscores"
        )
    assert isinstance(value, str)
    return value


def check_describe_refs(refs: list | None, key: str) -> list[str] | None:
    if refs is None:
        return None
    if len(refs) > MAX_DESCRIBE:
        raise ClientException(f"{key} can hold up to {MAX_DESCRIBE} entries, not {len(refs)}")
    if not all(isinstance(r, str) for r in refs):
        raise ClientException(f"{key} entries must be strings")
    return refs


# --- tags ----------------------------------------------------------------------------------------------------------


def check_tags(tags: object, key: str = "tags") -> dict[str, str]:
    """AWS's tag rules: keys 1-128 characters, values up to 256, at most 50, no `aws:` prefix."""
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise ClientException(f"{key} must be a map of strings to strings")
    if len(tags) > MAX_TAGS:
        raise ClientException(f"{key}: a resource can have at most {MAX_TAGS} tags, not {len(tags)}")
    for k, v in tags.items():
        if not isinstance(k, str) or not 1 <= len(k) <= 128:
            raise ClientException(f"{key}: tag key {k!r} must be 1 to 128 characters")
        if not isinstance(v, str) or len(v) > 256:
            raise ClientException(f"{key}: the value of tag {k!r} must be a string of at most 256 characters")
        if k.lower().startswith("aws:"):
            raise ClientException(f"{key}: tag key {k!r} uses the reserved prefix 'aws:'")
    return dict(tags)


# --- pagination ----------------------------------------------------------------------------------------------------
# Tokens are api/decode.py's: "<scope>:<last seq returned>", refused when foreign, broken or out of range.


def page_size(params: dict[str, Any], default: int = 100, hi: int = 100) -> int:
    size = opt_int(params, "maxResults", 1, hi)
    return default if size is None else size


encode_token = encode_page_token


def decode_token(token: str | None, scope: str) -> int:
    return 0 if token is None else decode_page_token(token, scope)


def paginate(rows: list[tuple[int, dict]], limit: int, scope: str) -> tuple[list[dict], str | None]:
    """rows holds up to limit+1 (seq, doc): the extra one only proves there is a next page."""
    page = rows[:limit]
    token = encode_token(scope, page[-1][0]) if len(rows) > limit and page else None
    return [doc for _, doc in page], token


# --- the asynchronous status changes -------------------------------------------------------------------------


def page_of(
    key: str, rows: list[tuple[int, dict]], limit: int, scope: str, shape: Any = None
) -> dict[str, Any]:
    """A paginated answer: `{key: [...], "nextToken"?}` (documents reshaped by `shape` when given)."""
    docs, token = paginate(rows, limit, scope)
    out: dict[str, Any] = {key: [shape(d) for d in docs] if shape else docs}
    if token:
        out["nextToken"] = token
    return out


def describe_resources(
    ctx: RequestContext, params: dict[str, Any], kind: str, refs_key: str, scope: str
) -> dict:
    """DescribeComputeEnvironments / DescribeJobQueues: by names or ARNs, or every one, page by page."""
    refs = check_describe_refs(opt_list(params, refs_key), refs_key)
    limit = page_size(params)
    conn = ctx.service.db.conn
    if refs:
        return {refs_key: store.find_resources(conn, kind, ctx.account, ctx.region, refs)}
    after = decode_token(opt_str(params, "nextToken"), scope)
    return page_of(
        refs_key, store.page_resources(conn, kind, ctx.account, ctx.region, after, limit + 1), limit, scope
    )


def schedule_settle(ctx: RequestContext, kind: str, arn: str) -> None:
    """Finish a CREATING/UPDATING/DELETING change shortly, on the event loop (as AWS does asynchronously)."""
    service = ctx.service
    delay = float(getattr(service.settings, "resource_create_delay", 0.05))
    asyncio.get_running_loop().call_later(delay, _settle_callback, service, kind, arn)


def _settle_callback(service: Any, kind: str, arn: str) -> None:
    if service.db is None:  # the server stopped: the next start completes the change
        return
    try:
        with service.db.tx() as conn:
            found = store.resource_by_arn(conn, arn)
            deleted = found is not None and _settle(conn, kind, arn, found[1])
        if deleted and kind == store.KIND_JQ:
            queue_deleted(service, arn)
        wake_scheduler(service)
    except Exception:
        log.exception("completing the status change of %s failed; it completes at the next start", arn)


def _settle(conn: Any, kind: str, arn: str, doc: dict) -> bool:
    """Complete one pending change; True when the resource was removed."""
    status = doc.get("status")
    if status == "DELETING":
        store.delete_resource(conn, arn)
        return True
    if status in ("CREATING", "UPDATING"):
        doc["status"] = "VALID"
        doc["statusReason"] = VALID_REASON.get(kind, "Healthy")
        store.update_resource_data(conn, arn, doc)
    return False


def finish_pending_creates(service: Any) -> None:
    """At start: complete every change a previous run left CREATING, UPDATING or DELETING."""
    removed_queues: list[str] = []
    with service.db.tx() as conn:
        for kind, arn, doc in store.transitional_resources(conn):
            if _settle(conn, kind, arn, doc) and kind == store.KIND_JQ:
                removed_queues.append(arn)
    for arn in removed_queues:
        queue_deleted(service, arn)


def wake_scheduler(service: Any) -> None:
    wake = getattr(getattr(service, "scheduler", None), "wake", None)
    if callable(wake):
        wake()


def queue_deleted(service: Any, queue_arn: str) -> None:
    """Tell the scheduler a queue is gone, so that it fails the queue's remaining jobs ("JobQueue deleted")."""
    hook = getattr(getattr(service, "scheduler", None), "on_queue_deleted", None)
    if callable(hook):
        try:
            result = hook(queue_arn)
            if asyncio.iscoroutine(result):  # the hook may be a coroutine function
                asyncio.ensure_future(result)
        except Exception:
            log.exception("scheduler.on_queue_deleted(%s) failed", queue_arn)


def not_found(kind: str, ref: str) -> ClientException:
    return ClientException(f"{LABEL[kind]} {ref} does not exist")
