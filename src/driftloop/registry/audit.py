"""The registry's audit trail, in driftloop's metadata database (MLflow keeps none).

Every promotion, refusal, repeat, archive, rollback and out-of-band change is a
:class:`~driftloop.core.promotion.Transition` row (mlflow/mlflow#2169 asks for exactly this). The audit
is the authority on stages: :meth:`AuditLog.stages` replays the completed changes, and the service and
``models list`` believe it over MLflow's aliases and tags, which anyone with registry access can move
(driftloop.registry.gates). Stage changes are serialised and made crash-safe by driftloop.registry.lease.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from driftloop.core.models import Stage
from driftloop.core.promotion import Approval, CheckResult, Transition
from driftloop.registry.lease import entry_row
from driftloop.storage.metadata import ModelApprovalRow, ModelTransitionRow

if TYPE_CHECKING:
    from driftloop.storage.metadata import Database

__all__ = ["AuditLog", "holder_of"]

# The actions that change a version's stage (out-of-band detections and reverts of them do not).
_STAGE_ACTIONS = ("promote", "demote", "rollback", "adopt")


class AuditLog:
    """Transitions and approvals of registered models; the stage each version holds by the audit."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, model: str, entry: dict[str, Any]) -> None:
        """One audit entry (see :func:`driftloop.registry.lease.entry_row`), committed now: refusals and
        repeats are recorded whatever happens next."""
        with self._db.session() as session:
            session.add(entry_row(model, entry))

    def stages(self, model: str) -> dict[int, Stage]:
        """Each version's stage as the audit's completed changes left it (versions never changed: absent).

        Out-of-band detections are not changes; reverts restore what the audit already says.
        """
        stmt = (
            sa.select(ModelTransitionRow.version, ModelTransitionRow.to_stage)
            .where(
                ModelTransitionRow.model == model,
                ModelTransitionRow.outcome == "done",
                ModelTransitionRow.action.in_(_STAGE_ACTIONS),
            )
            .order_by(ModelTransitionRow.id)
        )
        with self._db.session() as session:
            return {version: Stage(stage) for version, stage in session.execute(stmt)}

    def holder(self, model: str, stage: Stage) -> int | None:
        """The version the audit says holds ``stage`` (Staging or Production), if any."""
        return holder_of(self.stages(model), stage)

    def last_promotion_to_production(self, model: str, version: int) -> Transition | None:
        """The latest completed promotion that made ``version`` production (rollbacks excluded)."""
        with self._db.session() as session:
            row = session.scalars(
                sa.select(ModelTransitionRow)
                .where(
                    ModelTransitionRow.model == model,
                    ModelTransitionRow.version == version,
                    ModelTransitionRow.to_stage == Stage.PRODUCTION.value,
                    ModelTransitionRow.outcome == "done",
                    ModelTransitionRow.action == "promote",
                )
                .order_by(ModelTransitionRow.id.desc())
                .limit(1)
            ).first()
            return _transition(row) if row is not None else None

    def last(self, model: str) -> Transition | None:
        """The newest entry of ``model``."""
        with self._db.session() as session:
            row = session.scalars(
                sa.select(ModelTransitionRow)
                .where(ModelTransitionRow.model == model)
                .order_by(ModelTransitionRow.id.desc())
                .limit(1)
            ).first()
            return _transition(row) if row is not None else None

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


def holder_of(stages: dict[int, Stage], stage: Stage) -> int | None:
    """The version of ``stages`` (see :meth:`AuditLog.stages`) that holds ``stage``, if any."""
    held = [v for v, s in stages.items() if s == stage]
    return max(held) if held else None  # one by construction; max() is only a tie-break


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
