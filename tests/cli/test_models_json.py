"""`--json` on the registry's read commands, as a script runs them (separate processes, stdout alone)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from driftloop.core.models import Stage

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.plant import Plant


def test_models_history_and_lineage_as_json(plant_copy: Callable[..., Plant]) -> None:
    ws = plant_copy(production=True)
    [version] = json.loads(ws.ok("models", "list", "--json"))
    assert (version["name"], version["version"], version["stage"]) == (ws.name, 1, Stage.PRODUCTION.value)
    assert "production" in version["aliases"]
    assert version["changed_outside_driftloop"] is False
    assert 0.5 < version["metrics"]["roc_auc"] <= 1

    shown = json.loads(ws.ok("models", "show", f"{ws.name}/1", "--json"))
    assert shown["run_id"] == version["run_id"]
    # The list shows the registry's tag (rounded to 6 places), show the tracked run's metric.
    assert shown["metrics"]["roc_auc"] == pytest.approx(version["metrics"]["roc_auc"], abs=1e-6)
    assert shown["tags"]["driftloop.pipeline_run"] == ws.pipeline_run

    history = json.loads(ws.ok("models", "history", ws.name, "--json"))
    assert [t["to_stage"] for t in history["transitions"]][-1] == Stage.PRODUCTION.value
    assert history["approvals"], "production needed an approval"

    trail = json.loads(ws.ok("lineage", f"{ws.name}/1", "--json"))
    assert trail["pipeline_run"] == ws.pipeline_run
    assert trail["features"]["in_store"] is True
    assert trail["features"]["raw_partitions"], "the raw partitions the version was trained on"


def test_models_list_and_show_read_the_registry_without_importing_mlflow(
    plant_copy: Callable[..., Plant],
) -> None:
    """Read commands answer from MLflow's REST API (decision 0073): importing MLflow costs seconds."""
    ws = plant_copy(production=True)
    for argv in (["models", "list", "--json"], ["models", "show", f"{ws.name}/1", "--json"]):
        probe = (
            "import sys\nfrom driftloop.cli.main import main\ntry:\n"
            f"    main({argv!r})\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "print('mlflow imported' if 'mlflow' in sys.modules else 'no mlflow')"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ws.directory,
            env=ws.env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == "no mlflow"
        assert ws.name in done.stdout
