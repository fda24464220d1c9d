"""The closed loop's records: each trigger and what it led to, each rollback guard and its verdict.

Rows in ``loop_triggers`` and ``loop_guards`` (metadata database); these functions translate them to
frozen views, so nothing above this module touches a session.

A trigger is worked on under a **lease**: :meth:`Ledger.claim` names the worker in the row (a
compare-and-set, so of two schedulers one wins) until an expiry the worker keeps renewing; every change
it then makes is conditional on still holding it (:class:`~driftloop.errors.ConflictError` once lost).
A worker that dies stops renewing, and the next one claims the trigger and resumes it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from driftloop.core.triggers import (
    ACTIVE,
    INITIAL,
    IllegalTransitionError,
    TriggerState,
    check_transition,
)
from driftloop.errors import ConflictError, DriftloopError
from driftloop.runtime.holders import holder_gone
from driftloop.storage.metadata import GuardRow, TriggerRow

if TYPE_CHECKING:
    from collections.abc import Iterator

    from driftloop.storage.metadata import Database

__all__ = ["ACTIVE", "Guard", "Ledger", "Trigger"]  # ACTIVE: re-exported for the CLI

Row = TypeVar("Row", TriggerRow, GuardRow)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trigger:
    id: int
    model: str
    kind: str
    reason: str
    mode: str
    decision_id: int | None
    state: TriggerState
    pipeline_run: str | None
    candidate_version: int | None
    shadow_since: datetime | None
    detail: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    holder: str | None = None  # the worker holding its lease, if any
    lease_expires_at: datetime | None = None

    def held_by_other(self, me: str, now: datetime) -> bool:
        """Another worker holds it and can still finish (alive, its lease not expired)."""
        return (
            bool(self.holder)
            and self.holder != me
            and not holder_gone(self.holder or "", self.lease_expires_at, now)
        )


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
        self,
        *,
        model: str,
        kind: str,
        reason: str,
        mode: str,
        state: TriggerState,
        decision_id: int | None = None,
        detail: dict[str, Any] | None = None,
        now: datetime | None = None,
        holder: str | None = None,
        lease: timedelta | None = None,
    ) -> Trigger:
        """A new trigger in one of the :data:`~driftloop.core.triggers.INITIAL` states
        (:class:`~driftloop.core.triggers.IllegalTransitionError` otherwise); with ``holder`` (and
        ``lease``) it is born claimed by that worker. :class:`ConflictError` when it would be a second
        active trigger of ``model``."""
        state = TriggerState(state)  # ValueError for a name that is no state
        if state not in INITIAL:
            raise IllegalTransitionError(f"a trigger is recorded as one of {sorted(INITIAL)}, not {state}")
        now = now or datetime.now(UTC)
        row = TriggerRow(
            model=model,
            kind=kind,
            reason=reason,
            mode=mode,
            decision_id=decision_id,
            state=state.value,
            pipeline_run=None,
            candidate_version=None,
            shadow_since=None,
            detail=dict(detail or {}),
            created_at=now,
            updated_at=now,
            holder=holder,
            lease_expires_at=datetime.now(UTC) + lease if holder and lease else None,
        )
        return _trigger(self._insert(row))

    def claim(self, trigger: Trigger, holder: str, lease: timedelta) -> Trigger | None:
        """Take ``trigger``'s lease for ``holder`` if it is free, already ours, or its holder is gone;
        None when another worker holds it (or took it since ``trigger`` was read)."""
        now = datetime.now(UTC)
        if trigger.held_by_other(holder, now):
            return None
        # Compare-and-set on the holder and state read: of two workers that saw it free, one wins.
        seen = TriggerRow.holder.is_(None) if trigger.holder is None else TriggerRow.holder == trigger.holder
        with self._db.session() as session:
            won = session.execute(
                sa.update(TriggerRow)
                .where(TriggerRow.id == trigger.id, TriggerRow.state == trigger.state.value, seen)
                .values(holder=holder, lease_expires_at=now + lease)
            )
            if int(won.rowcount) != 1:  # type: ignore[attr-defined]  # a CursorResult
                return None
            return _trigger(session.get_one(TriggerRow, trigger.id))

    def renew(self, trigger_id: int, holder: str, lease: timedelta) -> bool:
        """Push the lease's expiry on; False when ``holder`` no longer holds it."""
        with self._db.session() as session:
            renewed = session.execute(
                sa.update(TriggerRow)
                .where(TriggerRow.id == trigger_id, TriggerRow.holder == holder)
                .values(lease_expires_at=datetime.now(UTC) + lease)
            )
            return int(renewed.rowcount) == 1  # type: ignore[attr-defined]

    def release(self, trigger_id: int, holder: str) -> None:
        """Give the lease up (a no-op when it was lost)."""
        with self._db.session() as session:
            session.execute(
                sa.update(TriggerRow)
                .where(TriggerRow.id == trigger_id, TriggerRow.holder == holder)
                .values(holder=None, lease_expires_at=None)
            )

    @contextlib.contextmanager
    def holding(self, trigger: Trigger, holder: str, lease: timedelta) -> Iterator[Trigger | None]:
        """:meth:`claim` ``trigger`` for the block (None: another live worker holds it), renewed by a
        heartbeat thread every third of ``lease``, released at the end whatever happened."""
        held = self.claim(trigger, holder, lease)
        if held is None:
            yield None
            return
        heartbeat = _Heartbeat(self, held.id, holder, lease)
        try:
            yield held
        finally:
            heartbeat.stop()
            with contextlib.suppress(DriftloopError):
                self.release(held.id, holder)

    def update_trigger(
        self,
        trigger_id: int,
        *,
        holder: str | None = None,
        state: TriggerState | None = None,
        **changes: Any,
    ) -> Trigger:
        """Set columns of a trigger; ``detail`` is merged into the stored one, not replaced. With
        ``holder``, only while that worker holds the lease (:class:`ConflictError` otherwise). A
        ``state`` the trigger's current one may not move to (``TRANSITIONS``) is a bug:
        :class:`~driftloop.core.triggers.IllegalTransitionError`, nothing changed."""
        with self._db.session() as session:
            row = session.get_one(TriggerRow, trigger_id, with_for_update=True)
            if holder is not None and row.holder != holder:
                raise ConflictError(
                    f"trigger {trigger_id} was taken over by {row.holder or 'nobody'} while this worker "
                    "held it (its lease expired): this worker stops, the new holder carries on"
                )
            if state is not None:
                check_transition(trigger_id, row.state, state)
                row.state = TriggerState(state).value
            for name, value in changes.items():
                if name == "detail":
                    row.detail = {**row.detail, **value}
                else:
                    setattr(row, name, value)
            row.updated_at = datetime.now(UTC)
            session.flush()
            return _trigger(row)

    def triggers(
        self, model: str, *, states: tuple[TriggerState, ...] | None = None, limit: int = 100
    ) -> list[Trigger]:
        """``model``'s triggers (in ``states`` when given), oldest first, the latest ``limit``."""
        with self._db.session() as session:
            query = sa.select(TriggerRow).where(TriggerRow.model == model)
            if states is not None:
                query = query.where(TriggerRow.state.in_([s.value for s in states]))
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
        self,
        *,
        model: str,
        version: int,
        previous_version: int | None,
        trigger_id: int | None,
        baseline: float,
        threshold: float,
        started_at: datetime,
        until: datetime,
    ) -> Guard:
        row = GuardRow(
            model=model,
            version=version,
            previous_version=previous_version,
            trigger_id=trigger_id,
            baseline=baseline,
            threshold=threshold,
            state="watching",
            verdict={},
            started_at=started_at,
            until=until,
            updated_at=started_at,
        )
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


