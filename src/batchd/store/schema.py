"""The tables, in SQLAlchemy Core, for SQLite and PostgreSQL alike.

Resources keep their AWS detail document in `data` (JSON) next to the few columns queries filter on. Jobs keep
what never changes after SubmitJob in `spec` (but for its `tags`, which TagResource/UntagResource rewrite) and
the attempt history in `runtime`; everything the scheduler and ListJobs filter or sort on is a real, indexed
column.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
)

# Compute environments, job queues and scheduling policies.
resources = Table(
    "resources",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("account", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("name", String(128), nullable=False),
    Column("arn", String(512), nullable=False, unique=True),
    Column("data", JSON, nullable=False),
    UniqueConstraint("kind", "account", "region", "name", name="uq_resources_name"),
)

job_definitions = Table(
    "job_definitions",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("account", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("name", String(128), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("arn", String(512), nullable=False, unique=True),
    Column("data", JSON, nullable=False),
    UniqueConstraint("account", "region", "name", "revision", name="uq_jobdef_revision"),
)
Index("ix_jobdef_name_status", job_definitions.c.account, job_definitions.c.region, job_definitions.c.name,
      job_definitions.c.status)

jobs = Table(
    "jobs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(80), nullable=False, unique=True),
    Column("account", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("queue_arn", String(512), nullable=False),
    Column("name", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("started_at", BigInteger),
    Column("stopped_at", BigInteger),
    Column("status_reason", Text),
    Column("jd_arn", String(512), nullable=False),
    Column("share_id", String(255)),
    Column("parent_id", String(80)),
    Column("array_index", Integer),
    Column("array_size", Integer),
    Column("is_cancelled", Boolean, nullable=False, default=False),
    Column("is_terminated", Boolean, nullable=False, default=False),
    Column("cancel_reason", Text),
    Column("attempt", Integer, nullable=False, default=0),
    Column("ce_arn", String(512)),
    Column("vcpus", Float, nullable=False, default=1.0),
    Column("memory", Integer, nullable=False, default=0),
    Column("gpus", Integer, nullable=False, default=0),
    Column("pending_deps", Integer, nullable=False, default=0),
    Column("runnable_at", BigInteger),
    Column("deadline_at", BigInteger),
    Column("owner", String(64)),
    Column("spec", JSON, nullable=False),
    Column("runtime", JSON, nullable=False),
    # Schema version 4: the DescribeJobs record as JSON text, rewritten by every write of the row (NULL: render
    # it from the row when read).
    Column("detail", Text),
)
Index("ix_jobs_queue_status", jobs.c.queue_arn, jobs.c.status, jobs.c.seq)
Index("ix_jobs_parent", jobs.c.parent_id, jobs.c.array_index)
Index("ix_jobs_status", jobs.c.status)
# Schema version 2: "the caller's most recent jobs" (DescribeLogStreams, FilterLogEvents).
Index("ix_jobs_account_region_seq", jobs.c.account, jobs.c.region, jobs.c.seq)
# Schema version 5: array parents waiting for their children (a handful), without scanning PENDING children.
PENDING_PARENTS_WHERE = "status = 'PENDING' AND parent_id IS NULL AND array_size IS NOT NULL"
Index("ix_jobs_pending_parents", jobs.c.seq, sqlite_where=text(PENDING_PARENTS_WHERE),
      postgresql_where=text(PENDING_PARENTS_WHERE))

job_deps = Table(
    "job_deps",
    metadata,
    Column("job_id", String(80), nullable=False),
    Column("depends_on", String(80), nullable=False),
    Column("type", String(16)),
)
Index("ix_job_deps_on", job_deps.c.depends_on)
Index("ix_job_deps_job", job_deps.c.job_id)

# The activity log: one row per job state change, detail = the job's DescribeJobs record.
events = Table(
    "events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("account", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("job_id", String(80), nullable=False),
    Column("time", BigInteger, nullable=False),
    Column("detail", JSON, nullable=False),
)
Index("ix_events_job", events.c.job_id, events.c.seq)


# Schema version 3: several servers on one PostgreSQL database.
servers = Table(
    "servers",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("url", String(256)),
    Column("started_at", BigInteger, nullable=False),
    Column("heartbeat_at", BigInteger, nullable=False),
    Column("compute_environments", JSON, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)
