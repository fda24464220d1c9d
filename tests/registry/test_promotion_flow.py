"""The issue's "done when": the pipeline's versions to Production with the CLI alone, audited, rolled back."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from mlflow.tracking import MlflowClient

if TYPE_CHECKING:
    from tests.conftest import MlflowServer
    from tests.registry.conftest import Plant


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_staging_production_approval_comparison_history_and_rollback(
    plant: Plant, mlflow_server: MlflowServer
) -> None:
    client = MlflowClient(mlflow_server.url)
    _first_version_to_production(plant, client)
    _second_version_compared_and_promoted(plant, client)
    _rollback_and_lineage(plant, client)


def _first_version_to_production(plant: Plant, client: MlflowClient) -> None:
    name = plant.name
    # None → Staging: the compliance checks run, and their verdicts become version tags.
    out = plant.ok("promote", name, "1", "--to", "staging", "--by", "ci")
    assert f"{name}/1: None → Staging" in out
    v1 = client.get_model_version(name, "1")
    assert client.get_model_version_by_alias(name, "staging").version == "1"
    assert v1.tags["driftloop.stage"] == "Staging"
    for check in (
        "signature",
        "metric_floors",
        "slice_floors",
        "model_size",
        "latency",
        "reproducibility",
        "loads_and_predicts",
    ):
        assert v1.tags[f"driftloop.check.{check}"] == "passed", check
    reports = [a.path for a in client.list_artifacts(v1.run_id, "promotion")]
    assert any(p.startswith("promotion/staging-") for p in reports)
    assert plant.ok("promote", name, "1", "--to", "staging").strip().endswith("nothing to do")  # idempotent

    # Staging → Production needs an approval by default.
    refused = plant.run("promote", name, "1", "--to", "production", "--by", "ci")
    assert refused.returncode == 1
    line = _one_error_line(refused.stderr)
    assert "Production refused" in line
    assert f"driftloop approve {name} 1 --to production" in line
    assert client.get_model_version(name, "1").tags["driftloop.stage"] == "Staging"

    plant.ok("approve", name, "1", "--by", "alice", "--comment", "looks good")
    out = plant.ok("promote", name, "1", "--to", "production", "--by", "ci")
    assert "offline_comparison" in out
    assert "no production version yet" in out
    assert client.get_model_version_by_alias(name, "production").version == "1"
    assert "staging" not in client.get_model_version(name, "1").aliases


def _second_version_compared_and_promoted(plant: Plant, client: MlflowClient) -> None:
    name = plant.name

    # Version 2 goes the same way and is compared with version 1 on the freshest labelled window.
    plant.ok("promote", name, "2", "--to", "staging")
    plant.ok("approve", name, "2", "--by", "alice", "--comment", "retrained on a week")
    out = plant.ok("promote", name, "2", "--to", "production")
    assert re.search(
        r"offline_comparison +v2 roc_auc 0\.\d+ matches or beats v1 0\.\d+ \(margin 0\.005\)", out
    )
    assert f"{name}/2: Staging → Production (replaces {name}/1)" in out
    assert client.get_model_version_by_alias(name, "production").version == "2"
    assert client.get_model_version(name, "1").tags["driftloop.stage"] == "Archived"
    report_paths = [
        a.path for a in client.list_artifacts(client.get_model_version(name, "2").run_id, "promotion")
    ]
    production_report = next(p for p in report_paths if p.startswith("promotion/production-"))
    local = client.download_artifacts(client.get_model_version(name, "2").run_id, production_report)
    with open(local) as fh:
        evidence = json.load(fh)["checks"][0]["evidence"]
    assert evidence["champion_version"] == 1
    assert evidence["champion"]["n"] == evidence["challenger"]["n"] >= 300  # the same rows for both
    assert {"roc_auc", "pr_auc", "f1"} <= set(evidence["champion"])

    # What `models list` prints agrees with what MLflow's own client sees.
    listing = plant.ok("models", "list", name)
    rows = {line.split()[0]: line.split()[1:3] for line in listing.splitlines() if line.strip()[:1].isdigit()}
    for number in ("1", "2"):
        mv = client.get_model_version(name, number)
        assert rows[number][0] == mv.tags["driftloop.stage"]
        assert rows[number][1] == (",".join(sorted(mv.aliases)) or "-")

    # Every step is in the history, refusals included, with who and why.
    history = plant.ok("models", "history", name, "--checks")
    assert history.count("refused") >= 1
    assert re.search(r"v1 +approve +for Production +given +by alice: looks good", history)  # approvals too
    assert "by ci" in history
    assert "Staging → Production" in history
    assert "Production → Archived" in history
    assert "✓ metric_floors" in history
    assert "✓ offline_comparison" in history


def _rollback_and_lineage(plant: Plant, client: MlflowClient) -> None:
    name = plant.name

    # Rollback: production returns to version 1 in one step; version 2 is archived.
    out = plant.ok("rollback", name, "--by", "oncall", "--comment", "alarms")
    assert f"{name}/1 is Production again; {name}/2 archived" in out
    assert client.get_model_version_by_alias(name, "production").version == "1"
    assert client.get_model_version(name, "2").tags["driftloop.stage"] == "Archived"
    assert "rollback" in plant.ok("models", "history", name)
    # Version 1 was the first production version: there is nothing before it.
    again = plant.run("rollback", name)
    assert again.returncode == 1
    assert "is the first production version" in _one_error_line(again.stderr)

    # Lineage: from the version back to code, features and raw partitions.
    lineage = plant.ok("lineage", f"{name}/2")
    run_id = client.get_model_version(name, "2").run_id
    commit = client.get_run(run_id).data.tags["driftloop.git.commit"]
    assert f"git {commit} (dirty: false)" in lineage
    assert f"run      {run_id}" in lineage
    assert "features " in lineage
    assert lineage.count("raw/plant/date=") == 7
