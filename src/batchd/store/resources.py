"""Named queries over `resources` (compute environments, job queues, scheduling policies) and `job_definitions`.

Every function takes a SQLAlchemy Connection: `service.db.conn` for reads, the connection of `service.db.tx()`
for writes. The `data` column holds the AWS detail document (ComputeEnvironmentDetail, JobQueueDetail,
SchedulingPolicyDetail, JobDefinition) exactly as Describe* returns it, `tags` included; each call returns a
freshly decoded copy, so callers may mutate what they get.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from batchd.domain.arns import NAME_RE, parse_arn
from batchd.store.schema import job_definitions, jobs, resources

KIND_CE = "compute-environment"
KIND_JQ = "job-queue"
KIND_SP = "scheduling-policy"
KINDS = (KIND_CE, KIND_JQ, KIND_SP)

# Statuses a resource passes through on its way to VALID (or to removal).
TRANSITIONAL = ("CREATING", "UPDATING", "DELETING")

# ASCII digits only: `\d` would take "١" (an Arabic-Indic one) as revision 1.
_JD_REF_RE = re.compile(r"^([A-Za-z0-9_-]{1,128})(?::([0-9]{1,9}))?$")


# --- compute environments, job queues, scheduling policies ---------------------------------------------------


def _arn_matches(arn: str, kind: str, account: str, region: str) -> bool:
    parsed = parse_arn(arn)
    return parsed is not None and (parsed.resource_type, parsed.account, parsed.region) == (
        kind,
        account,
        region,
    )


def _resource_where(kind: str, account: str, region: str, name_or_arn: str) -> Any | None:
    base = and_(resources.c.kind == kind, resources.c.account == account, resources.c.region == region)
    if name_or_arn.startswith("arn:"):
        # An ARN of another account, region or resource type names nothing the caller can see.
        if not _arn_matches(name_or_arn, kind, account, region):
            return None
        return and_(base, resources.c.arn == name_or_arn)
    if not NAME_RE.match(name_or_arn):
        return None
    return and_(base, resources.c.name == name_or_arn)


def find_resource(conn: Connection, kind: str, account: str, region: str, name_or_arn: str) -> dict | None:
    """The detail document of the caller's resource named by name or ARN, or None."""
    where = _resource_where(kind, account, region, name_or_arn)
    if where is None:
        return None
    return conn.execute(select(resources.c.data).where(where)).scalar()


def find_resources(
    conn: Connection, kind: str, account: str, region: str, names_or_arns: list[str]
) -> list[dict]:
    """Documents for the names/ARNs that exist, in request order, each at most once; unknown ones are omitted."""
    out: list[dict] = []
    seen: set[str] = set()
    for ref in names_or_arns:
        doc = find_resource(conn, kind, account, region, ref)
        if doc is not None:
            arn = _doc_arn(kind, doc)
            if arn not in seen:
                seen.add(arn)
                out.append(doc)
    return out


def page_resources(
    conn: Connection, kind: str, account: str, region: str, after_seq: int, limit: int
) -> list[tuple[int, dict]]:
    """Up to `limit` (seq, document) pairs with seq > after_seq, in creation order (stable under inserts)."""
    rows = conn.execute(
        select(resources.c.seq, resources.c.data)
        .where(
            resources.c.kind == kind,
            resources.c.account == account,
            resources.c.region == region,
            resources.c.seq > after_seq,
        )
        .order_by(resources.c.seq)
        .limit(limit)
    ).all()
    return [(r.seq, r.data) for r in rows]


def all_resources(conn: Connection, kind: str) -> list[dict]:
    """Every resource of a kind in every account and region (the scheduler's view); the ARN tells whose it is."""
    return list(
        conn.execute(
            select(resources.c.data).where(resources.c.kind == kind).order_by(resources.c.seq)
        ).scalars()
    )


def region_resources(conn: Connection, kind: str, account: str, region: str) -> list[dict]:
    return list(
        conn.execute(
            select(resources.c.data)
            .where(resources.c.kind == kind, resources.c.account == account, resources.c.region == region)
            .order_by(resources.c.seq)
        ).scalars()
    )


def resource_by_arn(conn: Connection, arn: str) -> tuple[str, dict] | None:
    """(kind, document) of the resource with this exact ARN, or None."""
    row = conn.execute(select(resources.c.kind, resources.c.data).where(resources.c.arn == arn)).first()
    return (row.kind, row.data) if row else None


def insert_resource(
    conn: Connection, kind: str, account: str, region: str, name: str, arn: str, data: dict
) -> int:
    result = conn.execute(
        insert(resources).values(kind=kind, account=account, region=region, name=name, arn=arn, data=data)
    )
    return int(result.inserted_primary_key[0])


def update_resource_data(conn: Connection, arn: str, data: dict) -> None:
    """Replace the detail document of the resource (compute environment, job queue or policy) with this ARN."""
    conn.execute(update(resources).where(resources.c.arn == arn).values(data=data))


