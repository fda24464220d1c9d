"""From a feature version to a registered PyTorch model, against a real MLflow server process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from driftloop.auth import os_user
from driftloop.settings import load_settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.conftest import MlflowServer
    from tests.plant import Plant


def _artifact_json(client: MlflowClient, run_id: str, path: str, tmp_path: Path) -> Any:
    local = client.download_artifacts(run_id, path, str(tmp_path))
    return json.loads(Path(local).read_text())


@pytest.fixture
def pipeline_model(plant_copy: Callable[..., Plant], monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(model name, pipeline run id) of a private copy of the session's trained plant (tests.plant),
    with the working directory set to the copy's."""
    plant = plant_copy()
    monkeypatch.chdir(plant.directory)
    return plant.name, plant.pipeline_run


def test_pipeline_registers_a_version_with_everything_tracked(
    trained_plant: Plant, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    name, pipeline_run = trained_plant.name, trained_plant.pipeline_run
    client = MlflowClient(mlflow_server.url)
    version = client.get_model_version(name, "1")
    # Seed 19: a new version with no stage, tagged with its lineage; never the deprecated stage API.
    assert version.current_stage == "None"
    assert version.tags["driftloop.stage"] == "None"
    assert version.tags["driftloop.pipeline_run"] == pipeline_run
    feature_version = version.tags["driftloop.feature_version"]
    assert len(feature_version) == 32
    run = client.get_run(version.run_id)
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    for key in ("driftloop.git.commit", "driftloop.git.dirty", "driftloop.data_window", "driftloop.version"):
        assert key in tags
    # What MLflow's UI shows (decision 0064): the source, the user, the kind and the commit.
    assert tags["mlflow.source.name"] == f"driftloop pipeline run {pipeline_run}"
    assert tags["mlflow.source.type"] == "JOB"
    assert tags["mlflow.user"] == os_user()
    assert tags["driftloop.kind"] == "training"
    assert tags["mlflow.source.git.commit"] == tags["driftloop.git.commit"]
    assert client.get_experiment(run.info.experiment_id).name == f"exp-{name}"  # tests.workspace's
    assert tags["driftloop.feature_version"] == feature_version
    assert params["max_epochs"] == "30"  # tests.plant.TRAINING
    assert params["model_factory"] == "driftloop.training.model:mlp"
    assert 0.5 < metrics["holdout_roc_auc"] <= 1.0
    for key in ("holdout_pr_auc", "holdout_f1", "holdout_brier", "holdout_precision", "holdout_recall"):
        assert key in metrics
    assert any(k.startswith("slice_product_variant_L_") for k in metrics)
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == list(range(1, len(history) + 1))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    artifacts |= {a.path for d in ("plots", "evaluation") for a in client.list_artifacts(run.info.run_id, d)}
    for path in (
        "model.pth",
        "transform.json",
        "reference_profile.json",
        "training_config.json",
        "plots/roc.png",
        "plots/pr.png",
        "plots/calibration.png",
        "evaluation/metrics.json",
        "evaluation/confusion_matrix.json",
        "evaluation/calibration.json",
    ):
        assert path in artifacts, path
    # The dataset is logged as an MLflow input.
    assert run.inputs.dataset_inputs
    assert feature_version[:12] in run.inputs.dataset_inputs[0].dataset.name
    # The reference profile the monitor will need.
    profile = _artifact_json(client, run.info.run_id, "reference_profile.json", tmp_path)
    assert set(profile["features"]) >= {"torque_nm", "air_temperature_k", "product_variant"}
    assert len(profile["features"]["torque_nm"]["percentiles"]) == 101
    assert "prediction" in profile
    # The training target's range: the band a regression model's labels are checked against.
    assert (profile["target"]["min"], profile["target"]["max"]) == (0.0, 1.0)


def test_pyfunc_model_predicts_what_the_trained_module_predicts(
    pipeline_model: tuple[str, str], mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    from driftloop.features import feature_store_for

    name, _ = pipeline_model
    client = MlflowClient(mlflow_server.url)
    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_registry_uri(mlflow_server.url)  # not whatever an earlier in-process test left
    version = client.get_model_version(name, "1")
    settings = load_settings(cwd=Path.cwd())
    store = feature_store_for(settings)
    csv = store.pull(version.tags["driftloop.feature_version"], tmp_path / "f.csv")
    names = _artifact_json(client, version.run_id, "feature_names.json", tmp_path)
    table = pd.read_csv(csv).iloc[:500]
    frame = table[names].astype(np.float32)
    # The registered model takes raw rows (its signature: the raw inputs) and applies its own transform.
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/1")
    raw = table[pyfunc.metadata.get_input_schema().input_names()]
    raw = raw.astype({c: np.float64 for c in raw.columns if c != "product_variant"})  # numbers: doubles
    served = np.asarray(pyfunc.predict(raw)).reshape(-1)
    # The .pth state dict, loaded into a fresh model of the same architecture, gives the same scores.
    from driftloop.training.model import build_model

    state_path = client.download_artifacts(version.run_id, "model.pth", str(tmp_path))
    module = build_model(settings.training, len(names))
    module.load_state_dict(torch.load(state_path, weights_only=True))
    module.eval()
    with torch.no_grad():
        direct = module(torch.from_numpy(frame.to_numpy())).numpy().reshape(-1)
    np.testing.assert_allclose(served, direct, rtol=0, atol=1e-6)
    assert ((served >= 0) & (served <= 1)).all()


def test_models_show_prints_metrics_lineage_and_stage(cli, pipeline_model: tuple[str, str]) -> None:
    name, pipeline_run = pipeline_model
    shown = cli("models", "show", f"{name}/1")
    assert shown.code == 0, shown.err
    out = shown.out
    assert f"{name}/1" in out
    assert "stage None" in out
    assert "roc_auc" in out
    assert f"pipeline run    {pipeline_run}" in out
    assert "feature version" in out
    assert "git commit" in out
    listed = cli("models", "list", name)
    assert listed.code == 0
    assert "None" in listed.out


def test_reproduce_gives_the_same_metrics(cli, pipeline_model: tuple[str, str]) -> None:
    name, _ = pipeline_model
    result = cli("reproduce", f"{name}/1")
    assert result.code == 0, result.err
    assert "reproduced" in result.out
    assert "largest |delta| 0.00e+00" in result.out


def test_a_second_identical_pipeline_run_registers_nothing_new(cli, pipeline_model: tuple[str, str]) -> None:
    name, _ = pipeline_model
    again = cli("pipeline", "run", "--as-of", "2026-01-10")
    assert again.code == 0, again.err
    assert again.out.count("cached") == 7  # identical inputs and code: same model, same version
    assert "2" not in [
        line.split()[0] for line in cli("models", "list", name).out.splitlines()[3:] if line.strip()
    ]


def test_train_on_a_feature_version_by_prefix_tracks_the_same_lineage(
    cli, pipeline_model: tuple[str, str], mlflow_server: MlflowServer
) -> None:
    name, _ = pipeline_model
    client = MlflowClient(mlflow_server.url)
    feature_version = client.get_model_version(name, "1").tags["driftloop.feature_version"]
    result = cli("train", "--features", feature_version[:10])
    assert result.code == 0, result.err
    run_id = result.out.split("MLflow run ", 1)[1].split()[0]
    run = client.get_run(run_id)
    assert run.data.tags["driftloop.feature_version"] == feature_version
    # Same data, configuration and seed as the pipeline's training: the same hold-out metrics.
    pipeline_run = client.get_run(client.get_model_version(name, "1").run_id)
    assert run.data.metrics["holdout_roc_auc"] == pipeline_run.data.metrics["holdout_roc_auc"]
    unknown = cli("train", "--features", "ffffffffff")
    assert unknown.code != 0
    assert unknown.err.startswith("error: no feature version")
