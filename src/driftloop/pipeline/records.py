"""Run and step records in the metadata database, as typed views."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from driftloop.core.runs import RunStatus, StepStatus
from driftloop.errors import NotFoundError
from driftloop.pipeline.artifacts import ArtifactRef
from driftloop.storage.metadata import PipelineRunRow, StepRunRow

if TYPE_CHECKING:
    from collections.abc import Sequence

    from driftloop.storage.metadata import Database

__all__ = [
    "RunView",
    "StepView",
    "create_run",
    "find_cached",
    "finish_run",
    "finish_step",
    "get_run",
    "list_runs",
    "reset_unfinished",
    "start_run",
    "start_step",
]


@dataclass(frozen=True)
class StepView:
    step: str
    position: int
    status: StepStatus
    started_at: datetime | None
    finished_at: datetime | None
    cache_key: str | None
    cached_from: str | None
    inputs: dict[str, ArtifactRef]
    outputs: dict[str, ArtifactRef]
    summary: dict[str, Any]
    log_uri: str | None
    error: str | None
    attempts: int

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class RunView:
    id: str
    pipeline: str
    status: RunStatus
    params: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    trigger: str
    steps: tuple[StepView, ...]

    def step(self, name: str) -> StepView:
        for view in self.steps:
            if view.step == name:
                return view
        raise NotFoundError(f"run {self.id} has no step {name!r}")


def new_run_id(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def create_run(
    db: Database,
    pipeline: str,
    params: dict[str, Any],
    steps: Sequence[str],
    *,
    trigger: str = "manual",
    run_id: str | None = None,
) -> str:
    """Insert a pending run with one pending row per step (``run_id``, or a new id); return its id."""
    run_id = run_id or new_run_id()
    with db.session() as session:
        session.add(
            PipelineRunRow(
                id=run_id,
                pipeline=pipeline,
                status=RunStatus.PENDING,
                params=params,
                created_at=datetime.now(UTC),
                trigger=trigger,
            )
        )
        for position, step in enumerate(steps):
            session.add(
                StepRunRow(
                    run_id=run_id,
                    step=step,
                    position=position,
                    status=StepStatus.PENDING,
                    inputs={},
                    outputs={},
                    summary={},
                    attempts=0,
                )
            )
    return run_id


def get_run(db: Database, run_id: str) -> RunView:
    with db.session() as session:
        row = session.get(PipelineRunRow, run_id)
        if row is None:
            raise NotFoundError(f"no pipeline run {run_id!r} (see: driftloop pipeline list)")
        steps = session.scalars(
            sa.select(StepRunRow).where(StepRunRow.run_id == run_id).order_by(StepRunRow.position)
        ).all()
        return _view(row, steps)


def list_runs(db: Database, limit: int = 20) -> list[RunView]:
    with db.session() as session:
        rows = session.scalars(
            sa.select(PipelineRunRow).order_by(PipelineRunRow.created_at.desc()).limit(limit)
        ).all()
        ids = [r.id for r in rows]
        steps = session.scalars(
            sa.select(StepRunRow).where(StepRunRow.run_id.in_(ids)).order_by(StepRunRow.position)
        ).all()
        by_run: dict[str, list[StepRunRow]] = {}
        for s in steps:
            by_run.setdefault(s.run_id, []).append(s)
        return [_view(r, by_run.get(r.id, [])) for r in rows]


def start_run(db: Database, run_id: str) -> None:
    with db.session() as session:
        row = _run_row(session, run_id)
        row.status = RunStatus.RUNNING
        row.started_at = row.started_at or datetime.now(UTC)
        row.finished_at = None
        row.error = None


def finish_run(db: Database, run_id: str, status: RunStatus, error: str | None = None) -> None:
    with db.session() as session:
        row = _run_row(session, run_id)
        row.status = status
        row.finished_at = datetime.now(UTC)
        row.error = error


def start_step(
    db: Database, run_id: str, step: str, *, cache_key: str | None, inputs: dict[str, ArtifactRef]
) -> None:
    with db.session() as session:
        row = _step_row(session, run_id, step)
        row.status = StepStatus.RUNNING
        row.started_at = datetime.now(UTC)
        row.finished_at = None
        row.cache_key = cache_key
        row.inputs = {k: v.to_json() for k, v in inputs.items()}
        row.error = None
        row.attempts = row.attempts + 1


def finish_step(
    db: Database,
    run_id: str,
    step: str,
    status: StepStatus,
    *,
    outputs: dict[str, ArtifactRef] | None = None,
    summary: dict[str, Any] | None = None,
    error: str | None = None,
    log_uri: str | None = None,
    cached_from: str | None = None,
    cache_key: str | None = None,
    inputs: dict[str, ArtifactRef] | None = None,
) -> None:
    """Record a step's end state; fields left ``None`` keep their stored value."""
    now = datetime.now(UTC)
    with db.session() as session:
        row = _step_row(session, run_id, step)
        row.status = status
        row.started_at = row.started_at or now
        row.finished_at = now
        if outputs is not None:
            row.outputs = {k: v.to_json() for k, v in outputs.items()}
        if inputs is not None:
            row.inputs = {k: v.to_json() for k, v in inputs.items()}
        if summary is not None:
            row.summary = summary
        if log_uri is not None:
            row.log_uri = log_uri
        if cached_from is not None:
            row.cached_from = cached_from
        if cache_key is not None:
            row.cache_key = cache_key
        row.error = error


