"""The scheduler on one database: restarts, sync, claims and failures, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest
from apscheduler.triggers.interval import IntervalTrigger

from driftloop.errors import ConfigError
from driftloop.scheduling.claims import ClaimingExecutor, fire_history
from driftloop.scheduling.scheduler import (
    JobSpec,
    configured_jobs,
    create_scheduler,
    start_scheduler,
    stored_jobs,
    sync_jobs,
)
from driftloop.settings import load_settings
from driftloop.storage.metadata.tables import SchedulerFireRow
from tests.conftest import wait_for
from tests.scheduling.conftest import running
from tests.scheduling.probe_jobs import lines

if TYPE_CHECKING:
    from pathlib import Path

    from driftloop.storage.metadata import Database

RECORD = "tests.scheduling.probe_jobs:record"
FAIL = "tests.scheduling.probe_jobs:fail"
PERIOD = 0.25  # seconds: short, so the suite stays fast; no assertion depends on timing
TICK = timedelta(seconds=PERIOD)


def every(seconds: float, job_id: str, out: Path, func: str = RECORD, grace: float = 30) -> JobSpec:
    return JobSpec(job_id, func, IntervalTrigger(seconds=seconds, timezone=UTC), (str(out),), grace)


def test_an_unchanged_job_keeps_its_next_run_time_across_a_restart(db: Database, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    scheduler, first = start_scheduler(db, [every(3600, "hourly", out)])
    scheduler.shutdown(wait=True)
    (before,) = stored_jobs(db)
    assert first.added == ("hourly",)

    # A new trigger object starts an hour from *now*: replacing the job would move its next run time.
    scheduler, again = start_scheduler(db, [every(3600, "hourly", out)])
    scheduler.shutdown(wait=True)
    assert again.kept == ("hourly",)
    assert again.added == again.replaced == again.removed == ()
    assert stored_jobs(db) == [before]
    assert before.next_run_time is not None
    assert before.trigger == "interval[1:00:00]"


def test_fires_missed_while_stopped_run_once_coalesced_after_restart(db: Database, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with running(db, [every(PERIOD, "tick", out)]):
        wait_for(lambda: len(lines(out)) >= 1, what="a first fire")
    (job,) = stored_jobs(db)
    missed_from = job.next_run_time
    assert missed_from is not None
    # Stopped long enough for at least three run times to pass (the scenario is the stopped time).
    wait_for(lambda: datetime.now(UTC) > missed_from + 3 * TICK, timeout=60, what="three missed run times")

    with running(db, [every(PERIOD, "tick", out)]):
        wait_for(
            lambda: any(f.run_time >= missed_from and f.outcome for f in fire_history(db, "tick")),
            what="the coalesced fire",
        )
    fires = sorted(fire_history(db, "tick"), key=lambda f: f.run_time)
    after = [f for f in fires if f.run_time >= missed_from]
    # The missed run times collapsed into one fire at the latest of them; none ran on its own.
    assert after[0].run_time >= missed_from + 3 * TICK
    assert (after[0].run_time - missed_from) % TICK == timedelta(0)
    assert all(f.outcome == "succeeded" for f in fires)
    assert len(lines(out)) == len(fires)  # every run was claimed, and every claim ran once


def test_sync_replaces_changed_jobs_removes_unconfigured_ones_and_keeps_the_rest(
    db: Database, tmp_path: Path
) -> None:
    out, other = tmp_path / "runs", tmp_path / "other"
    scheduler = create_scheduler(db)
    scheduler.start(paused=True)  # nothing fires: this is about the store
    try:
        first = sync_jobs(scheduler, [every(60, job_id, out) for job_id in "abcef"])
        assert first.added == tuple("abcef")
        before = {job.id: job for job in stored_jobs(db)}

        report = sync_jobs(
            scheduler,
            [
                every(60, "a", out),  # unchanged
                every(120, "b", out),  # new trigger
                every(60, "d", out),  # new job; c is gone
                every(60, "e", other),  # new arguments
                every(60, "f", out, grace=10),  # new option only
            ],
        )
        assert report.kept == ("a",)
        assert report.replaced == ("b", "e")
        assert report.added == ("d",)
        assert report.removed == ("c",)
        assert report.updated == ("f",)
        after = {job.id: job for job in stored_jobs(db)}
        assert sorted(after) == ["a", "b", "d", "e", "f"]
        assert after["a"] == before["a"]
        assert after["f"].next_run_time == before["f"].next_run_time  # an option change keeps the time
        assert after["b"].trigger == "interval[0:02:00]"
        assert after["e"].args == (str(other),)
        assert scheduler.get_job("f").misfire_grace_time == 10

        with pytest.raises(ValueError, match="duplicate"):
            sync_jobs(scheduler, [every(60, "a", out), every(30, "a", out)])
    finally:
        scheduler.shutdown(wait=False)


def test_a_failing_job_is_recorded_and_the_scheduler_keeps_going(db: Database, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    specs = [every(PERIOD, "broken", out, func=FAIL), every(PERIOD, "healthy", tmp_path / "healthy")]
    with running(db, specs) as scheduler:
        wait_for(
            lambda: sum(f.outcome == "failed" for f in fire_history(db, "broken")) >= 2,
            what="two failed fires",
        )
        wait_for(
            lambda: sum(f.outcome == "succeeded" for f in fire_history(db, "healthy")) >= 2,
            what="two fires of the healthy job",
        )
        assert scheduler.running
    failed = [f for f in fire_history(db, "broken") if f.outcome is not None]
    assert all(f.outcome == "failed" for f in failed)
    assert all(f.finished_at is not None and f.finished_at >= f.claimed_at for f in failed)
    error = failed[0].error or ""
    assert error.splitlines()[0] == "RuntimeError: boom: the plant is on fire"
    assert "Traceback" in error or "probe_jobs.py" in error  # the traceback is kept for whoever looks


def test_a_fire_claimed_by_another_scheduler_is_skipped_and_the_next_one_runs(
    db: Database, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    scheduler = create_scheduler(db, holder="here:1:a")
    scheduler.start(paused=True)
    try:
        sync_jobs(scheduler, [every(PERIOD, "tick", out)])
        (job,) = stored_jobs(db)
        assert job.next_run_time is not None
        with db.session() as session:
            session.add(
                SchedulerFireRow(
                    job_id="tick",
                    run_time=job.next_run_time,
                    holder="elsewhere:2:b",
                    claimed_at=datetime.now(UTC),
                )
            )
        scheduler.resume()
        # Two fires after the lost one: a lost claim must not leave the job counted as still running.
        wait_for(lambda: len(lines(out)) >= 2, what="fires after the lost claim")
    finally:
        scheduler.shutdown(wait=True)
    fires = fire_history(db, "tick")
    theirs = [f for f in fires if f.holder == "elsewhere:2:b"]
    assert [f.run_time for f in theirs] == [job.next_run_time]
    ours = [f for f in fires if f.holder == "here:1:a"]
    assert len(ours) == len(lines(out)) >= 2
    assert all(f.run_time > job.next_run_time for f in ours)


def test_run_times_are_claimed_exactly_whatever_their_zone(db: Database) -> None:
    one, two = ClaimingExecutor(db, holder="one:1:a"), ClaimingExecutor(db, holder="two:2:b")
    at = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    try:
        assert one._claim("job", at)
        assert not two._claim("job", at.astimezone(timezone(timedelta(hours=2))))  # the same instant
        assert two._claim("job", at + timedelta(microseconds=1))  # a different one
        assert two._claim("other", at)  # per job
    finally:
        one.shutdown()
        two.shutdown()
    assert (one.claimed, one.lost, two.claimed, two.lost) == (1, 0, 2, 1)
    assert [f.run_time for f in fire_history(db, "job")] == [at + timedelta(microseconds=1), at]


def test_a_fire_claimed_while_the_executor_shuts_down_is_handed_back_and_not_counted(db: Database) -> None:
    class _Job:
        id = "job"

    executor = ClaimingExecutor(db, holder="one:1:a")
    executor.shutdown()  # the pool refuses new work: the claim just won cannot run
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with pytest.raises(RuntimeError):
        executor._do_submit_job(_Job(), [at])
    assert fire_history(db, "job") == []
    assert (executor.claimed, executor.lost) == (0, 0)
    other = ClaimingExecutor(db, holder="two:2:b")
    try:
        assert other._claim("job", at)  # free again for a scheduler that can run it
    finally:
        other.shutdown()
    assert other.claimed == 1


def test_configured_jobs_follow_the_schedule_settings(tmp_path: Path) -> None:
    assert [(s.id, s.func, s.args) for s in configured_jobs(load_settings())] == [
        ("monitor", "driftloop.scheduling.jobs:monitor_pass", (None,)),
        ("gates", "driftloop.scheduling.jobs:advance_gates", (None,)),
    ]
    config = tmp_path / "driftloop.toml"
    config.write_text(
        '[schedule]\nmonitor_every_minutes = 30\nretrain_cron = "0 3 * * 0"\nplant_clock_minutes = 0.5\n'
        "misfire_grace_s = 12.5\n"
    )
    specs = {s.id: s for s in configured_jobs(load_settings(config))}
    assert list(specs) == ["monitor", "gates", "retrain", "plant-clock"]
    assert specs["retrain"].func == "driftloop.scheduling.jobs:scheduled_retrain"
    assert specs["plant-clock"].func == "driftloop.scheduling.jobs:plant_clock_tick"
    assert {s.args for s in specs.values()} == {(str(config.resolve()),)}
    assert {s.grace for s in specs.values()} == {13}  # whole seconds, rounded up
    assert str(specs["monitor"].trigger) == "interval[0:30:00]"
    assert str(specs["plant-clock"].trigger) == "interval[0:00:30]"
    # Crontab's 0 is Sunday (APScheduler 3 alone would read Monday): from a Wednesday, next Sunday 03:00.
    wednesday = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    assert specs["retrain"].trigger.get_next_fire_time(None, wednesday) == datetime(
        2026, 3, 8, 3, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("weekdays", "days"),
    [
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("*/2", "sun,tue,thu,sat"),
        ("5-7", "sun,fri,sat"),
        ("1,3", "mon,wed"),
        ("mon-fri", "mon-fri"),
        ("*", "*"),
    ],
)
def test_crontab_weekdays_count_from_sunday(
    weekdays: str, days: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_SCHEDULE__RETRAIN_CRON", f"0 3 * * {weekdays}")
    (retrain,) = [s for s in configured_jobs(load_settings()) if s.id == "retrain"]
    assert str(retrain.trigger) == f"cron[month='*', day='*', day_of_week='{days}', hour='3', minute='0']"


@pytest.mark.parametrize("cron", ["0 3 * *", "61 * * * *", "0 3 * * 8", "0 3 * * mon-5", "* * * * * *"])
def test_an_invalid_crontab_is_a_config_error_naming_the_key(
    cron: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_SCHEDULE__RETRAIN_CRON", cron)
    with pytest.raises(ConfigError, match=r"schedule\.retrain_cron \(DRIFTLOOP_SCHEDULE__RETRAIN_CRON\)"):
        configured_jobs(load_settings())
