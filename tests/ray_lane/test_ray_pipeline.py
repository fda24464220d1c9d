"""``pipeline.runner.type = "ray"``: every step of a real pipeline run as a Ray task on the cluster."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from driftloop.pipeline.executors import executor_for
from driftloop.pipeline.ray_executor import NODE_LINE, TIMEOUT_EXIT, RayExecutor
from driftloop.settings import load_settings

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.ray

STEPS = ("ingest", "validate", "transform", "features", "train", "evaluate", "register")


def _config(address: str, extra: str = "") -> str:
    return (
        f'[pipeline.runner]\ntype = "ray"\n[ray]\naddress = "{address}"\n'
        "[training]\nmax_epochs = 3\nhidden = [16]\n" + extra
    )


def _driftloop(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftloop", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_a_pipeline_runs_every_step_as_a_ray_task(ray_address: str, tmp_path: Path) -> None:
    (tmp_path / "driftloop.toml").write_text(_config(ray_address))
    simulation = ("--start", "2026-01-01", "--days", "2", "--rows-per-day", "1500")
    simulated = _driftloop(tmp_path, "simulate", *simulation)
    assert simulated.returncode == 0, simulated.stderr
    done = _driftloop(tmp_path, "pipeline", "run", "--as-of", "2026-01-10")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "model=" in done.stdout, done.stdout
    run_id = done.stdout.split("pipeline run ", 1)[1].split()[0]
    nodes = set()
    for step in STEPS:
        log = (tmp_path / ".driftloop" / "logs" / run_id / f"{step}.log").read_text()
        # The step's own output came back from the task, followed by the node that ran it.
        assert NODE_LINE in log, (step, log)
        nodes.add(log.rsplit(NODE_LINE, 1)[1].strip())
    assert nodes, "no node named"


def test_a_step_past_its_timeout_has_its_task_cancelled(ray_address: str, tmp_path: Path) -> None:
    (tmp_path / "driftloop.toml").write_text(_config(ray_address))
    settings = load_settings(tmp_path / "driftloop.toml")
    executor = executor_for(settings)
    assert isinstance(executor, RayExecutor)
    log = tmp_path / "step.log"
    # No step command starts (imports driftloop and reads the run) within 10 ms.
    code = executor.run("ingest", "no-such-run", log, timeout_s=0.01)
    assert code == TIMEOUT_EXIT
    assert "its Ray task was cancelled" in log.read_text()