def find_cached(db: Database, step: str, cache_key: str) -> tuple[str, StepView] | None:
    """The newest successful execution of ``step`` with ``cache_key``, as (run id, step view)."""
    with db.session() as session:
        row = session.scalars(
            sa.select(StepRunRow)
            .where(
                StepRunRow.step == step,
                StepRunRow.cache_key == cache_key,
                StepRunRow.status.in_([StepStatus.SUCCEEDED, StepStatus.CACHED]),
            )
            .order_by(StepRunRow.finished_at.desc())
            .limit(1)
        ).first()
        return (row.run_id, _step_view(row)) if row is not None else None


def abandon_run(db: Database, run_id: str, why: str) -> None:
    """Mark a run whose worker is gone failed, with its unfinished steps: nothing is left "running"."""
    now = datetime.now(UTC)
    with db.session() as session:
        row = _run_row(session, run_id)
        row.status, row.finished_at, row.error = RunStatus.FAILED, now, why
        steps = session.scalars(
            sa.select(StepRunRow).where(
                StepRunRow.run_id == run_id, StepRunRow.status.in_([StepStatus.RUNNING, StepStatus.PENDING])
            )
        ).all()
        for step in steps:
            step.status, step.error = StepStatus.FAILED, why
            step.finished_at = step.finished_at or now


def reset_unfinished(db: Database, run_id: str) -> list[str]:
    """For ``--resume``: failed or interrupted steps go back to pending; returns their names."""
    with db.session() as session:
        rows = session.scalars(
            sa.select(StepRunRow).where(
                StepRunRow.run_id == run_id,
                StepRunRow.status.in_([StepStatus.FAILED, StepStatus.RUNNING]),
            )
        ).all()
        for row in rows:
            row.status = StepStatus.PENDING
            row.error = None
        return [r.step for r in rows]


def _run_row(session: Any, run_id: str) -> PipelineRunRow:
    row: PipelineRunRow | None = session.get(PipelineRunRow, run_id)
    if row is None:
        raise NotFoundError(f"no pipeline run {run_id!r} (see: driftloop pipeline list)")
    return row


def _step_row(session: Any, run_id: str, step: str) -> StepRunRow:
    row: StepRunRow | None = session.scalars(
        sa.select(StepRunRow).where(StepRunRow.run_id == run_id, StepRunRow.step == step)
    ).first()
    if row is None:
        raise NotFoundError(f"run {run_id} has no step {step!r}")
    return row


def _step_view(row: StepRunRow) -> StepView:
    return StepView(
        step=row.step,
        position=row.position,
        status=StepStatus(row.status),
        started_at=row.started_at,
        finished_at=row.finished_at,
        cache_key=row.cache_key,
        cached_from=row.cached_from,
        inputs={k: ArtifactRef.from_json(v) for k, v in row.inputs.items()},
        outputs={k: ArtifactRef.from_json(v) for k, v in row.outputs.items()},
        summary=dict(row.summary),
        log_uri=row.log_uri,
        error=row.error,
        attempts=row.attempts,
    )


def _view(row: PipelineRunRow, steps: Sequence[StepRunRow]) -> RunView:
    return RunView(
        id=row.id,
        pipeline=row.pipeline,
        status=RunStatus(row.status),
        params=dict(row.params),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
        trigger=row.trigger,
        steps=tuple(_step_view(s) for s in steps),
    )