class _Heartbeat:
    """Renews a trigger's lease every third of its length until stopped. A refused renewal (the lease
    was taken over) is logged; the worker learns it at its next change (``update_trigger(holder=…)``)."""

    def __init__(self, ledger: Ledger, trigger_id: int, holder: str, lease: timedelta) -> None:
        self._stop = threading.Event()
        args = (ledger, trigger_id, holder, lease)
        self._thread = threading.Thread(target=self._beat, args=args, name=f"lease-{trigger_id}", daemon=True)
        self._thread.start()

    def _beat(self, ledger: Ledger, trigger_id: int, holder: str, lease: timedelta) -> None:
        while not self._stop.wait(lease.total_seconds() / 3):
            try:
                if not ledger.renew(trigger_id, holder, lease):
                    log.error(
                        "trigger %s: lease lost to another worker; this one stops at its next step",
                        trigger_id,
                    )
                    return
            except DriftloopError as exc:  # the database is down: try again at the next beat
                log.warning("trigger %s: cannot renew the lease: %s", trigger_id, exc.headline)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _trigger(row: TriggerRow) -> Trigger:
    return Trigger(
        id=row.id,
        model=row.model,
        kind=row.kind,
        reason=row.reason,
        mode=row.mode,
        decision_id=row.decision_id,
        state=TriggerState(row.state),
        pipeline_run=row.pipeline_run,
        candidate_version=row.candidate_version,
        shadow_since=row.shadow_since,
        detail=dict(row.detail),
        created_at=row.created_at,
        updated_at=row.updated_at,
        holder=row.holder,
        lease_expires_at=row.lease_expires_at,
    )


def _guard(row: GuardRow) -> Guard:
    return Guard(
        id=row.id,
        model=row.model,
        version=row.version,
        previous_version=row.previous_version,
        trigger_id=row.trigger_id,
        baseline=row.baseline,
        threshold=row.threshold,
        state=row.state,
        verdict=dict(row.verdict),
        started_at=row.started_at,
        until=row.until,
    )
