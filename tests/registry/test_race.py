"""Two processes promote the same version to Production at once: one production version, two entries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.tracking import MlflowClient

if TYPE_CHECKING:
    from tests.conftest import MlflowServer
    from tests.registry.conftest import Plant


def test_racing_promotions_leave_one_production_version_and_both_attempts_in_history(
    plant: Plant, mlflow_server: MlflowServer, db_url: str, tmp_path: Path
) -> None:
    name = plant.name
    client = MlflowClient(mlflow_server.url)
    env = {
        "DRIFTLOOP_DATABASE__URL": db_url,  # the audit, approvals and lock live here
        "DRIFTLOOP_POLICY__COMPARISON_MARGIN": "1",  # this test is about the lock, not the comparison
    }
    feature_version = client.get_model_version(name, "1").tags["driftloop.feature_version"]
    out = plant.run("train", "--features", feature_version, "--register", "--set", "seed=11", extra_env=env)
    assert out.returncode == 0, out.stderr
    version = out.stdout.split(f"registered {name}/", 1)[1].split()[0]
    for args in (
        ("promote", name, version, "--to", "staging"),
        ("approve", name, version, "--by", "alice", "--comment", "race"),
    ):
        done = plant.run(*args, extra_env=env)
        assert done.returncode == 0, done.stderr

    # The first to take the lock holds it until the other has found it held (tests.registry.armed), so
    # their critical sections overlap unless the lease serialises them.
    repo = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join([repo, *filter(None, [plant.env.get("PYTHONPATH")])])
    racing = {**plant.env, **env, "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "tests.registry.armed", "hold", str(tmp_path / "contention")]
    cmd += ["promote", name, version, "--to", "production", "--by"]
    procs = [
        subprocess.Popen(
            [*cmd, who],
            cwd=plant.directory,
            env=racing,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("racer-a", "racer-b")
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs

    stages = {
        mv.version: mv.tags.get("driftloop.stage") for mv in client.search_model_versions(f"name='{name}'")
    }
    assert list(stages.values()).count("Production") == 1
    assert stages[version] == "Production"
    assert client.get_model_version_by_alias(name, "production").version == version

    history = plant.run("models", "history", name, "--version", version, extra_env=env)
    assert history.returncode == 0, history.stderr
    attempts = [line for line in history.stdout.splitlines() if "Staging → Production" in line]
    assert len(attempts) == 2, history.stdout
    assert sum(" done " in line for line in attempts) == 1
    repeats = [line for line in attempts if "unchanged" in line]
    assert len(repeats) == 1
    assert "concurrent promotion got there first" in repeats[0]
    assert {"by racer-a" in "".join(attempts), "by racer-b" in "".join(attempts)} == {True}
