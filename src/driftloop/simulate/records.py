"""The metadata record of a simulation: what was asked, where it was written, what came out."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from driftloop import __version__
from driftloop.storage.metadata import SimulationRow

if TYPE_CHECKING:
    from driftloop.simulate import SimulationRequest, SimulationSummary
    from driftloop.storage.metadata import Database

__all__ = ["list_simulations", "record_simulation"]


def record_simulation(
    db: Database, request: SimulationRequest, summary: SimulationSummary, output_uri: str
) -> SimulationRow:
    """Insert one ``simulations`` row for a finished run and return it."""
    row = SimulationRow(
        id=uuid.uuid4().hex,
        created_at=datetime.now(UTC),
        dataset=request.dataset,
        output_uri=output_uri,
        start_date=request.start,
        days=request.days,
        rows_per_day=request.rows_per_day,
        machines=request.machines,
        seed=request.seed,
        label_delay_s=request.label_delay.total_seconds(),
        drifts=[
            {"name": d.name, "start": d.start.isoformat(), "severity": d.severity, "params": dict(d.params)}
            for d in summary.drifts
        ],
        rows=summary.rows,
        failures=dict(summary.failures),
        files=len(summary.raw_keys) + len(summary.label_keys),
        driftloop_version=__version__,
    )
    with db.session() as session:
        session.add(row)
    return row


def list_simulations(db: Database, dataset: str | None = None) -> list[SimulationRow]:
    """Recorded simulations, newest first, optionally for one dataset."""
    query = sa.select(SimulationRow).order_by(SimulationRow.created_at.desc())
    if dataset is not None:
        query = query.where(SimulationRow.dataset == dataset)
    with db.session() as session:
        return list(session.scalars(query))
