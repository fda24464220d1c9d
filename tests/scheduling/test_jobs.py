"""The scheduler's job functions, called as APScheduler calls them: with the configuration file only."""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING

from driftloop.data.ingest import list_partitions
from driftloop.scheduling import jobs
from driftloop.scheduling.scheduler import JOBS_MODULE, configured_jobs
from driftloop.settings import load_settings
from driftloop.storage import store_for

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "driftloop.toml"
    path.write_text(
        f'home = "{tmp_path / "home"}"\n[simulate]\nrows_per_day = 200\nmachines = 3\n'
        '[schedule]\nplant_clock_minutes = 5\nretrain_cron = "0 3 * * 0"\n'
    )
    return path


def test_every_configured_job_names_a_function_of_the_jobs_module(tmp_path: Path) -> None:
    settings = load_settings(_config(tmp_path))
    specs = configured_jobs(settings)
    assert {s.id for s in specs} == {"monitor", "gates", "retrain", "plant-clock"}
    for spec in specs:
        module, name = spec.func.split(":")
        assert module == JOBS_MODULE
        assert callable(getattr(jobs, name))


def test_the_plant_clock_appends_the_next_day_each_tick(tmp_path: Path) -> None:
    config = _config(tmp_path)
    store = store_for(load_settings(config))
    jobs.plant_clock_tick(str(config))
    (first,) = [p.day for p in list_partitions(store, "raw/plant", None, None)]
    jobs.plant_clock_tick(str(config))
    days = sorted(p.day for p in list_partitions(store, "raw/plant", None, None))
    assert days == [first, date.fromordinal(first.toordinal() + 1)]


def test_a_monitoring_pass_with_nothing_to_judge_is_skipped_not_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(tmp_path)
    with caplog.at_level(logging.INFO, logger="driftloop.scheduling.jobs"):
        jobs.monitor_pass(str(config))  # no production model yet
        jobs.advance_gates(str(config))  # nothing waiting, nothing guarded
    assert "monitoring pass skipped" in caplog.text
