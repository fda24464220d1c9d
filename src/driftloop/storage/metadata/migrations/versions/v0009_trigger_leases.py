"""Loop triggers carry a lease: the process working on a trigger names itself and renews an expiry.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from driftloop.storage.metadata.tables import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("loop_triggers", sa.Column("holder", sa.String(200), nullable=True))
    op.add_column("loop_triggers", sa.Column("lease_expires_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("loop_triggers") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("holder")
