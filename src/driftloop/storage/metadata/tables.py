"""driftloop's own tables (SQLAlchemy 2 declarative). Schema changes go through Alembic migrations.

Rows only: the domain layers above own what the rows mean.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ApiTokenRow",
    "Base",
    "GuardRow",
    "JSONType",
    "ModelApprovalRow",
    "ModelTransitionRow",
    "MonitorDecisionRow",
    "PipelineRunRow",
    "RegistryLockRow",
    "SchedulerFireRow",
    "SchedulerJobRow",
    "SimulationRow",
    "StepRunRow",
    "TriggerRow",
    "UTCDateTime",
]

# JSONB on PostgreSQL (indexable, compact); plain JSON text elsewhere.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no timezone type and hands back naive values; this stores UTC and re-attaches it, so
    callers always get aware datetimes and naive input is refused rather than silently misread.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass an aware datetime")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {  # noqa: RUF012  # SQLAlchemy reads this class attribute by name
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
    }


class SimulationRow(Base):
    """One ``driftloop simulate`` invocation: what was asked, where it went, what came out."""

    __tablename__ = "simulations"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    created_at: Mapped[dt.datetime]
    dataset: Mapped[str] = mapped_column(sa.String(200), index=True)
    output_uri: Mapped[str] = mapped_column(sa.Text)
    start_date: Mapped[dt.date]
    days: Mapped[int]
    rows_per_day: Mapped[int]
    machines: Mapped[int]
    seed: Mapped[int] = mapped_column(sa.BigInteger)
    label_delay_s: Mapped[float]
    drifts: Mapped[list[Any]]
    rows: Mapped[int] = mapped_column(sa.BigInteger)
    failures: Mapped[dict[str, Any]]
    files: Mapped[int]
    driftloop_version: Mapped[str] = mapped_column(sa.String(64))


class PipelineRunRow(Base):
    """One pipeline run: its parameters and overall status."""

    __tablename__ = "pipeline_runs"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    pipeline: Mapped[str] = mapped_column(sa.String(100))
    status: Mapped[str] = mapped_column(sa.String(20), index=True)
    params: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime] = mapped_column(index=True)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    error: Mapped[str | None] = mapped_column(sa.Text)
    trigger: Mapped[str] = mapped_column(sa.String(200), default="manual")


class StepRunRow(Base):
    """One step of a run: status, timing, cache key, inputs and outputs with content hashes, log."""

    __tablename__ = "step_runs"
    __table_args__ = (sa.UniqueConstraint("run_id", "step", name="uq_step_runs_run_step"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[str] = mapped_column(sa.String(100))
    position: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(20))
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    cache_key: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    cached_from: Mapped[str | None] = mapped_column(sa.String(64))
    inputs: Mapped[dict[str, Any]]
    outputs: Mapped[dict[str, Any]]
    summary: Mapped[dict[str, Any]]
    log_uri: Mapped[str | None] = mapped_column(sa.Text)
    error: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(default=0)


class ModelTransitionRow(Base):
    """One audit entry of the model registry: a stage change that happened or was refused, and why."""

    __tablename__ = "model_transitions"
    __table_args__ = (sa.Index("ix_model_transitions_model_created", "model", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(sa.String(200))
    version: Mapped[int]
    action: Mapped[str] = mapped_column(sa.String(20))
    from_stage: Mapped[str] = mapped_column(sa.String(20))
    to_stage: Mapped[str] = mapped_column(sa.String(20))
    outcome: Mapped[str] = mapped_column(sa.String(20))
    actor: Mapped[str] = mapped_column(sa.String(200))
    comment: Mapped[str] = mapped_column(sa.Text, default="")
    reasons: Mapped[list[Any]]
    checks: Mapped[list[Any]]
    replaced_version: Mapped[int | None]
    created_at: Mapped[dt.datetime]


class ModelApprovalRow(Base):
    """A person's approval of a version for a stage (seed 5–6's human in the loop)."""

    __tablename__ = "model_approvals"
    __table_args__ = (sa.Index("ix_model_approvals_model_version", "model", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(sa.String(200))
    version: Mapped[int]
    stage: Mapped[str] = mapped_column(sa.String(20))
    actor: Mapped[str] = mapped_column(sa.String(200))
    comment: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[dt.datetime]


class RegistryLockRow(Base):
    """One row per registered model: the lease a stage change holds while it runs (``holder`` until
    ``expires_at``) and, once decided, its ``intent`` — the whole change, committed before MLflow is
    touched and cleared with the audit entries that complete it (driftloop.registry.lease)."""

    __tablename__ = "registry_locks"

    model: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.String(200), default="")
    acquired_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime | None]
    intent: Mapped[dict[str, Any] | None]


class MonitorDecisionRow(Base):
    """One monitoring pass (``driftloop monitor``): the window, the decision, why, and where its report is."""

    __tablename__ = "monitor_decisions"
    __table_args__ = (sa.Index("ix_monitor_decisions_model_created", "model", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(sa.String(200))
    version: Mapped[int]
    window_start: Mapped[dt.datetime]
    window_end: Mapped[dt.datetime]
    decision: Mapped[str] = mapped_column(sa.String(20))
    reasons: Mapped[list[Any]]
    summary: Mapped[dict[str, Any]]
    report_uri: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime]


class SchedulerJobRow(Base):
    """APScheduler's job store (``SQLAlchemyJobStore``): one pickled job per schedule.

    The columns are exactly the ones APScheduler 3 declares, so it finds the table in place instead of
    creating it outside the migrations (two schedulers starting at once would race on that CREATE).
    """

    __tablename__ = "scheduler_jobs"

    id: Mapped[str] = mapped_column(sa.Unicode(191), primary_key=True)
    next_run_time: Mapped[float | None] = mapped_column(sa.Float(25), index=True)
    job_state: Mapped[bytes] = mapped_column(sa.LargeBinary)


class SchedulerFireRow(Base):
    """One claimed fire of a scheduled job: the unique (job, run time) is what stops a second run."""

    __tablename__ = "scheduler_fires"
    __table_args__ = (sa.UniqueConstraint("job_id", "run_time", name="uq_scheduler_fires_job_run_time"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(sa.String(191))
    run_time: Mapped[dt.datetime]  # the scheduled instant, UTC to the microsecond
    holder: Mapped[str] = mapped_column(sa.String(200))  # host:pid:random of the claiming scheduler
    claimed_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    outcome: Mapped[str | None] = mapped_column(sa.String(20))  # succeeded | failed | missed; None: running
    error: Mapped[str | None] = mapped_column(sa.Text)


ACTIVE_TRIGGER_STATES = "state IN ('waiting', 'training', 'shadow')"


class TriggerRow(Base):
    """One trigger of the closed loop (drift, decay, schedule, manual) and what it led to."""

    __tablename__ = "loop_triggers"
    __table_args__ = (
        sa.Index("ix_loop_triggers_model_created", "model", "created_at"),
        # One retraining under way per model, whoever tries to start a second one at the same moment.
        sa.Index(
            "uq_loop_triggers_one_active",
            "model",
            unique=True,
            sqlite_where=sa.text(ACTIVE_TRIGGER_STATES),
            postgresql_where=sa.text(ACTIVE_TRIGGER_STATES),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(20))  # drift | decay | schedule | manual
    reason: Mapped[str] = mapped_column(sa.Text)
    mode: Mapped[str] = mapped_column(sa.String(20))  # automated | manual
    decision_id: Mapped[int | None]  # the monitor decision that fired it
    # core.triggers.TriggerState: waiting | training | shadow | awaiting_approval | promoted | kept |
    # failed | notified | suppressed
    state: Mapped[str] = mapped_column(sa.String(20))
    pipeline_run: Mapped[str | None] = mapped_column(sa.String(64))
    candidate_version: Mapped[int | None]
    shadow_since: Mapped[dt.datetime | None]
    detail: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    # The process working on the trigger now (``host:pid:nonce``) and when its lease ends unless renewed.
    holder: Mapped[str | None] = mapped_column(sa.String(200))
    lease_expires_at: Mapped[dt.datetime | None]


class GuardRow(Base):
    """The rollback guard over a freshly promoted version."""

    __tablename__ = "loop_guards"
    __table_args__ = (sa.Index("ix_loop_guards_model_state", "model", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(sa.String(200))
    version: Mapped[int]
    previous_version: Mapped[int | None]
    trigger_id: Mapped[int | None]
    baseline: Mapped[float]  # the version's offline ROC AUC
    threshold: Mapped[float]
    state: Mapped[str] = mapped_column(sa.String(20))  # watching | passed | rolled-back
    verdict: Mapped[dict[str, Any]]
    started_at: Mapped[dt.datetime]
    until: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class ApiTokenRow(Base):
    """An API token: its identity (``name``) and roles. Only the SHA-256 of the token is kept (the token is
    shown once, at creation); ``prefix`` is its first characters, to recognise it in a list."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    roles: Mapped[list[Any]]
    created_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(sa.String(200))
    expires_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(sa.String(200))
