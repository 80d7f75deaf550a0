"""The first archive schema: jobs and attempts, partitioned by month on PostgreSQL.

Spelled out here rather than taken from `cancelq.archive.schema`, so this migration stays
what it was when the schema moves on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
#: Job ids compare byte by byte on PostgreSQL ("C"), so a prefix (`LIKE 'abcd%'`, what an
#: operator types) is an index range; SQLite's default comparison already is.
JOB_ID = sa.String(36).with_variant(sa.String(36, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "cancelq_jobs",
        sa.Column("job_id", JOB_ID, primary_key=True),
        sa.Column("created_at", TZ, primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("run_id", sa.String(200)),
        sa.Column("requested_by", sa.String(200)),
        sa.Column("reason", sa.Text),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32)),
        sa.Column("attempt_count", sa.Integer, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("settled_at", TZ, nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("archived_at", TZ, nullable=False),
        postgresql_partition_by="RANGE (created_at)",
    )
    op.create_index("ix_cancelq_jobs_case", "cancelq_jobs", ["case_id", "created_at"])
    op.create_index("ix_cancelq_jobs_event", "cancelq_jobs", ["event_id", "created_at"])
    op.create_index("ix_cancelq_jobs_run", "cancelq_jobs", ["run_id", "outcome"])
    op.create_index("ix_cancelq_jobs_outcome", "cancelq_jobs", ["outcome", "settled_at"])
    op.create_index("ix_cancelq_jobs_settled", "cancelq_jobs", ["settled_at"])
    op.create_table(
        "cancelq_attempts",
        sa.Column("job_id", JOB_ID, primary_key=True),
        sa.Column("job_created_at", TZ, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("duration_ms", sa.Float),
        sa.Column("http_status", sa.Integer),
        sa.Column("verdict", sa.String(32)),
        sa.Column("error_class", sa.String(200)),
        sa.Column("error", sa.Text),
        sa.Column("retry_in_seconds", sa.Float),
        sa.Column("body_excerpt", sa.Text),
        postgresql_partition_by="RANGE (job_created_at)",
    )


def downgrade() -> None:
    op.drop_table("cancelq_attempts")
    op.drop_table("cancelq_jobs")
