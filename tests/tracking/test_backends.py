"""MLflow on the production parts: artifacts on S3 (a real S3 HTTP endpoint), metadata on PostgreSQL."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import boto3
import mlflow.pyfunc
import numpy as np
import pytest
import sqlalchemy as sa
from mlflow.tracking import MlflowClient

from tests.conftest import MlflowServer
from tests.tracking.conftest import TRAINING, churn_csv

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from driftloop.settings import S3Settings


def _s3_toml(s3: S3Settings, bucket: str) -> str:
    return (
        f'[storage]\nroot = "s3://{bucket}/driftloop"\n'
        f'[storage.s3]\nendpoint_url = "{s3.endpoint_url}"\n'
        'access_key_id = "testing"\nsecret_access_key = "testing"\n'
    )


# slow: a whole pipeline run with every artifact through moto S3 (89 s under load)
@pytest.mark.slow
def test_pipeline_on_s3_keeps_model_artifacts_in_the_bucket(
    cli, tmp_path: Path, s3_settings: S3Settings, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Embedded tracking (SQLite) with storage on S3: MLflow artifacts default to <storage root>/mlflow."""
    (tmp_path / "driftloop.toml").write_text(_s3_toml(s3_settings, s3_bucket) + TRAINING)
    assert (
        cli("simulate", "--start", "2026-01-01", "--days", "3", "--rows-per-day", "2000", "--seed", "4").code
        == 0
    )
    result = cli("pipeline", "run", "--as-of", "2026-01-10")
    assert result.code == 0, result.err
    assert "model=plant-failure/1" in result.out
    s3 = boto3.client("s3", endpoint_url=s3_settings.endpoint_url, region_name="us-east-1")
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
        for o in page.get("Contents", [])
    ]
    artifacts = [k for k in keys if k.startswith("driftloop/mlflow/")]
    for name in ("model.pth", "reference_profile.json", "plots/roc.png", "MLmodel", "data/model.pth"):
        assert any(k.endswith(name) for k in artifacts), name
    assert not (tmp_path / ".driftloop" / "mlflow").exists()  # nothing on local disk but the SQLite store
    # A plain MLflow client loads it straight from S3.
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", str(s3_settings.endpoint_url))
    uri = f"sqlite:///{tmp_path / '.driftloop' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # in-process tests before this one may have pointed it elsewhere
    model = mlflow.pyfunc.load_model("models:/plant-failure/1")
    scores = np.asarray(model.predict(model.input_example)).reshape(-1)
    assert ((scores >= 0) & (scores <= 1)).all()


@pytest.fixture
def postgres_mlflow(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """An MLflow server whose backend store is a fresh PostgreSQL database (dropped afterwards)."""
    name = f"mlflow_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    root = tmp_path_factory.mktemp("mlflow-pg")
    server = MlflowServer(url, str(root / "artifacts"), root / "server.log")
    server.start()
    yield server
    server.stop()
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


@pytest.mark.postgres
def test_tracking_server_on_postgresql_registers_a_version(
    cli, tmp_path: Path, postgres_mlflow: MlflowServer
) -> None:
    (tmp_path / "driftloop.toml").write_text(
        f'[tracking]\nuri = "{postgres_mlflow.url}"\n[registry]\nmodel_name = "churn"\n{TRAINING}'
    )
    data = churn_csv(tmp_path / "churn.csv", rows=600)
    result = cli("train", "--data", str(data), "--target", "churned", "--register")
    assert result.code == 0, result.err
    assert "registered churn/1" in result.out
    client = MlflowClient(postgres_mlflow.url)
    version = client.get_model_version("churn", "1")
    assert client.get_run(version.run_id).data.metrics["holdout_roc_auc"] > 0
    shown = cli("models", "show", "churn/1")
    assert shown.code == 0, shown.err
    assert "stage None" in shown.out


def test_logged_model_lives_in_the_runs_experiment_not_default(
    cli, tracked: str, tmp_path: Path, mlflow_server: MlflowServer
) -> None:
    data = churn_csv(tmp_path / "churn.csv", rows=300)
    result = cli("train", "--data", str(data), "--target", "churned", "--register")
    assert result.code == 0, result.err
    client = MlflowClient(mlflow_server.url)
    version = client.get_model_version(tracked, "1")
    run = client.get_run(version.run_id)
    assert run.outputs is not None
    [output] = run.outputs.model_outputs
    logged = client.get_logged_model(output.model_id)
    assert logged.experiment_id == run.info.experiment_id
    assert logged.source_run_id == run.info.run_id
    assert not (tmp_path / "mlruns").exists()
