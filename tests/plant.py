"""The session's trained plant: simulated, run through the pipeline and registered once per worker.

Training is the slow part of the end-to-end tests, so it happens once: ``build_plant`` makes a git
checkout with a week of simulated plant data and version 1 of its model registered by a real pipeline
run. That workspace is read-only. A test (or module) that changes anything gets a cheap private copy
from ``copy_plant``: the directory copied and the same trained run registered under a model name of
its own, optionally promoted to Production through the real promotion path. No copy retrains.

A copy's cached pipeline steps (driftloop's metadata rows) still name the original's files by absolute
path; they are only ever read, and the original outlives every copy in the session.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from mlflow.tracking import MlflowClient

from driftloop.cli.main import main
from tests.mlflow_state import mlflow_state_kept
from tests.workspace import Workspace, make_workspace

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.conftest import MlflowServer

# Enough epochs for the promotion checks to pass on a few thousand simulated rows.
TRAINING = "[training]\nmax_epochs = 30\nhidden = [32]\nlearning_rate = 0.005\n"
# Slices of a few thousand simulated rows are small; the bounds are loose enough for them to pass. The
# latency budget is tests/registry/test_checks.py's business: here a loaded CI machine (p95 66 ms seen
# under two workers and other jobs) must not refuse a promotion.
POLICY = (
    "[policy]\nslice_floors = { roc_auc = 0.6 }\nslice_min_rows = 100\ncomparison_min_rows = 300\n"
    "max_latency_ms = 1000\n"
)
SIMULATION = ("--start", "2026-01-01", "--days", "6", "--rows-per-day", "2000", "--seed", "5")
AS_OF = "2026-01-10"  # every simulated label is known by then


@dataclass(frozen=True)
class Plant(Workspace):
    """A workspace whose model has version 1 from the pipeline run ``pipeline_run``."""

    pipeline_run: str


def build_plant(directory: Path, server: MlflowServer) -> Plant:
    """Simulate, run the pipeline (version 1, no stage) in a clean git checkout of ``directory``."""
    ws = make_workspace(directory, server, TRAINING + POLICY, git=True)
    ws.ok("simulate", *SIMULATION)
    out = ws.ok("pipeline", "run", "--as-of", AS_OF)
    assert f"model={ws.name}/1" in out, out
    run = out.split("pipeline run ", 1)[1].split()[0]
    return Plant(ws.directory, ws.name, ws.env, run)


def copy_plant(
    source: Plant, directory: Path, server: MlflowServer, config: str = "", *, production: bool = False
) -> Plant:
    """A private copy of ``source`` in ``directory`` (which must not exist): its files, a model name of
    its own whose version 1 is ``source``'s run (same model, same tags), ``config`` appended to its
    driftloop.toml and committed (the checkout stays clean). ``production``: promote version 1 through
    staging, an approval and production, as a user would."""
    shutil.copytree(source.directory, directory, symlinks=True)
    name = f"plant-{uuid.uuid4().hex[:8]}"
    toml = directory / "driftloop.toml"
    text = toml.read_text().replace(f'model_name = "{source.name}"', f'model_name = "{name}"')
    toml.write_text(text + config)
    for cmd in (["git", "add", "driftloop.toml"], ["git", "commit", "-qm", "a private copy"]):
        subprocess.run(cmd, cwd=directory, env=source.env, check=True)
    _register_again(MlflowClient(server.url), source.name, name)
    copy = Plant(directory, name, source.env, source.pipeline_run)
    if production:
        for args in (
            ("promote", name, "1", "--to", "staging"),
            ("approve", name, "1", "--by", "t", "--comment", "t"),
            ("promote", name, "1", "--to", "production"),
        ):
            in_process(directory, *args)
    return copy


def _register_again(client: MlflowClient, source: str, name: str) -> None:
    """``source``'s version 1 as ``name``'s version 1: the same logged model and run, the same tags."""
    version = client.get_model_version(source, "1")
    client.create_registered_model(name)
    # MLflow 3 names a logged model (``models:/m-…``) by its id as well as by its source.
    model_id = version.source.removeprefix("models:/") if version.source.startswith("models:/m-") else None
    client.create_model_version(name, version.source, version.run_id, dict(version.tags), model_id=model_id)


def in_process(directory: Path, *args: str) -> None:
    """``driftloop ARGS…`` inside this process from ``directory`` (no interpreter start-up), leaving the
    process's MLflow state, working directory and driftloop logger as they were; fails on a non-zero exit."""
    err = io.StringIO()
    with _logger_kept(), mlflow_state_kept(), pytest.MonkeyPatch.context() as mp:
        mp.chdir(directory)
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as done:
            main(list(args))
    code = done.value.code
    assert code in {0, None}, f"driftloop {' '.join(args)} exited {code}: {err.getvalue()}"


@contextlib.contextmanager
def _logger_kept() -> Iterator[None]:
    """Module- and session-scoped fixtures run before each test's own logging bookkeeping starts."""
    logger = logging.getLogger("driftloop")
    level, propagate, handlers = logger.level, logger.propagate, list(logger.handlers)
    root = logging.getLogger()
    root_level, root_handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        logger.setLevel(level)
        logger.propagate, logger.handlers = propagate, handlers
        root.setLevel(root_level)
        root.handlers = root_handlers
