"""The closed loop: triggers (what fired, what it started) and rollback guards.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from driftloop.storage.metadata.tables import JSONType, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loop_triggers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("pipeline_run", sa.String(64), nullable=True),
        sa.Column("candidate_version", sa.Integer(), nullable=True),
        sa.Column("shadow_since", UTCDateTime(), nullable=True),
        sa.Column("detail", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_loop_triggers_model_created", "loop_triggers", ["model", "created_at"])
    op.create_table(
        "loop_guards",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("previous_version", sa.Integer(), nullable=True),
        sa.Column("trigger_id", sa.Integer(), nullable=True),
        sa.Column("baseline", sa.Double(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("verdict", JSONType, nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("until", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_loop_guards_model_state", "loop_guards", ["model", "state"])


def downgrade() -> None:
    op.drop_index("ix_loop_guards_model_state", table_name="loop_guards")
    op.drop_table("loop_guards")
    op.drop_index("ix_loop_triggers_model_created", table_name="loop_triggers")
    op.drop_table("loop_triggers")