def delete_resource(conn: Connection, arn: str) -> None:
    conn.execute(delete(resources).where(resources.c.arn == arn))


def transitional_resources(conn: Connection) -> list[tuple[str, str, dict]]:
    """(kind, arn, document) of every resource whose status is CREATING, UPDATING or DELETING."""
    rows = conn.execute(
        select(resources.c.kind, resources.c.arn, resources.c.data).order_by(resources.c.seq)
    ).all()
    return [(r.kind, r.arn, r.data) for r in rows if r.data.get("status") in TRANSITIONAL]


def queues_using_compute_environment(conn: Connection, account: str, region: str, ce_arn: str) -> list[dict]:
    """Job queues whose computeEnvironmentOrder names this compute environment."""
    return [
        q
        for q in region_resources(conn, KIND_JQ, account, region)
        if any(o.get("computeEnvironment") == ce_arn for o in q.get("computeEnvironmentOrder", []))
    ]


def queues_using_policy(conn: Connection, account: str, region: str, policy_arn: str) -> list[dict]:
    return [
        q
        for q in region_resources(conn, KIND_JQ, account, region)
        if q.get("schedulingPolicyArn") == policy_arn
    ]


def _doc_arn(kind: str, doc: dict) -> str:
    key = {KIND_CE: "computeEnvironmentArn", KIND_JQ: "jobQueueArn", KIND_SP: "arn"}[kind]
    return doc[key]


# --- job definitions -------------------------------------------------------------------------------------------


def parse_job_definition_ref(account: str, region: str, ref: str) -> tuple[str, int | None] | None:
    """`name`, `name:rev`, or an ARN with or without `:rev` -> (name, rev or None); None if malformed/foreign."""
    if ref.startswith("arn:"):
        parsed = parse_arn(ref)
        if parsed is None or (parsed.resource_type, parsed.account, parsed.region) != (
            "job-definition",
            account,
            region,
        ):
            return None
        ref = parsed.resource
    m = _JD_REF_RE.match(ref)
    if not m:
        return None
    return m.group(1), int(m.group(2)) if m.group(2) is not None else None


def find_job_definition(
    conn: Connection, account: str, region: str, ref: str, *, active_only: bool = False
) -> dict | None:
    """Resolve a job definition reference as SubmitJob and DescribeJobDefinitions read it.

    With a revision, that revision (None if it is INACTIVE and active_only); without one, the latest ACTIVE
    revision. None when nothing matches.
    """
    parsed = parse_job_definition_ref(account, region, ref)
    if parsed is None:
        return None
    name, revision = parsed
    where = [
        job_definitions.c.account == account,
        job_definitions.c.region == region,
        job_definitions.c.name == name,
    ]
    if revision is None:
        where.append(job_definitions.c.status == "ACTIVE")
        stmt = (
            select(job_definitions.c.data).where(*where).order_by(job_definitions.c.revision.desc()).limit(1)
        )
    else:
        where.append(job_definitions.c.revision == revision)
        if active_only:
            where.append(job_definitions.c.status == "ACTIVE")
        stmt = select(job_definitions.c.data).where(*where)
    return conn.execute(stmt).scalar()


def find_active_job_definition(conn: Connection, account: str, region: str, ref: str) -> dict | None:
    """What SubmitJob may use: the named ACTIVE revision, or the latest ACTIVE one; INACTIVE/missing -> None."""
    return find_job_definition(conn, account, region, ref, active_only=True)


def job_definition_revisions(conn: Connection, account: str, region: str, name: str) -> list[dict]:
    """Every revision of a name, any status, oldest first."""
    return list(
        conn.execute(
            select(job_definitions.c.data)
            .where(
                job_definitions.c.account == account,
                job_definitions.c.region == region,
                job_definitions.c.name == name,
            )
            .order_by(job_definitions.c.revision)
        ).scalars()
    )


def next_job_definition_revision(conn: Connection, account: str, region: str, name: str) -> int:
    """1 for a new name, else one more than the highest revision ever registered (never reused)."""
    top = conn.execute(
        select(func.max(job_definitions.c.revision)).where(
            job_definitions.c.account == account,
            job_definitions.c.region == region,
            job_definitions.c.name == name,
        )
    ).scalar()
    return int(top or 0) + 1


def insert_job_definition(
    conn: Connection, account: str, region: str, name: str, revision: int, arn: str, data: dict
) -> None:
    conn.execute(
        insert(job_definitions).values(
            account=account,
            region=region,
            name=name,
            revision=revision,
            status=data["status"],
            arn=arn,
            data=data,
        )
    )


def update_job_definition_data(conn: Connection, arn: str, data: dict) -> None:
    """Replace a job definition's document; the status column follows data["status"]."""
    conn.execute(
        update(job_definitions).where(job_definitions.c.arn == arn).values(data=data, status=data["status"])
    )


