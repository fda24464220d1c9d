"""driftloop's schedules on APScheduler 3, persistent in the metadata database and safe to run twice.

Three parts:

- the job table (:func:`configured_jobs`): what ``[schedule]`` asks for, each job named by a textual
  reference ``module:function`` so APScheduler can pickle it into the ``scheduler_jobs`` table;
- :func:`sync_jobs`: brings that table in line with the configuration while keeping every unchanged job
  as stored, so its next run time survives a restart (a fire missed within the misfire grace runs once,
  coalesced, after the restart);
- the executor of :mod:`driftloop.scheduling.claims`: before a fire runs, it claims ``(job id, scheduled
  run time)`` with an INSERT whose unique constraint lets exactly one scheduler win it. APScheduler 3
  does not support several schedulers on one job store (each may see the same job due); the claim is
  what makes that safe. The guarantee: each scheduled run time of a job runs at most once across every
  scheduler sharing the database (see docs/scheduler.md and decision 0021).
"""

from __future__ import annotations

import logging
import math
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from driftloop.errors import ConfigError
from driftloop.scheduling.claims import ClaimingExecutor
from driftloop.storage.metadata.tables import SchedulerJobRow

if TYPE_CHECKING:
    from collections.abc import Sequence

    from apscheduler.triggers.base import BaseTrigger

    from driftloop.settings import Settings
    from driftloop.storage.metadata import Database

__all__ = [
    "JOBS_MODULE",
    "JOBS_TABLE",
    "JobSpec",
    "StoredJob",
    "SyncReport",
    "configured_jobs",
    "create_scheduler",
    "start_scheduler",
    "stored_jobs",
    "sync_jobs",
]

JOBS_TABLE = SchedulerJobRow.__tablename__
JOBS_MODULE = "driftloop.scheduling.jobs"
_JOBS = SchedulerJobRow.__table__
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    """One schedule: ``func`` (``module:function``) is called with ``args`` whenever ``trigger`` fires.

    Every job runs coalesced (missed fires collapse into one) with one instance at a time; a fire later
    than ``misfire_grace_s`` is recorded as missed instead of run.
    """

    id: str
    func: str
    trigger: BaseTrigger
    args: tuple[Any, ...] = ()
    misfire_grace_s: float = 300.0

    @property
    def signature(self) -> str:
        """What decides whether a stored job is this one: function, arguments and trigger."""
        return _signature(self.func, self.args, self.trigger)

    @property
    def grace(self) -> int:
        # APScheduler 3 takes whole seconds only; round up so a configured grace is never shortened.
        return max(1, math.ceil(self.misfire_grace_s))


def configured_jobs(settings: Settings) -> list[JobSpec]:
    """The jobs ``[schedule]`` asks for, in a stable order (see docs/scheduler.md).

    Each job function receives the configuration file path (str) or None, so it rebuilds its settings
    when it runs. Raises :class:`ConfigError` for an invalid ``retrain_cron``.
    """
    s = settings.schedule
    args = (str(settings.config_file) if settings.config_file is not None else None,)

    def job(job_id: str, func: str, trigger: BaseTrigger) -> JobSpec:
        return JobSpec(job_id, f"{JOBS_MODULE}:{func}", trigger, args, s.misfire_grace_s)

    specs = [
        job("monitor", "monitor_pass", _every(s.monitor_every_minutes)),
        job("gates", "advance_gates", _every(s.gates_every_minutes)),
    ]
    if s.retrain_cron.strip():
        specs.append(job("retrain", "scheduled_retrain", _crontab(s.retrain_cron)))
    if s.plant_clock_minutes > 0:
        specs.append(job("plant-clock", "plant_clock_tick", _every(s.plant_clock_minutes)))
    return specs


def create_scheduler(db: Database, *, holder: str | None = None, max_workers: int = 4) -> BackgroundScheduler:
    """A scheduler (not started) whose jobs live in ``db``'s ``scheduler_jobs`` and run claimed.

    ``db`` must be migrated (:func:`~driftloop.storage.metadata.open_metadata`). The job store uses
    ``db``'s own engine: the same database file or server, with its SQLite pragmas and busy timeout.
    Shutting the scheduler down disposes that engine's pooled connections (the engine stays usable).
    """
    store = SQLAlchemyJobStore(engine=db.engine, tablename=JOBS_TABLE)
    executor = ClaimingExecutor(db, holder=holder, max_workers=max_workers)
    return BackgroundScheduler(
        jobstores={"default": store},
        executors={"default": executor},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone=UTC,
    )


def start_scheduler(
    db: Database, specs: Sequence[JobSpec], *, holder: str | None = None
) -> tuple[BackgroundScheduler, SyncReport]:
    """Start a scheduler on ``db`` running exactly ``specs``; stop it with ``shutdown(wait=True)``.

    It starts paused, syncs, then resumes, so no stored job fires under a definition about to change.
    """
    scheduler = create_scheduler(db, holder=holder)
    scheduler.start(paused=True)
    try:
        report = sync_jobs(scheduler, specs)
    except BaseException:
        scheduler.shutdown(wait=False)
        raise
    scheduler.resume()
    return scheduler, report


