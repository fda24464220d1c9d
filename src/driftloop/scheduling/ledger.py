"""The closed loop's records: each trigger and what it led to, each rollback guard and its verdict.

Rows in ``loop_triggers`` and ``loop_guards`` (metadata database); these functions translate them to
frozen views, so nothing above this module touches a session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from driftloop.storage.metadata import GuardRow, TriggerRow

if TYPE_CHECKING:
    from driftloop.storage.metadata import Database

__all__ = ["ACTIVE", "Guard", "Ledger", "Trigger"]

Row = TypeVar("Row", TriggerRow, GuardRow)

ACTIVE = ("waiting", "training", "shadow")  # a retraining under way: no second one starts


@dataclass(frozen=True)
class Trigger:
    id: int
    model: str
    kind: str
    reason: str
    mode: str
    decision_id: int | None
    state: str
    pipeline_run: str | None
    candidate_version: int | None
    shadow_since: datetime | None
    detail: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Guard:
    id: int
    model: str
    version: int
    previous_version: int | None
    trigger_id: int | None
    baseline: float
    threshold: float
    state: str
    verdict: dict[str, Any]
    started_at: datetime
    until: datetime


class Ledger:
    """Reads and writes the loop's rows (:class:`MetadataError` when the database is unreachable)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add_trigger(
        self, *, model: str, kind: str, reason: str, mode: str, state: str, decision_id: int | None = None,
        detail: dict[str, Any] | None = None, now: datetime | None = None,
    ) -> Trigger:  # fmt: skip
        now = now or datetime.now(UTC)
        row = TriggerRow(
            model=model, kind=kind, reason=reason, mode=mode, decision_id=decision_id, state=state,
            pipeline_run=None, candidate_version=None, shadow_since=None, detail=dict(detail or {}),
            created_at=now, updated_at=now,
        )  # fmt: skip
        return _trigger(self._insert(row))

    def update_trigger(self, trigger_id: int, **changes: Any) -> Trigger:
        """Set columns of a trigger; ``detail`` is merged into the stored one, not replaced."""
        with self._db.session() as session:
            row = session.get_one(TriggerRow, trigger_id)
            for name, value in changes.items():
                if name == "detail":
                    row.detail = {**row.detail, **value}
                else:
                    setattr(row, name, value)
            row.updated_at = datetime.now(UTC)
            session.flush()
            return _trigger(row)

    def triggers(
        self, model: str, *, states: tuple[str, ...] | None = None, limit: int = 100
    ) -> list[Trigger]:
        """``model``'s triggers (in ``states`` when given), oldest first, the latest ``limit``."""
        with self._db.session() as session:
            query = sa.select(TriggerRow).where(TriggerRow.model == model)
            if states is not None:
                query = query.where(TriggerRow.state.in_(states))
            rows = session.scalars(query.order_by(TriggerRow.id.desc()).limit(limit)).all()
            return [_trigger(r) for r in reversed(rows)]

    def last_retraining_started(self, model: str) -> datetime | None:
        """When the latest trigger that started a retraining was recorded (any outcome since)."""
        with self._db.session() as session:
            started = session.scalar(
                sa.select(sa.func.max(TriggerRow.created_at)).where(
                    TriggerRow.model == model, TriggerRow.pipeline_run.is_not(None)
                )
            )
            return started.replace(tzinfo=UTC) if started is not None and started.tzinfo is None else started

    def add_guard(
        self, *, model: str, version: int, previous_version: int | None, trigger_id: int | None,
        baseline: float, threshold: float, started_at: datetime, until: datetime,
    ) -> Guard:  # fmt: skip
        row = GuardRow(
            model=model, version=version, previous_version=previous_version, trigger_id=trigger_id,
            baseline=baseline, threshold=threshold, state="watching", verdict={}, started_at=started_at,
            until=until, updated_at=started_at,
        )  # fmt: skip
        return _guard(self._insert(row))

    def _insert(self, row: Row) -> Row:
        with self._db.session() as session:
            session.add(row)
            session.flush()
            return row

    def update_guard(self, guard_id: int, *, state: str, verdict: dict[str, Any]) -> Guard:
        with self._db.session() as session:
            row = session.get_one(GuardRow, guard_id)
            row.state, row.verdict, row.updated_at = state, verdict, datetime.now(UTC)
            session.flush()
            return _guard(row)

    def guards(self, model: str, *, states: tuple[str, ...] | None = None) -> list[Guard]:
        with self._db.session() as session:
            query = sa.select(GuardRow).where(GuardRow.model == model)
            if states is not None:
                query = query.where(GuardRow.state.in_(states))
            return [_guard(r) for r in session.scalars(query.order_by(GuardRow.id)).all()]


def _trigger(row: TriggerRow) -> Trigger:
    return Trigger(
        id=row.id, model=row.model, kind=row.kind, reason=row.reason, mode=row.mode,
        decision_id=row.decision_id, state=row.state, pipeline_run=row.pipeline_run,
        candidate_version=row.candidate_version, shadow_since=row.shadow_since, detail=dict(row.detail),
        created_at=row.created_at, updated_at=row.updated_at,
    )  # fmt: skip


def _guard(row: GuardRow) -> Guard:
    return Guard(
        id=row.id, model=row.model, version=row.version, previous_version=row.previous_version,
        trigger_id=row.trigger_id, baseline=row.baseline, threshold=row.threshold, state=row.state,
        verdict=dict(row.verdict), started_at=row.started_at, until=row.until,
    )  # fmt: skip
