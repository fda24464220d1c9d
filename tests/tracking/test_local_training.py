"""Seeds 1–3 and 002 on the command line: any CSV trains, bad input is one line, grids nest."""

from __future__ import annotations

from typing import TYPE_CHECKING

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from driftloop.serving.model import label_spec
from driftloop.settings import load_settings
from driftloop.tracking import Tracker
from tests.tracking.conftest import churn_csv

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import MlflowServer


def test_a_non_plant_csv_trains_registers_and_serves_through_pyfunc(
    cli, tracked: str, tmp_path: Path, mlflow_server: MlflowServer
) -> None:
    data = churn_csv(tmp_path / "churn.csv")
    result = cli(
        "train",
        "--data",
        str(data),
        "--target",
        "churned",
        "--id",
        "customer",
        "--register",
        "--set",
        "max_epochs=40",
        "--set",
        "learning_rate=0.01",
        "--set",
        "batch_size=64",
    )
    assert result.code == 0, result.err
    assert f"registered {tracked}/1 (stage None)" in result.out
    client = MlflowClient(mlflow_server.url)
    version = client.get_model_version(tracked, "1")
    run = client.get_run(version.run_id)
    # Types were inferred: two numbers and one category are inputs; the id and free text are not.
    features = set(run.data.params)
    assert run.data.params["input_width"] == "6"  # 2 numeric + 3 one-hot plan columns + <other>
    assert "target" in features
    assert run.data.metrics["holdout_roc_auc"] > 0.6
    assert any(k.startswith("slice_plan_basic_") for k in run.data.metrics)
    assert run.data.tags["driftloop.source"].endswith("churn.csv")
    # The registered model predicts from raw rows (its signature lists the raw inputs).
    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_registry_uri(mlflow_server.url)  # not whatever an earlier in-process test left
    model = mlflow.pyfunc.load_model(f"models:/{tracked}/1")
    example = model.input_example
    assert isinstance(example, pd.DataFrame)
    scores = np.asarray(model.predict(example)).reshape(-1)
    assert scores.shape == (len(example),)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert model.metadata.get_input_schema().input_names() == list(example.columns)


def test_regression_on_a_csv(cli, tracked: str, tmp_path: Path, mlflow_server: MlflowServer) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"a": rng.normal(size=800), "b": rng.normal(size=800), "kind": rng.choice(["x", "y"], 800)}
    )
    frame["load"] = 3 * frame["a"] - frame["b"] + np.where(frame["kind"] == "x", 2.0, 0.0)
    frame.to_csv(tmp_path / "load.csv", index=False)
    result = cli(
        "train",
        "--data",
        "load.csv",
        "--target",
        "load",
        "--task",
        "regression",
        "--set",
        "max_epochs=60",
        "--set",
        "learning_rate=0.01",
        "--set",
        "batch_size=64",
    )
    assert result.code == 0, result.err
    assert "rmse" in result.out
    run_id = result.out.split("MLflow run ", 1)[1].split()[0]
    metrics = MlflowClient(mlflow_server.url).get_run(run_id).data.metrics
    assert metrics["holdout_r2"] > 0.8
    assert "slice_kind_x_rmse" in metrics
    # The labels the service and the monitor accept for it: the training target's range, widened by
    # its width on each side (driftloop.core.labels).
    settings = load_settings(tmp_path / "driftloop.toml")
    task = MlflowClient(mlflow_server.url).get_run(run_id).data.tags["driftloop.task"]
    spec = label_spec(settings, Tracker(settings), tracked, run_id, task)
    low, high = frame["load"].min(), frame["load"].max()
    assert (spec.task, spec.low, spec.high) == pytest.approx(("regression", 2 * low - high, 2 * high - low))
    assert spec.coerce(float(high) + 1.0) == float(high) + 1.0
    assert spec.coerce(1e300) is None


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("factory", ["--target", "churned"], "error: training.model_factory: cannot import module 'nowhere'"),
        ("csv", ["--target", "cancelled"], "error: target column 'cancelled' is not in churn.csv"),
        ("empty", ["--target", "churned"], "error: empty.csv is empty"),
        ("header", ["--target", "churned"], "error: header.csv has a header but no rows"),
        (  # the only row is binary: set aside (never echoed raw), and then nothing is left to train on
            "binary",
            ["--target", "churned"],
            "binary.csv has no readable rows: 1 line(s) are not CSV rows (line 2: binary data: control "
            "character \\x1b at column 3)",
        ),
        ("csv", [], "error: --data needs --target COLUMN"),
        ("csv", ["--target", "churned", "--set", "max_epochs=0"], "error: invalid --grid value"),
    ],
)
def test_bad_input_is_one_readable_line(  # noqa: PLR0917 — fixtures plus parameters
    cli, tracked: str, tmp_path: Path, setup: str, args: list[str], message: str
) -> None:
    data = churn_csv(tmp_path / "churn.csv", rows=200)
    if setup == "factory":
        with (tmp_path / "driftloop.toml").open("a") as fh:
            fh.write('model_factory = "nowhere:model"\n')  # appended to the [training] table
    elif setup == "empty":
        data = tmp_path / "empty.csv"
        data.write_text("")
    elif setup == "header":
        data = tmp_path / "header.csv"
        data.write_text("tenure,churned\n")
    elif setup == "binary":
        data = tmp_path / "binary.csv"
        data.write_bytes(b"tenure,churned\n1,\x1b[2J\x00,2\n")
    result = cli("train", "--data", str(data), *args)
    assert result.code in (1, 2), result.out
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert message.removeprefix("error: ") in lines[0], lines[0]
    assert lines[0].isprintable()


# slow: trains every point of the grid (76 s under load)
@pytest.mark.slow
def test_experiment_grid_runs_children_under_one_parent_and_reports_the_best(
    cli, tracked: str, tmp_path: Path, mlflow_server: MlflowServer
) -> None:
    data = churn_csv(tmp_path / "churn.csv", rows=800)
    result = cli(
        "experiment",
        "--data",
        str(data),
        "--target",
        "churned",
        "--grid",
        "hidden=8,16x8",
        "--grid",
        "learning_rate=0.001,0.01",
    )
    assert result.code == 0, result.err
    parent_id = result.out.split("parent run ", 1)[1].split()[0]
    client = MlflowClient(mlflow_server.url)
    parent = client.get_run(parent_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(children) == 4
    assert {(c.data.params["hidden"], c.data.params["learning_rate"]) for c in children} == {
        ("[8]", "0.001"),
        ("[8]", "0.01"),
        ("[16, 8]", "0.001"),
        ("[16, 8]", "0.01"),
    }
    best = max(children, key=lambda c: c.data.metrics["val_best_score"])
    assert best.info.run_id[:12] in next(line for line in result.out.splitlines() if "★" in line)
    assert "best (on validation)" in result.out


def test_grid_with_an_unknown_key_is_a_usage_error(cli, tracked: str, tmp_path: Path) -> None:
    data = churn_csv(tmp_path / "churn.csv", rows=100)
    result = cli("experiment", "--data", str(data), "--target", "churned", "--grid", "depth=1,2")
    assert result.code == 2
    assert result.err.startswith("error: unknown --grid key 'depth'")
