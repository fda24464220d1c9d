"""What MLflow's UI shows of driftloop's runs (decision 0064): each kind in its own experiment, named
after the model unless one is configured, with source, user, kind and commit filled in; and the user
is the token's identity with auth on. Runs here are started and ended, never trained."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from mlflow.tracking import MlflowClient

from driftloop.auth import TokenStore, os_user, run_user
from driftloop.errors import AuthenticationError
from driftloop.settings import load_settings
from driftloop.storage.metadata import open_metadata
from driftloop.tracking import RunOrigin, Tracker

if TYPE_CHECKING:
    from pathlib import Path

    from driftloop.settings import Settings
    from tests.conftest import MlflowServer


def _settings(tmp_path: Path, server: MlflowServer, tracking: str = "") -> Settings:
    model = f"plant-{uuid.uuid4().hex[:8]}"
    (tmp_path / "driftloop.toml").write_text(
        f'[tracking]\nuri = "{server.url}"\n{tracking}[registry]\nmodel_name = "{model}"\n'
    )
    return load_settings(tmp_path / "driftloop.toml")


def test_training_and_monitoring_runs_go_to_experiments_named_after_the_model(
    tmp_path: Path, mlflow_server: MlflowServer
) -> None:
    settings = _settings(tmp_path, mlflow_server)
    model = settings.registry.model_name
    tracker = Tracker(settings, origin=RunOrigin("driftloop pipeline run 7", "JOB", "alice"))
    training = tracker.start_run("pipeline 7", kind="training", tags={"driftloop.git.commit": "abc123"})
    tracker.end_run(training)
    monitoring = tracker.start_run("monitor v1", kind="monitoring", tags={"driftloop.model": model})
    tracker.end_run(monitoring)

    client = MlflowClient(mlflow_server.url)
    runs = {"training": client.get_run(training), "monitoring": client.get_run(monitoring)}
    experiments = {k: client.get_experiment(r.info.experiment_id) for k, r in runs.items()}
    assert experiments["training"].name == model
    assert experiments["monitoring"].name == f"{model}/monitoring"
    assert "Monitoring passes" in experiments["monitoring"].tags["mlflow.note.content"]
    tags = runs["training"].data.tags
    assert tags["mlflow.source.name"] == "driftloop pipeline run 7"
    assert tags["mlflow.source.type"] == "JOB"
    assert tags["mlflow.user"] == "alice"
    assert runs["training"].info.user_id == "alice"
    assert tags["mlflow.source.git.commit"] == "abc123"
    assert tags["driftloop.kind"] == "training"
    assert runs["monitoring"].data.tags["driftloop.kind"] == "monitoring"
    assert "mlflow.source.git.commit" not in runs["monitoring"].data.tags
    # Filterable by kind, as the UI's search box does it.
    found = client.search_runs(
        [r.info.experiment_id for r in runs.values()], "tags.`driftloop.kind` = 'monitoring'"
    )
    assert [r.info.run_id for r in found] == [monitoring]


def test_a_configured_experiment_wins_and_the_default_user_is_the_os_user(
    tmp_path: Path, mlflow_server: MlflowServer
) -> None:
    name = f"team-{uuid.uuid4().hex[:8]}"
    settings = _settings(tmp_path, mlflow_server, f'experiment = "{name}"\n')
    tracker = Tracker(settings)
    run = tracker.start_run("r", kind="monitoring", tags={})
    tracker.end_run(run)
    client = MlflowClient(mlflow_server.url)
    found = client.get_run(run)
    assert client.get_experiment(found.info.experiment_id).name == f"{name}/monitoring"
    assert found.data.tags["mlflow.user"] == os_user()
    assert found.data.tags["mlflow.source.name"] == "driftloop"
    assert found.data.tags["mlflow.source.type"] == "LOCAL"


def test_child_runs_are_found_in_their_parents_experiment_made_before_this_change(
    tmp_path: Path, mlflow_server: MlflowServer
) -> None:
    """A grid run from before decision 0064 lives in the experiment ``driftloop`` (the old default)."""
    client = MlflowClient(mlflow_server.url)
    old = client.get_experiment_by_name("driftloop")
    experiment = old.experiment_id if old is not None else client.create_experiment("driftloop")
    parent = client.create_run(experiment).info.run_id
    child = client.create_run(experiment, tags={"mlflow.parentRunId": parent}).info.run_id
    tracker = Tracker(_settings(tmp_path, mlflow_server))
    assert [r.run_id for r in tracker.child_runs(parent)] == [child]


def test_with_auth_on_the_runs_user_is_the_tokens_identity(
    tmp_path: Path, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, mlflow_server)
    assert run_user(settings) == os_user()  # auth off
    db = open_metadata(settings.database_url)
    try:
        _, token = TokenStore(db).create("ci-trainer", ["view"], created_by="test")
    finally:
        db.dispose()
    monkeypatch.setenv("DRIFTLOOP_AUTH__ENABLED", "true")
    assert run_user(load_settings(tmp_path / "driftloop.toml")) == os_user()  # no token set
    monkeypatch.setenv("DRIFTLOOP_TOKEN", token)
    assert run_user(load_settings(tmp_path / "driftloop.toml")) == "ci-trainer"
    monkeypatch.setenv("DRIFTLOOP_TOKEN", "dl_" + "x" * 43)
    with pytest.raises(AuthenticationError, match="invalid"):
        run_user(load_settings(tmp_path / "driftloop.toml"))
