"""The archive's tables, as SQLAlchemy Core: one row per job, one per attempt.

The primary keys carry `created_at` because PostgreSQL partitions both tables by the month
a job was created (a partitioned table's keys must include its partition key), and a job's
creation time never changes, not even when a dead job is replayed and settles again: the
same job always lands on the same row. An attempt's key is its position in the job's
attempt list (`seq`), which Redis only ever appends to; its `number` restarts at 1 after a
replay, so it cannot be the key. SQLite gets the same tables, unpartitioned.

There is no foreign key from attempts to jobs: a job and its attempts are written in one
transaction, and pruned together, a month of each (docs/archive.md); a key checked on
every attempt row would cost the archive rate and protect nothing more.

The indexes answer what operators ask: a case's jobs, an event's, a run's (with its
outcomes, for counts), the jobs that ended with an outcome in a window, and by time.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

#: The cap on a body excerpt kept in the archive (the store keeps up to a few KiB).
BODY_EXCERPT_CHARS: Final = 2_000

#: Byte-order job ids on PostgreSQL: a typed prefix is an index range (see the migration).
JOB_ID = String(36).with_variant(String(36, collation="C"), "postgresql")

metadata = MetaData()

jobs = Table(
    "cancelq_jobs",
    metadata,
    Column("job_id", JOB_ID, primary_key=True),
    Column("created_at", DateTime(timezone=True), primary_key=True),
    Column("case_id", String(36), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("run_id", String(200)),
    Column("requested_by", String(200)),
    Column("reason", Text),
    Column("state", String(16), nullable=False),
    Column("outcome", String(32)),
    Column("attempt_count", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("settled_at", DateTime(timezone=True), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("archived_at", DateTime(timezone=True), nullable=False),
    Index("ix_cancelq_jobs_case", "case_id", "created_at"),
    Index("ix_cancelq_jobs_event", "event_id", "created_at"),
    Index("ix_cancelq_jobs_run", "run_id", "outcome"),
    Index("ix_cancelq_jobs_outcome", "outcome", "settled_at"),
    Index("ix_cancelq_jobs_settled", "settled_at"),
    postgresql_partition_by="RANGE (created_at)",
)

attempts = Table(
    "cancelq_attempts",
    metadata,
    Column("job_id", JOB_ID, primary_key=True),
    Column("job_created_at", DateTime(timezone=True), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("number", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("duration_ms", Float),
    Column("http_status", Integer),
    Column("verdict", String(32)),
    Column("error_class", String(200)),
    Column("error", Text),
    Column("retry_in_seconds", Float),
    Column("body_excerpt", Text),
    # the worker process that made the call, "host:pid" (migration 0002)
    Column("worker", String(200)),
    postgresql_partition_by="RANGE (job_created_at)",
)
