"""The shortened demo, as a user runs it: the loop must close on its own, and say so."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date
from statistics import mean
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_quick_demo_closes_the_loop_without_a_human(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = subprocess.run(
        [sys.executable, "-m", "driftloop", "demo", "--quick", "--home", str(home)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((home / "demo" / "report.json").read_text())
    onset, detected, promoted = (date.fromisoformat(report[k]) for k in ("onset", "detected", "promoted"))
    assert onset <= detected < promoted, report
    # Recovery within the label delay (a day's labels arrive the day after) + 1 simulated day.
    assert (promoted - onset).days <= 2, report
    assert report["final_version"] == 2  # the injected bad challenger (v3) never reached production
    days = report["days"]
    served = {d["day"]: d["version"] for d in days}
    assert all(v == 1 for day, v in served.items() if date.fromisoformat(day) <= promoted)
    assert all(v == 2 for day, v in served.items() if date.fromisoformat(day) > promoted)
    drifted = [d["roc_auc"] for d in days if onset <= date.fromisoformat(d["day"]) <= promoted]
    recovered = [d["roc_auc"] for d in days if date.fromisoformat(d["day"]) > promoted]
    assert mean(recovered) > mean(drifted) + 0.05, days  # the new version brought the live metric back
    events = " | ".join(e for d in days for e in d["events"])
    for step in ("trigger", "retraining on", "registered", "offline:", "in shadow", "promoted to production"):
        assert step in events, step
    assert "anytime-valid" in events  # the sequential shadow judgement decided
    assert "injected: a bad challenger" in events
    assert "plant-failure/3 registered" in events
    assert "champion kept: offline comparison: v3" in events
    page = (home / "demo" / "report.html").read_text()
    for marker in ("drift onset", "detected", "promoted", "<svg", "<polyline"):
        assert marker in page
    assert "production is now v2" in done.stdout
    assert re.search(r"in production in [0-2] simulated days", done.stdout), done.stdout[-2000:]
    # The registry tells the same story: v1 archived (the rollback target), v2 in production.
    history = subprocess.run(
        [sys.executable, "-m", "driftloop", "models", "history", "plant-failure"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "DRIFTLOOP_HOME": str(home)},
    )
    assert history.returncode == 0, history.stderr
    assert "driftloop-loop" in history.stdout
    assert "Archived" in history.stdout
    ledger = subprocess.run(
        [sys.executable, "-m", "driftloop", "loop", "history"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "DRIFTLOOP_HOME": str(home), "COLUMNS": "200"},
    )
    assert ledger.returncode == 0, ledger.stderr
    assert "promoted" in ledger.stdout  # the trigger that started it all, and what became of it
    assert "suppressed" in ledger.stdout  # later passes saw the same incident: no second retraining
    assert "rollback guards" in ledger.stdout
