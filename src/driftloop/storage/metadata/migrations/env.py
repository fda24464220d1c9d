"""Alembic environment: always runs on the connection driftloop hands in (see Database.upgrade)."""

from __future__ import annotations

from alembic import context

from driftloop.storage.metadata.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - guarded by Database.upgrade
    raise RuntimeError("driftloop migrations run through driftloop.storage.metadata.Database.upgrade()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
