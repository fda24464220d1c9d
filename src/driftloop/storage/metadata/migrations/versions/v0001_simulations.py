"""Simulation runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from driftloop.storage.metadata.tables import JSONType, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "simulations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("output_uri", sa.Text(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("rows_per_day", sa.Integer(), nullable=False),
        sa.Column("machines", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("label_delay_s", sa.Double(), nullable=False),
        sa.Column("drifts", JSONType, nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("failures", JSONType, nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("driftloop_version", sa.String(64), nullable=False),
    )
    op.create_index("ix_simulations_dataset", "simulations", ["dataset"])


def downgrade() -> None:
    op.drop_index("ix_simulations_dataset", table_name="simulations")
    op.drop_table("simulations")
