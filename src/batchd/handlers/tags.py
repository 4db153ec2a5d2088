"""TagResource, UntagResource, ListTagsForResource.

Taggable: compute environments, job queues, scheduling policies, job definition revisions and jobs (not the
children of array or multi-node jobs). The tags live in the resource's own document, so they are deleted with it.
"""

from __future__ import annotations

from typing import Any

from batchd.api.errors import ClientException
from batchd.api.registry import RequestContext, operation
from batchd.domain.arns import parse_arn
from batchd.handlers.resources_common import MAX_TAGS, check_tags, opt_list, require_str
from batchd.store import resources as store


def _checked_arn(ctx: RequestContext, conn: Any, arn: str) -> None:
    """Refuse malformed, child-job and unknown (including other accounts' and regions') ARNs."""
    parsed = parse_arn(arn)
    if parsed is None:
        raise ClientException(
            f"resourceArn {arn!r} is not a valid AWS Batch ARN "
            "(arn:PARTITION:batch:REGION:ACCOUNT:TYPE/NAME, TYPE one of compute-environment, job-queue, "
            "job-definition, scheduling-policy, job)"
        )
    if parsed.resource_type == "job":
        if ":" in parsed.resource or "#" in parsed.resource:
            raise ClientException(
                f"Tagging is not supported for child jobs of array and multi-node parallel jobs ({arn})"
            )
        row = None
        if (parsed.account, parsed.region) == (ctx.account, ctx.region):
            row = store.find_job_row(conn, ctx.account, ctx.region, parsed.resource)
        if row is not None and row.parent_id is not None:
            raise ClientException(
                f"Tagging is not supported for child jobs of array and multi-node parallel jobs ({arn})"
            )
    if (parsed.account, parsed.region) != (ctx.account, ctx.region) or store.get_tags(conn, arn) is None:
        raise ClientException(f"Resource not found: {arn}")


@operation("TagResource")
async def tag_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arn = require_str(params, "resourceArn")
    new_tags = check_tags(params.get("tags"))
    if not new_tags:
        raise ClientException("tags must hold at least one tag")
    with ctx.service.db.tx() as conn:
        _checked_arn(ctx, conn, arn)
        tags = store.get_tags(conn, arn) or {}
        tags.update(new_tags)
        if len(tags) > MAX_TAGS:
            raise ClientException(f"A resource can have at most {MAX_TAGS} tags; this would make {len(tags)}")
        store.set_tags(conn, arn, tags)
    return {}


@operation("UntagResource")
async def untag_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arn = require_str(params, "resourceArn")
    keys = opt_list(params, "tagKeys")
    if not keys or len(keys) > MAX_TAGS or not all(isinstance(k, str) and 1 <= len(k) <= 128 for k in keys):
        raise ClientException(f"tagKeys must hold 1 to {MAX_TAGS} tag keys of 1 to 128 characters")
    with ctx.service.db.tx() as conn:
        _checked_arn(ctx, conn, arn)
        tags = store.get_tags(conn, arn) or {}
        for key in keys:
            tags.pop(key, None)  # removing a key that isn't there is not an error
        store.set_tags(conn, arn, tags)
    return {}


@operation("ListTagsForResource")
async def list_tags_for_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arn = require_str(params, "resourceArn")
    conn = ctx.service.db.conn
    _checked_arn(ctx, conn, arn)
    return {"tags": store.get_tags(conn, arn) or {}}
