"""Crash-safe promotion: the registry lock row becomes a lease that carries the promotion's intent.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from driftloop.storage.metadata.tables import JSONType, UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("registry_locks", sa.Column("expires_at", UTCDateTime(), nullable=True))
    op.add_column("registry_locks", sa.Column("intent", JSONType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registry_locks") as batch:
        batch.drop_column("intent")
        batch.drop_column("expires_at")
