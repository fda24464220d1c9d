"""``driftloop scheduler`` and ``driftloop schedule list`` as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from driftloop.scheduling.claims import fire_history
from driftloop.scheduling.scheduler import configured_jobs
from driftloop.settings import load_settings
from driftloop.storage.metadata import open_metadata
from tests.conftest import wait_for
from tests.scheduling import probe_jobs
from tests.scheduling.conftest import running
from tests.scheduling.probe_jobs import FIRES_LOG, lines

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.conftest import Result

REPO = Path(__file__).resolve().parents[2]
# The probe jobs stand in for driftloop.scheduling.jobs: these tests are about scheduling, not the loop.
BOOT = (
    "import sys; import tests.scheduling.probe_jobs as jobs; "
    "sys.modules['driftloop.scheduling.jobs'] = jobs; "
    "from driftloop.cli.main import main; main(sys.argv[1:])"
)


@pytest.mark.parametrize(
    "args", [["scheduler", "--help"], ["schedule", "--help"], ["schedule", "list", "--help"]]
)
def test_help(cli: Callable[..., Result], args: list[str]) -> None:
    result = cli(*args)
    assert result.code == 0
    assert "Usage" in result.out


def test_errors_are_one_line(cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    bad_level = cli("scheduler", "--log-level", "loud")
    assert bad_level.code == 2
    assert bad_level.err.strip().count("\n") == 0
    assert "--log-level" in bad_level.err
    monkeypatch.setenv("DRIFTLOOP_SCHEDULE__RETRAIN_CRON", "0 3 * *")
    for args in (["scheduler"], ["schedule", "list"]):
        result = cli(*args)
        assert result.code == 1
        assert result.err.strip().count("\n") == 0
        assert result.err.startswith(
            "error: schedule.retrain_cron (DRIFTLOOP_SCHEDULE__RETRAIN_CRON) '0 3 * *'"
        )


def test_schedule_list_before_any_scheduler_ran(
    cli: Callable[..., Result], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_DATABASE__URL", db_url)
    result = cli("schedule", "list")
    assert result.code == 0, result.err
    rows = result.out.splitlines()
    assert rows[0].split() == ["job", "trigger", "next", "run", "(UTC)", "last", "fire"]
    assert rows[1].split() == ["monitor", "interval[1:00:00]", "not", "scheduled", "yet", "never"]
    assert rows[2].split() == ["gates", "interval[0:05:00]", "not", "scheduled", "yet", "never"]
    assert "no scheduler has run on this database yet" in rows[3]


def test_schedule_list_shows_next_runs_last_fires_and_pending_changes(
    cli: Callable[..., Result], db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "driftloop.scheduling.jobs", probe_jobs)
    monkeypatch.setenv("DRIFTLOOP_DATABASE__URL", db_url)
    monkeypatch.setenv("DRIFTLOOP_SCHEDULE__PLANT_CLOCK_MINUTES", "0.005")  # every 0.3 s
    db = open_metadata(db_url)
    try:
        with running(db, configured_jobs(load_settings())):
            wait_for(
                lambda: any(f.outcome for f in fire_history(db, "plant-clock")), what="a plant-clock fire"
            )
        (last, *_) = fire_history(db, "plant-clock")
    finally:
        db.dispose()
    # The configuration moves on while no scheduler runs: list says what the next start will change.
    monkeypatch.setenv("DRIFTLOOP_SCHEDULE__PLANT_CLOCK_MINUTES", "0")
    monkeypatch.setenv("DRIFTLOOP_SCHEDULE__GATES_EVERY_MINUTES", "10")
    result = cli("schedule", "list")
    assert result.code == 0, result.err
    out = result.out.splitlines()
    monitor = next(line for line in out if line.startswith("monitor "))
    assert monitor.split()[1] == "interval[1:00:00]"
    assert monitor.split()[-1] == "never"
    gates = out.index(next(line for line in out if line.startswith("gates ")))
    assert (
        out[gates + 1].strip() == "configured now as interval[0:10:00]: replaced when a scheduler next starts"
    )
    clock = out.index(next(line for line in out if line.startswith("plant-clock ")))
    assert f"{last.run_time:%Y-%m-%d %H:%M:%S} succeeded in " in out[clock]
    assert out[clock].endswith(f"by {last.holder}")
    assert out[clock + 1].strip() == "no longer configured: removed when a scheduler next starts"
    assert (tmp_path / FIRES_LOG).exists()


def test_scheduler_runs_in_the_foreground_and_stops_cleanly_on_sigterm(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "driftloop.toml").write_text("[schedule]\nplant_clock_minutes = 0.005\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DRIFTLOOP_") or k.startswith("DRIFTLOOP_TEST_")
    }
    path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])  # keep the caller's
    env |= {"PYTHONPATH": path, "DRIFTLOOP_DATABASE__URL": db_url}
    proc = subprocess.Popen(
        [sys.executable, "-c", BOOT, "scheduler"],
        cwd=tmp_path,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: len(lines(tmp_path / FIRES_LOG)) >= 1 or proc.poll() is not None,
            timeout=20,
            what="a plant-clock fire",
        )
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.splitlines()[0].startswith("driftloop scheduler ")
    assert "schedules: added monitor, gates, plant-clock" in out
    assert any(line.split()[:2] == ["plant-clock", "interval[0:00:00.300000]"] for line in out.splitlines())
    assert out.rstrip().endswith("scheduler stopped")
    assert "fire plant-clock @ " in err
    assert " succeeded in " in err
    db = open_metadata(db_url)
    try:
        fires = fire_history(db, "plant-clock")
    finally:
        db.dispose()
    # Stopping waited for the running fire: every claim has its outcome, one per recorded run.
    assert [f.outcome for f in fires] == ["succeeded"] * len(lines(tmp_path / FIRES_LOG))
