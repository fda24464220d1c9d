"""Monitoring decisions: one row per ``driftloop monitor`` pass.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from driftloop.storage.metadata.tables import JSONType, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("window_end", UTCDateTime(), nullable=False),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("reasons", JSONType, nullable=False),
        sa.Column("summary", JSONType, nullable=False),
        sa.Column("report_uri", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_monitor_decisions_model_created", "monitor_decisions", ["model", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_monitor_decisions_model_created", table_name="monitor_decisions")
    op.drop_table("monitor_decisions")
