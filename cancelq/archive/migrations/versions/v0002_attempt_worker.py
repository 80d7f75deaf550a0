"""Each attempt names the worker process that made the call ("host:pid").

A nullable column: attempts archived before it keep NULL (their records never had a worker).
On PostgreSQL `ADD COLUMN` on the partitioned parent reaches every month's partition, and
without a default it rewrites nothing, so it is instant on an archive of any size.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cancelq_attempts", sa.Column("worker", sa.String(200)))


def downgrade() -> None:
    op.drop_column("cancelq_attempts", "worker")
