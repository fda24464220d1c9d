"""``driftloop scheduler`` (run the schedules in the foreground) and ``driftloop schedule list``."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import typer

from driftloop.cli._output import json_option, plain, print_json
from driftloop.cli._state import state
from driftloop.errors import UsageError
from driftloop.logs import FORMAT, LOGGER, configure_logging

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime

    from driftloop.scheduling.claims import Fire
    from driftloop.scheduling.scheduler import JobSpec, StoredJob

schedule_app = typer.Typer(help="Schedules: what runs when, and what ran.", no_args_is_help=True)

_LEVELS = ("debug", "info", "warning", "error")
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def scheduler(
    ctx: typer.Context,
    log_level: str = typer.Option(
        "info", "--log-level", help=f"Log level of the fires: {', '.join(_LEVELS)}."
    ),
) -> None:
    """Run the configured schedules in the foreground until Ctrl-C or SIGTERM (then exit 0).

    Jobs persist in the metadata database; schedulers sharing it never run a fire twice (docs/scheduler.md).
    """
    if log_level.lower() not in _LEVELS:
        raise UsageError(f"invalid --log-level {log_level!r}: choose one of {', '.join(_LEVELS)}")
    from driftloop.runtime.holders import new_holder
    from driftloop.scheduling.scheduler import configured_jobs, start_scheduler, stored_jobs
    from driftloop.storage.metadata import open_metadata

    st = state(ctx)
    settings = st.settings
    specs = configured_jobs(settings)  # a bad crontab fails here, before anything starts
    with _stop_on_signals() as stop, _fire_log(log_level.upper()):
        db = open_metadata(settings.database_url, echo=settings.database.echo)
        try:
            holder = new_holder()
            sched, report = start_scheduler(db, specs, holder=holder)
            try:
                url = db.engine.url.render_as_string(hide_password=True)
                st.out.print(f"driftloop scheduler {holder} on {url} (Ctrl-C stops)", markup=False)
                changes = [f"{what} {', '.join(ids)}" for what, ids in asdict(report).items() if ids]
                st.out.print(f"schedules: {'; '.join(changes)}", markup=False)
                for job in stored_jobs(db):
                    st.out.print(
                        f"  {job.id:<12} {job.trigger:<44} next {_when(job.next_run_time)}", markup=False
                    )
                sys.stdout.flush()  # a supervisor reading a pipe sees the schedule before the first fire
                while not stop.wait(0.5):
                    pass
            finally:
                sched.shutdown(wait=True)  # lets running fires finish and record their outcome
        finally:
            db.dispose()
    st.out.print("scheduler stopped")


@schedule_app.command("list")
def list_jobs(ctx: typer.Context, as_json: bool = json_option()) -> None:
    """Each job: its trigger, its next run time and its last fire (time, scheduler, outcome)."""
    from driftloop.scheduling.claims import last_fires
    from driftloop.scheduling.scheduler import configured_jobs, stored_jobs
    from driftloop.storage.metadata import open_metadata

    st = state(ctx)
    specs = {spec.id: spec for spec in configured_jobs(st.settings)}
    db = open_metadata(st.settings.database_url, echo=st.settings.database.echo)
    try:
        stored = {job.id: job for job in stored_jobs(db)}
        fires = last_fires(db)
    finally:
        db.dispose()
    order = [*specs, *(j for j in stored if j not in specs)]
    if as_json:
        print_json(
            [_job_json(job_id, specs.get(job_id), stored.get(job_id), fires.get(job_id)) for job_id in order]
        )
        return
    st.out.print(f"{'job':<12} {'trigger':<44} {'next run (UTC)':<26} last fire")
    for job_id in order:
        spec, job = specs.get(job_id), stored.get(job_id)
        trigger = str(job.trigger if job is not None else spec.trigger if spec is not None else "")
        upcoming = "not scheduled yet" if job is None else _when(job.next_run_time)
        st.out.print(f"{job_id:<12} {trigger:<44} {upcoming:<26} {_fire(fires.get(job_id))}", markup=False)
        if spec is None:
            st.out.print("  no longer configured: removed when a scheduler next starts", markup=False)
        elif job is not None and job.signature != spec.signature:
            st.out.print(
                f"  configured now as {spec.trigger}: replaced when a scheduler next starts", markup=False
            )
    if not stored:
        st.out.print("no scheduler has run on this database yet (start one: driftloop scheduler)")


def _job_json(job_id: str, spec: JobSpec | None, job: StoredJob | None, fire: Fire | None) -> dict[str, Any]:
    """One job for ``schedule list --json``: configured and stored trigger, next run, last fire."""
    return {
        "id": job_id,
        "configured": spec is not None,
        "configured_trigger": str(spec.trigger) if spec is not None else None,
        "stored_trigger": job.trigger if job is not None else None,
        "pending_change": spec is not None and job is not None and job.signature != spec.signature,
        "next_run_time": job.next_run_time if job is not None else None,
        "paused": job is not None and job.next_run_time is None,
        "last_fire": None if fire is None else {**plain(fire), "duration_s": fire.duration_s},
    }


def _when(moment: datetime | None) -> str:
    return "paused" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"


def _fire(fire: Fire | None) -> str:
    if fire is None:
        return "never"
    took = "" if fire.duration_s is None else f" in {fire.duration_s:.1f} s"
    line = f"{fire.run_time:%Y-%m-%d %H:%M:%S} {fire.outcome or 'running (or its scheduler died)'}{took}"
    line += f" by {fire.holder}"
    return f"{line}: {fire.error.splitlines()[0]}" if fire.error else line


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM, with the previous handlers restored afterwards.

    Installed before the scheduler starts, so a signal at any point stops it cleanly instead of
    killing the process between a claim and its recorded outcome.
    """
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda _signum, _frame: stop.set()) for sig in _SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _fire_log(level: str) -> Iterator[None]:
    """driftloop's log records (fires, syncs, the jobs' own) on stderr while the scheduler runs, at
    ``level`` (driftloop.logs), and APScheduler's warnings."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    # APScheduler's executor logs each fire too, with its traceback; ours say the same once, and the
    # traceback is kept in scheduler_fires.error. Its other warnings (store errors) still show.
    handler.addFilter(lambda record: not record.name.startswith("apscheduler.executors"))
    driftloop, apscheduler = logging.getLogger(LOGGER), logging.getLogger("apscheduler")
    saved = driftloop.level, apscheduler.level, apscheduler.propagate
    configure_logging(level)
    apscheduler.setLevel("WARNING")
    apscheduler.addHandler(handler)
    apscheduler.propagate = False  # not again through the root logger's handler
    try:
        yield
    finally:
        apscheduler.removeHandler(handler)
        driftloop.setLevel(saved[0])
        apscheduler.setLevel(saved[1])
        apscheduler.propagate = saved[2]
