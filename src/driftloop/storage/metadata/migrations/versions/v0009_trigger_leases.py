"""Loop triggers carry a lease (the process working on a trigger names itself and renews an expiry),
and at most one trigger per model is active (waiting, training or shadow) at a time.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from driftloop.storage.metadata.tables import ACTIVE_TRIGGER_STATES, UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("loop_triggers", sa.Column("holder", sa.String(200), nullable=True))
    op.add_column("loop_triggers", sa.Column("lease_expires_at", UTCDateTime(), nullable=True))
    # Before the rule held, a race could leave two active triggers of one model: the newest stays.
    op.execute(
        "UPDATE loop_triggers SET state = 'failed' WHERE state IN ('waiting', 'training', 'shadow') AND id < "
        "(SELECT MAX(t.id) FROM loop_triggers t WHERE t.model = loop_triggers.model AND "
        "t.state IN ('waiting', 'training', 'shadow'))"
    )
    where = sa.text(ACTIVE_TRIGGER_STATES)
    op.create_index(
        "uq_loop_triggers_one_active",
        "loop_triggers",
        ["model"],
        unique=True,
        sqlite_where=where,
        postgresql_where=where,
    )


def downgrade() -> None:
    op.drop_index("uq_loop_triggers_one_active", table_name="loop_triggers")
    with op.batch_alter_table("loop_triggers") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("holder")
