"""A git checkout with two pipeline-registered versions of a model, on the session's MLflow server."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import MlflowServer

TRAINING = "[training]\nmax_epochs = 30\nhidden = [32]\nlearning_rate = 0.005\n"
# Slices of a few thousand simulated rows are small; the bounds are loose enough for them to pass.
POLICY = "[policy]\nslice_floors = { roc_auc = 0.6 }\nslice_min_rows = 100\ncomparison_min_rows = 300\n"


@dataclass(frozen=True)
class Plant:
    """A working directory whose driftloop.toml points at the MLflow server, with models registered."""

    directory: Path
    name: str
    env: dict[str, str]

    def run(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "driftloop", *args], cwd=self.directory,
            env={**self.env, **(extra_env or {})},
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout


def make_plant(directory: Path, server: MlflowServer, extra: str = "") -> Plant:
    name = f"plant-{uuid.uuid4().hex[:8]}"
    (directory / "driftloop.toml").write_text(
        f'[tracking]\nuri = "{server.url}"\nexperiment = "exp-{name}"\n[registry]\nmodel_name = "{name}"\n'
        f"{TRAINING}{POLICY}{extra}"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DRIFTLOOP_") or k.startswith("DRIFTLOOP_TEST_")
    }
    env |= {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    # A clean git checkout, so the reproducibility check can pass (the plant's data stays untracked).
    for cmd in (["git", "init", "-q"], ["git", "add", "driftloop.toml"], ["git", "commit", "-qm", "config"]):
        subprocess.run(cmd, cwd=directory, env=env, check=True)
    return Plant(directory, name, env)


@pytest.fixture(scope="session")
def plant(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Plant:
    """Versions 1 and 2 of the model from two pipeline runs over growing windows."""
    p = make_plant(tmp_path_factory.mktemp("plant"), mlflow_server)
    p.ok("simulate", "--start", "2026-01-01", "--days", "8", "--rows-per-day", "2000", "--seed", "3")
    p.ok("pipeline", "run", "--from", "2026-01-01", "--to", "2026-01-05", "--as-of", "2026-01-12")
    p.ok("pipeline", "run", "--from", "2026-01-01", "--to", "2026-01-07", "--as-of", "2026-01-12")
    return p