def page_job_definitions(
    conn: Connection,
    account: str,
    region: str,
    after_seq: int,
    limit: int,
    *,
    name: str | None = None,
    status: str | None = None,
) -> list[tuple[int, dict]]:
    where = [
        job_definitions.c.account == account,
        job_definitions.c.region == region,
        job_definitions.c.seq > after_seq,
    ]
    if name is not None:
        where.append(job_definitions.c.name == name)
    if status is not None:
        where.append(job_definitions.c.status == status)
    rows = conn.execute(
        select(job_definitions.c.seq, job_definitions.c.data)
        .where(*where)
        .order_by(job_definitions.c.seq)
        .limit(limit)
    ).all()
    return [(r.seq, r.data) for r in rows]


def job_definition_by_arn(conn: Connection, arn: str) -> dict | None:
    return conn.execute(select(job_definitions.c.data).where(job_definitions.c.arn == arn)).scalar()


# --- tags ----------------------------------------------------------------------------------------------------------
#
# A taggable ARN is one of: a compute environment, job queue or scheduling policy (resources.data.tags), a job
# definition revision (job_definitions.data.tags), or a job (jobs.spec.tags). Array children and MNP nodes are
# not taggable; callers check that before calling these.


def get_tags(conn: Connection, arn: str) -> dict[str, str] | None:
    """The tags of the resource with this ARN, or None if there is no such resource."""
    located = _locate_taggable(conn, arn)
    if located is None:
        return None
    return dict(located[1].get("tags") or {})


def set_tags(conn: Connection, arn: str, tags: dict[str, str]) -> bool:
    """Replace the tags of the resource with this ARN; False if there is no such resource."""
    located = _locate_taggable(conn, arn)
    if located is None:
        return False
    table, doc = located
    doc["tags"] = dict(tags)
    if table == "resources":
        update_resource_data(conn, arn, doc)
    elif table == "job_definitions":
        update_job_definition_data(conn, arn, doc)
    else:
        parsed = parse_arn(arn)
        assert parsed is not None
        from batchd.store.jobs import forget_records

        forget_records(conn, (parsed.resource,))
        conn.execute(
            update(jobs)
            .where(
                jobs.c.id == parsed.resource, jobs.c.account == parsed.account, jobs.c.region == parsed.region
            )
            .values(spec=doc, detail=None)  # its stored DescribeJobs record is rendered again when next read
        )
    return True


def find_job_row(conn: Connection, account: str, region: str, job_id: str) -> Any | None:
    """(id, parent_id, spec) of the caller's job with this id, or None."""
    return conn.execute(
        select(jobs.c.id, jobs.c.parent_id, jobs.c.spec).where(
            jobs.c.id == job_id, jobs.c.account == account, jobs.c.region == region
        )
    ).first()


def _locate_taggable(conn: Connection, arn: str) -> tuple[str, dict] | None:
    parsed = parse_arn(arn)
    if parsed is None:
        return None
    if parsed.resource_type in KINDS:
        found = resource_by_arn(conn, arn)
        if found is None or found[0] != parsed.resource_type:
            return None
        return "resources", found[1]
    if parsed.resource_type == "job-definition":
        doc = job_definition_by_arn(conn, arn)
        return ("job_definitions", doc) if doc is not None else None
    if parsed.resource_type == "job":
        row = find_job_row(conn, parsed.account, parsed.region, parsed.resource)
        if row is None or row.parent_id is not None:
            return None
        spec = dict(row.spec or {})
        return "jobs", spec
    return None


# --- a read-through cache for the request hot path (SubmitJob) ----------------------------------------------
# Queues and job definitions change rarely and are read on every SubmitJob. Entries are dropped by
# `invalidate_cache()`, which the API calls after every write that is not a job operation, the scheduler calls
# on `wake()`, and another server's "resources" notification triggers. With several servers an entry also
# expires after CACHE_TTL seconds, in case a notification was lost. Cached documents are shared: read-only.

CACHE_TTL = 2.0
_cache: dict[tuple, tuple[float, dict | None]] = {}


def invalidate_cache() -> None:
    _cache.clear()


def _cached(key: tuple, load: Any, ttl: float | None) -> dict | None:
    import time

    hit = _cache.get(key)
    now = time.monotonic()
    if hit is not None and (ttl is None or now - hit[0] < ttl):
        return hit[1]
    value = load()
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[key] = (now, value)
    return value


def find_resource_cached(conn: Connection, kind: str, account: str, region: str, name_or_arn: str,
                         ttl: float | None = None) -> dict | None:
    return _cached(("r", kind, account, region, name_or_arn),
                   lambda: find_resource(conn, kind, account, region, name_or_arn), ttl)


def find_active_job_definition_cached(conn: Connection, account: str, region: str, ref: str,
                                      ttl: float | None = None) -> dict | None:
    return _cached(("jd", account, region, ref),
                   lambda: find_job_definition(conn, account, region, ref, active_only=True), ttl)
