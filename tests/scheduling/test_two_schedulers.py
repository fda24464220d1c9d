"""Two scheduler processes on one database, one job firing every 0.25 s: every fire runs once in total."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.scheduling.claims import fire_history
from tests.conftest import wait_for
from tests.scheduling.probe_jobs import lines

if TYPE_CHECKING:
    from driftloop.storage.metadata import Database

REPO = Path(__file__).resolve().parents[2]
PERIOD = 0.25  # seconds; short, so the suite stays fast (the assertions do not depend on timing)
JOINT_FIRES = 5  # fires both schedulers must have been up for


def test_two_schedulers_run_each_fire_once_and_both_take_part(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    statuses = [tmp_path / f"scheduler-{n}.json" for n in range(2)]
    path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])  # keep the caller's
    env = {**os.environ, "PYTHONPATH": path}
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    cmd = [sys.executable, "-m", "tests.scheduling.run_scheduler", db_url, str(out), str(PERIOD)]
    procs = [
        subprocess.Popen([*cmd, str(status)], cwd=REPO, env=env, text=True, **pipes) for status in statuses
    ]

    def counts() -> list[dict[str, Any]]:
        return [json.loads(status.read_text()) for status in statuses]

    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        both_up = datetime.now(UTC)
        wait_for(
            lambda: sum(f.run_time > both_up for f in fire_history(db, "tick")) >= JOINT_FIRES,
            timeout=30,
            what=f"{JOINT_FIRES} fires with both schedulers up",
        )
        # Both take part, and at least once both went for the same fire (the claim arbitrated). Polled:
        # on a loaded host one scheduler may be late for a while, never for long.
        wait_for(
            lambda: all(c["claimed"] + c["lost"] >= 1 for c in counts()),
            timeout=30,
            what="both schedulers to go for a fire",
        )
        wait_for(lambda: sum(c["lost"] for c in counts()) >= 1, timeout=30, what="a claim lost to the other")
    finally:
        results = [proc.communicate(input="", timeout=30) for proc in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    stats = counts()  # final, written after each scheduler's shutdown

    fires = sorted(fire_history(db, "tick"), key=lambda f: f.run_time)
    runs = lines(out)
    assert len(fires) >= JOINT_FIRES
    assert all(f.outcome == "succeeded" for f in fires)  # shutdown waited for every claimed fire
    # The job's own record: exactly one run per claimed run time, none without a claim.
    assert len(runs) == len(fires) == sum(s["claimed"] for s in stats)
    pid = {s["holder"]: int(s["holder"].split(":")[1]) for s in stats}
    assert Counter(pid[f.holder] for f in fires) == Counter(p for p, _ in runs)
    # Both computed the same run times (one lattice): any two claimed fires are whole periods apart.
    gaps = [b.run_time - a.run_time for a, b in itertools.pairwise(fires)]
    assert all(gap > timedelta(0) and gap % timedelta(seconds=PERIOD) == timedelta(0) for gap in gaps)
