"""A user's working directory for end-to-end tests: its driftloop.toml, environment and CLI processes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import MlflowServer

_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


@dataclass(frozen=True)
class Workspace:
    """A directory whose driftloop.toml points at an MLflow server and names its own model."""

    directory: Path
    name: str
    env: dict[str, str]

    def run(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``driftloop ARGS…`` as a separate process, as a user would run it."""
        env = {**self.env, **(extra_env or {})}
        command = [sys.executable, "-m", "driftloop", *args]
        return subprocess.run(
            command, cwd=self.directory, env=env, capture_output=True, text=True, timeout=600, check=False
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout


def make_workspace(
    directory: Path, server: MlflowServer, config: str = "", *, git: bool = False
) -> Workspace:
    """Write driftloop.toml (tracking on ``server``, a unique model and experiment, plus ``config``).

    ``git``: make it a clean git checkout (the data driftloop writes stays untracked), as a team's repo is.
    """
    name = f"plant-{uuid.uuid4().hex[:8]}"
    (directory / "driftloop.toml").write_text(
        f'[tracking]\nuri = "{server.url}"\nexperiment = "exp-{name}"\n'
        f'[registry]\nmodel_name = "{name}"\n{config}'
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DRIFTLOOP_") or k.startswith("DRIFTLOOP_TEST_")
    }
    env |= _GIT_IDENTITY
    if git:
        for cmd in (
            ["git", "init", "-q"],
            ["git", "add", "driftloop.toml"],
            ["git", "commit", "-qm", "config"],
        ):
            subprocess.run(cmd, cwd=directory, env=env, check=True)
    return Workspace(directory, name, env)
