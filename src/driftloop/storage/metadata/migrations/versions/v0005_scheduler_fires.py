"""The scheduler: APScheduler's job store and the per-fire claims that stop a second run.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from driftloop.storage.metadata.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # APScheduler's SQLAlchemyJobStore schema, column for column: it creates the table itself when
    # missing, and two schedulers starting together would race on that CREATE; here the migration lock
    # serialises it.
    op.create_table(
        "scheduler_jobs",
        sa.Column("id", sa.Unicode(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_scheduler_jobs_next_run_time", "scheduler_jobs", ["next_run_time"])
    op.create_table(
        "scheduler_fires",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(191), nullable=False),
        sa.Column("run_time", UTCDateTime(), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.UniqueConstraint("job_id", "run_time", name="uq_scheduler_fires_job_run_time"),
    )


def downgrade() -> None:
    op.drop_table("scheduler_fires")
    op.drop_index("ix_scheduler_jobs_next_run_time", table_name="scheduler_jobs")
    op.drop_table("scheduler_jobs")
