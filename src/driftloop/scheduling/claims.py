"""The per-fire claim: a scheduler runs a fire only after inserting its ``(job id, run time)`` row.

``scheduler_fires`` has a unique constraint on ``(job_id, run_time)``, so of every scheduler that sees the
same fire due, exactly one INSERT succeeds and only that scheduler runs it; the others skip it. The row
then records who ran it, when it finished and how (``succeeded``, ``failed`` or ``missed``). The claim
is taken before the run and never released: a fire runs at most once, and a fire whose scheduler dies
mid-run is not retried by another (see docs/scheduler.md and decision 0021).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from sqlalchemy.dialects import postgresql, sqlite

from driftloop.errors import ConflictError, DriftloopError
from driftloop.runtime.holders import new_holder
from driftloop.storage.metadata.tables import SchedulerFireRow

if TYPE_CHECKING:
    from concurrent.futures import Future

    from apscheduler.job import Job

    from driftloop.storage.metadata import Database

__all__ = ["FIRE_RETENTION", "ClaimingExecutor", "Fire", "fire_history", "last_fires"]

# Claims older than this are pruned as fires finish: far beyond any sensible misfire grace, so a pruned
# claim can never be the one that would have stopped a late duplicate.
FIRE_RETENTION = timedelta(days=30)
# Declarative classes type __table__ as a FromClause; it is a Table (Core insert/update/delete).
_FIRES = cast("sa.Table", SchedulerFireRow.__table__)
_FIRE_COLUMNS = tuple(
    _FIRES.c[name]
    for name in ("job_id", "run_time", "holder", "claimed_at", "finished_at", "outcome", "error")
)

log = logging.getLogger(__name__)


class ClaimingExecutor(ThreadPoolExecutor):  # type: ignore[misc]  # APScheduler 3 ships no type hints
    """A thread pool that runs a fire only after winning its claim row in ``scheduler_fires``.

    ``claimed`` and ``lost`` count this executor's claims won and lost to another scheduler.
    """

    def __init__(self, db: Database, *, holder: str | None = None, max_workers: int = 4) -> None:
        super().__init__(max_workers=max_workers)
        self.db = db
        self.holder = holder or new_holder()
        self.claimed = 0
        self.lost = 0

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        # Runs in the scheduler's thread under the executor lock, before submit_job counts the instance.
        won = [run_time for run_time in run_times if self._claim(job.id, run_time)]
        # Even with nothing won the (empty) batch goes through the pool: its completion callback is what
        # undoes the instance count submit_job adds after this returns; skipping it would leave the job
        # at max_instances=1 for good and every later fire refused.
        try:
            future = self._pool.submit(self._run, job, won)
        except RuntimeError:  # the executor is shutting down: hand the claims back, nothing ran
            self._release(job.id, won)
            raise
        future.add_done_callback(partial(self._done, job.id))

    def _release(self, job_id: str, run_times: list[datetime]) -> None:
        """Forget claims this scheduler won but could not run, so they are not recorded as runs (nor
        counted as won)."""
        if not run_times:
            return
        mine = (_FIRES.c.job_id == job_id) & (_FIRES.c.holder == self.holder)
        with self.db.session() as session:
            session.execute(
                _FIRES.delete().where(mine & _FIRES.c.run_time.in_([_exact(t) for t in run_times]))
            )
        self.claimed -= len(run_times)

    def _claim(self, job_id: str, run_time: datetime) -> bool:
        values = {
            "job_id": job_id,
            "run_time": _exact(run_time),
            "holder": self.holder,
            "claimed_at": datetime.now(UTC),
        }
        try:
            with self.db.session() as session:
                won = session.execute(_claim_statement(self.db.dialect, values)).first() is not None
        except ConflictError:  # dialects without ON CONFLICT report the duplicate as an error
            won = False
        if won:
            self.claimed += 1
            return True
        self.lost += 1
        log.info("fire %s @ %s already claimed by another scheduler; skipped", job_id, _text(run_time))
        return False

    def _run(self, job: Job, run_times: list[datetime]) -> list[Any]:
        events: list[Any] = []
        for run_time in run_times:
            started = time.monotonic()
            fired = run_job(job, job._jobstore_alias, [run_time], self._logger.name)
            elapsed = time.monotonic() - started
            outcome, error = _outcome(fired)
            if outcome == "failed":
                log.error(
                    "fire %s @ %s failed after %.2f s: %s",
                    job.id,
                    _text(run_time),
                    elapsed,
                    (error or "").splitlines()[0],
                )
            elif outcome == "missed":
                log.warning("fire %s @ %s missed: later than its misfire grace", job.id, _text(run_time))
            else:
                log.info("fire %s @ %s succeeded in %.2f s", job.id, _text(run_time), elapsed)
            try:
                self._finish(job.id, run_time, outcome, error)
            except DriftloopError as exc:  # the run happened; losing its record must not stop the loop
                log.warning("fire %s @ %s: cannot record the outcome: %s", job.id, _text(run_time), exc)
            events.extend(fired)
        return events

    def _finish(self, job_id: str, run_time: datetime, outcome: str, error: str | None) -> None:
        now = datetime.now(UTC)
        mine = (_FIRES.c.job_id == job_id) & (_FIRES.c.holder == self.holder)
        with self.db.session() as session:
            session.execute(
                _FIRES.update()
                .where(mine & (_FIRES.c.run_time == _exact(run_time)))
                .values(finished_at=now, outcome=outcome, error=error)
            )
            old = now - FIRE_RETENTION
            session.execute(_FIRES.delete().where((_FIRES.c.job_id == job_id) & (_FIRES.c.run_time < old)))

    def _done(self, job_id: str, future: Future[list[Any]]) -> None:
        # What APScheduler's pool executor does on completion: release the instance, dispatch events.
        exc = future.exception()
        if exc is not None:
            self._run_job_error(job_id, exc, exc.__traceback__)
        else:
            self._run_job_success(job_id, future.result())


def _claim_statement(dialect: str, values: dict[str, Any]) -> sa.Executable:
    # ON CONFLICT DO NOTHING: a lost claim is a normal outcome, not an error in the server's log. Won or
    # lost is read from RETURNING (a row or none): rowcount is -1 for such inserts on psycopg.
    keys = ["job_id", "run_time"]
    if dialect == "postgresql":
        pg = postgresql.insert(_FIRES).values(values)
        return pg.on_conflict_do_nothing(index_elements=keys).returning(_FIRES.c.id)
    if dialect == "sqlite":
        lite = sqlite.insert(_FIRES).values(values)
        return lite.on_conflict_do_nothing(index_elements=keys).returning(_FIRES.c.id)
    return sa.insert(_FIRES).values(values).returning(_FIRES.c.id)


def _outcome(events: list[Any]) -> tuple[str, str | None]:
    for event in events:
        if event.code == EVENT_JOB_ERROR:
            exc = event.exception
            return "failed", f"{type(exc).__name__}: {exc}\n{event.traceback or ''}".strip()
        if event.code == EVENT_JOB_EXECUTED:
            return "succeeded", None
    return "missed", None


def _exact(run_time: datetime) -> datetime:
    """The claim key: UTC to the microsecond, whatever zone the trigger computed the time in."""
    if run_time.tzinfo is None:  # APScheduler always hands aware times; a naive one would be a bug
        raise ValueError(f"naive run time {run_time!r}")
    return run_time.astimezone(UTC)


def _text(moment: datetime) -> str:
    return _exact(moment).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Fire:
    """One claimed fire. ``outcome`` None: running, or its scheduler died before recording it."""

    job_id: str
    run_time: datetime
    holder: str
    claimed_at: datetime
    finished_at: datetime | None
    outcome: str | None
    error: str | None

    @property
    def duration_s(self) -> float | None:
        return None if self.finished_at is None else (self.finished_at - self.claimed_at).total_seconds()


def fire_history(db: Database, job_id: str | None = None, *, limit: int | None = None) -> list[Fire]:
    """Claimed fires (of ``job_id``, or of every job), newest run time first."""
    query = sa.select(*_FIRE_COLUMNS).order_by(_FIRES.c.run_time.desc(), _FIRES.c.job_id)
    if job_id is not None:
        query = query.where(_FIRES.c.job_id == job_id)
    with db.session() as session:
        return [Fire(*row) for row in session.execute(query.limit(limit)).all()]


def last_fires(db: Database) -> dict[str, Fire]:
    """The latest claimed fire of each job that has one, by job id."""
    latest = (
        sa.select(_FIRES.c.job_id, sa.func.max(_FIRES.c.run_time).label("run_time"))
        .group_by(_FIRES.c.job_id)
        .subquery()
    )
    query = sa.select(*_FIRE_COLUMNS).join(
        latest, (_FIRES.c.job_id == latest.c.job_id) & (_FIRES.c.run_time == latest.c.run_time)
    )
    with db.session() as session:
        return {row.job_id: Fire(*row) for row in session.execute(query).all()}
