"""Stored monitoring decisions (the ``monitor_decisions`` table): record one pass, list the latest.

The rows hold the decision, its reasons and a small summary (drift share, per-feature scores, the
decay metric) — enough to draw a trend and to let a scheduler trigger on it — and point at the full
report on the object store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from driftloop.storage.metadata import MonitorDecisionRow

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from driftloop.storage.metadata import Database

__all__ = ["MonitorDecision", "decision_history", "record_decision"]


@dataclass(frozen=True)
class MonitorDecision:
    """One recorded monitoring pass of ``model``/``version`` over ``[start, end)``."""

    id: int
    model: str
    version: int
    start: datetime
    end: datetime
    decision: str
    reasons: tuple[str, ...]
    summary: dict[str, Any]
    report_uri: str
    created_at: datetime

    @property
    def period(self) -> tuple[datetime, datetime]:
        """The time the monitored traffic describes: the capture window ``[start, end)``, unless the pass
        recorded another (a replay of recorded data, the demo's simulated days: ``summary["period"]``)."""
        recorded = self.summary.get("period")
        if isinstance(recorded, dict):
            try:
                start, end = (datetime.fromisoformat(recorded[k]) for k in ("start", "end"))
            except (KeyError, TypeError, ValueError):
                return self.start, self.end  # a malformed record: the capture window is still right
            return _utc(start), _utc(end)
        return self.start, self.end


def record_decision(
    db: Database,
    *,
    model: str,
    version: int,
    start: datetime,
    end: datetime,
    decision: str,
    reasons: Sequence[str],
    summary: Mapping[str, Any],
    report_uri: str,
    created_at: datetime,
) -> MonitorDecision:
    """Insert one decision row and return it with its id (:class:`MetadataError` when unreachable)."""
    row = MonitorDecisionRow(
        model=model,
        version=version,
        window_start=start,
        window_end=end,
        decision=decision,
        reasons=list(reasons),
        summary=dict(summary),
        report_uri=report_uri,
        created_at=created_at,
    )
    with db.session() as session:
        session.add(row)
        session.flush()
        return _decision(row)


def decision_history(db: Database, model: str, *, limit: int = 50) -> list[MonitorDecision]:
    """The latest ``limit`` decisions of ``model``, oldest first."""
    with db.session() as session:
        rows = session.scalars(
            sa.select(MonitorDecisionRow)
            .where(MonitorDecisionRow.model == model)
            .order_by(MonitorDecisionRow.created_at.desc(), MonitorDecisionRow.id.desc())
            .limit(limit)
        ).all()
        return [_decision(r) for r in reversed(rows)]


def _decision(row: MonitorDecisionRow) -> MonitorDecision:
    return MonitorDecision(
        id=row.id,
        model=row.model,
        version=row.version,
        start=row.window_start,
        end=row.window_end,
        decision=row.decision,
        reasons=tuple(row.reasons),
        summary=dict(row.summary),
        report_uri=row.report_uri,
        created_at=row.created_at,
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