@dataclass(frozen=True)
class SyncReport:
    """What :func:`sync_jobs` did, by job id. ``updated``: options changed, next run time kept."""

    added: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def sync_jobs(scheduler: BackgroundScheduler, specs: Sequence[JobSpec]) -> SyncReport:
    """Make the started (possibly paused) ``scheduler``'s store hold exactly ``specs``.

    A missing job is added; a job whose function, arguments or trigger changed is replaced (its next run
    time restarts from the new trigger); one whose options alone changed is modified in place; an
    unchanged one is left as stored, next run time included; any other stored job is removed — the
    table belongs to driftloop. Another scheduler syncing at the same time is tolerated: the last
    definition written wins. Raises ValueError for duplicate ids.
    """
    ids = [spec.id for spec in specs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate job ids in {ids}")
    added: list[str] = []
    replaced: list[str] = []
    updated: list[str] = []
    kept: list[str] = []
    removed: list[str] = []
    stored = {job.id: job for job in scheduler.get_jobs()}
    for job_id in sorted(stored.keys() - set(ids)):
        try:
            scheduler.remove_job(job_id)
        except JobLookupError:  # another scheduler removed it first
            continue
        removed.append(job_id)
    for spec in specs:
        job = stored.get(spec.id)
        if job is None:
            try:
                _add(scheduler, spec, replace=False)
            except ConflictingIdError:  # another scheduler added it since we looked
                job = scheduler.get_job(spec.id)
            else:
                added.append(spec.id)
                continue
        if job is None:  # added and removed again by others meanwhile; ours is the newest word
            _add(scheduler, spec, replace=True)
            added.append(spec.id)
        elif _signature(job.func_ref, job.args, job.trigger) != spec.signature:
            _add(scheduler, spec, replace=True)
            replaced.append(spec.id)
        elif (job.misfire_grace_time, job.coalesce, job.max_instances) != (spec.grace, True, 1):
            scheduler.modify_job(spec.id, misfire_grace_time=spec.grace, coalesce=True, max_instances=1)
            updated.append(spec.id)
        else:
            kept.append(spec.id)
    report = SyncReport(tuple(added), tuple(replaced), tuple(updated), tuple(kept), tuple(removed))
    log.info("schedules synced: %s", report)
    return report


def _add(scheduler: BackgroundScheduler, spec: JobSpec, *, replace: bool) -> None:
    scheduler.add_job(
        spec.func,
        spec.trigger,
        args=spec.args,
        id=spec.id,
        name=spec.id,
        replace_existing=replace,
        misfire_grace_time=spec.grace,
        coalesce=True,
        max_instances=1,
    )


def _signature(func: str, args: Sequence[Any], trigger: BaseTrigger) -> str:
    # The trigger's str(), not its state: an interval's start date differs between two syncs of the same
    # schedule, and restarting it would move the next run time the restart is meant to keep.
    return f"{func}{tuple(args)!r} {trigger} {getattr(trigger, 'timezone', '')}"


def _every(minutes: float) -> IntervalTrigger:
    return IntervalTrigger(seconds=minutes * 60, timezone=UTC)


def _crontab(expr: str) -> CronTrigger:
    fields = expr.split()
    try:
        if len(fields) != 5:
            raise ValueError(f"expected 5 fields, got {len(fields)}")
        fields[4] = _cron_weekdays(fields[4])
        return CronTrigger.from_crontab(" ".join(fields), timezone=UTC)
    except ValueError as exc:
        raise ConfigError(
            f"schedule.retrain_cron (DRIFTLOOP_SCHEDULE__RETRAIN_CRON) {expr!r} is not a crontab: {exc}"
        ) from None


def _cron_weekdays(field: str) -> str:
    """Crontab's day-of-week numbers (0 or 7 = Sunday) as names.

    APScheduler 3's ``from_crontab`` counts 0 as Monday (fixed only in 4.x); day names mean the same to
    both, so numbers, ranges and steps are spelled out as names and ``0 3 * * 0`` stays Sunday.
    """
    if field == "*" or not any(c.isdigit() for c in field):
        return field
    if any(c.isalpha() for c in field):
        raise ValueError("day of week mixes names and numbers")
    days: set[int] = set()
    for item in field.split(","):
        span, _, step = item.partition("/")
        if span == "*":
            low, high = 0, 6
        elif "-" in span:
            first, last = span.split("-", 1)
            low, high = int(first), int(last)
        else:
            low = int(span)
            high = 7 if step else low
        if not 0 <= low <= high <= 7 or (step and int(step) < 1):
            raise ValueError(f"day of week {item!r} is out of 0-7")
        days.update(day % 7 for day in range(low, high + 1, int(step or 1)))
    return ",".join(_CRON_DAYS[day] for day in sorted(days))


@dataclass(frozen=True)
class StoredJob:
    """A job as the store holds it, read without importing its function."""

    id: str
    func: str
    args: tuple[Any, ...]
    trigger: str  # APScheduler's description, e.g. interval[0:05:00]
    signature: str  # compare with JobSpec.signature: different means sync_jobs replaces it
    next_run_time: datetime | None  # None: paused


def stored_jobs(db: Database) -> list[StoredJob]:
    """Every job in ``scheduler_jobs``, soonest first (read-only: nothing is imported or removed)."""
    with db.session() as session:
        rows = session.execute(sa.select(_JOBS.c.id, _JOBS.c.job_state)).all()
    jobs = []
    for job_id, blob in rows:
        # Our own table, written by APScheduler's pickle; the same trust APScheduler itself extends.
        state = pickle.loads(blob)
        nrt = state["next_run_time"]
        jobs.append(
            StoredJob(
                id=job_id,
                func=state["func"],
                args=tuple(state["args"]),
                trigger=str(state["trigger"]),
                signature=_signature(state["func"], state["args"], state["trigger"]),
                next_run_time=nrt.astimezone(UTC) if nrt else None,
            )
        )
    return sorted(jobs, key=lambda j: (j.next_run_time or datetime.max.replace(tzinfo=UTC), j.id))
