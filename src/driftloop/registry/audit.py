"""The registry's audit trail and its lock, in driftloop's metadata database (MLflow keeps neither).

Every promotion, refusal, archive and rollback is a :class:`~driftloop.core.promotion.Transition` row
(mlflow/mlflow#2169 asks for exactly this). :meth:`AuditLog.locked` serialises the stage changes of one
model across processes with the database itself: a row lock on PostgreSQL (``SELECT … FOR UPDATE``) and
the database write lock on SQLite, both held until the transaction ends — never a sleep.
"""

from __future__ import annotations

import contextlib
import os
import socket
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from driftloop.core.models import Stage
from driftloop.core.promotion import Approval, CheckResult, Transition
from driftloop.storage.metadata import ModelApprovalRow, ModelTransitionRow, RegistryLockRow

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from sqlalchemy.orm import Session

    from driftloop.core.promotion import Action, Outcome
    from driftloop.storage.metadata import Database

__all__ = ["AuditLog", "Locked"]


class Locked:
    """What may be done while a model's lock is held: record transitions in the same transaction."""

    def __init__(self, session: Session, model: str) -> None:
        self._session = session
        self.model = model

    def record(
        self,
        *,
        version: int,
        action: Action,
        from_stage: Stage,
        to_stage: Stage,
        outcome: Outcome,
        actor: str,
        comment: str = "",
        reasons: Sequence[str] = (),
        checks: Sequence[CheckResult] = (),
        replaced_version: int | None = None,
    ) -> None:
        self._session.add(
            ModelTransitionRow(
                model=self.model, version=version, action=action, from_stage=from_stage.value,
                to_stage=to_stage.value, outcome=outcome, actor=actor, comment=comment, reasons=list(reasons),
                checks=[c.to_json() for c in checks], replaced_version=replaced_version,
                created_at=datetime.now(UTC),
            )
        )  # fmt: skip
        self._session.flush()

    def last_promotion_to_production(self, version: int) -> Transition | None:
        """The latest completed promotion that made ``version`` production (rollbacks excluded)."""
        row = self._session.scalars(
            sa.select(ModelTransitionRow)
            .where(
                ModelTransitionRow.model == self.model,
                ModelTransitionRow.version == version,
                ModelTransitionRow.to_stage == Stage.PRODUCTION.value,
                ModelTransitionRow.outcome == "done",
                ModelTransitionRow.action == "promote",
            )
            .order_by(ModelTransitionRow.id.desc())
            .limit(1)
        ).first()
        return _transition(row) if row is not None else None


class AuditLog:
    """Transitions and approvals of registered models."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @contextlib.contextmanager
    def locked(self, model: str) -> Iterator[Locked]:
        """Hold ``model``'s promotion lock for the block; what is recorded commits with it.

        A second process blocks here until the first commits or rolls back (PostgreSQL row lock;
        SQLite's write lock, waited for up to the connection's 30 s busy timeout).
        """
        with self._db.session() as session:
            if session.get(RegistryLockRow, model) is None:
                with contextlib.suppress(sa.exc.IntegrityError), session.begin_nested():
                    session.add(RegistryLockRow(model=model, holder="", acquired_at=None))
            stmt = sa.select(RegistryLockRow).where(RegistryLockRow.model == model)
            if self._db.dialect == "postgresql":
                stmt = stmt.with_for_update()
            lock = session.scalars(stmt).one()
            # On SQLite this write takes the database write lock; on PostgreSQL the row is already locked.
            lock.holder = f"{socket.gethostname()}:{os.getpid()}"
            lock.acquired_at = datetime.now(UTC)
            session.flush()
            yield Locked(session, model)

    def record(self, model: str, **entry: object) -> None:
        """An audit entry outside a lock (e.g. a refusal decided before any change was attempted)."""
        with self._db.session() as session:
            Locked(session, model).record(**entry)  # type: ignore[arg-type]

    def history(self, model: str, *, version: int | None = None) -> list[Transition]:
        """Every transition of ``model`` (or one version), oldest first."""
        stmt = sa.select(ModelTransitionRow).where(ModelTransitionRow.model == model)
        if version is not None:
            stmt = stmt.where(ModelTransitionRow.version == version)
        with self._db.session() as session:
            return [_transition(r) for r in session.scalars(stmt.order_by(ModelTransitionRow.id))]

    def approve(self, model: str, version: int, stage: Stage, actor: str, comment: str) -> Approval:
        now = datetime.now(UTC)
        with self._db.session() as session:
            session.add(
                ModelApprovalRow(
                    model=model,
                    version=version,
                    stage=stage.value,
                    actor=actor,
                    comment=comment,
                    created_at=now,
                )
            )
        return Approval(model=model, version=version, stage=stage, actor=actor, comment=comment, at=now)

    def approvals(self, model: str, version: int | None = None) -> list[Approval]:
        """The approvals of ``model`` (or one version), oldest first."""
        stmt = sa.select(ModelApprovalRow).where(ModelApprovalRow.model == model)
        if version is not None:
            stmt = stmt.where(ModelApprovalRow.version == version)
        stmt = stmt.order_by(ModelApprovalRow.id)
        with self._db.session() as session:
            return [
                Approval(r.model, r.version, Stage(r.stage), r.actor, r.comment, r.created_at)
                for r in session.scalars(stmt)
            ]


def _transition(row: ModelTransitionRow) -> Transition:
    return Transition(
        id=row.id,
        model=row.model,
        version=row.version,
        action=row.action,  # type: ignore[arg-type]  # written from the Action literal
        from_stage=Stage(row.from_stage),
        to_stage=Stage(row.to_stage),
        outcome=row.outcome,  # type: ignore[arg-type]  # written from the Outcome literal
        actor=row.actor,
        at=row.created_at,
        comment=row.comment,
        reasons=tuple(row.reasons),
        checks=tuple(CheckResult.from_json(c) for c in row.checks),
        replaced_version=row.replaced_version,
    )
