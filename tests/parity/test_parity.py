"""Train/serve parity on tabular data that is not the plant (issue 19, decision 0032).

Each generated dataset goes ``driftloop train --data … --register`` and is then scored on the very same
raw rows — as a JSON client sends them — four ways: the service's ``/v1/predict``, its ``/invocations``
(MLflow's protocol), the registered MLflow pyfunc model (fed the body as MLflow's scoring server parses
it), and the training evaluation's own hold-out scores. All four agree to 1e-6.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from driftloop.cli.main import main
from driftloop.core.transform import OTHER_LEVEL, Transform
from driftloop.pipeline.modeling import HOLDOUT_SCORES
from driftloop.registry import Registry
from driftloop.serving.app import create_app
from driftloop.serving.model import ModelHolder, load_version
from driftloop.settings import load_settings
from driftloop.storage import store_for
from driftloop.tracking import Tracker
from tests.conftest import mlflow_state_kept
from tests.parity.datasets import DATASETS, Dataset, client_rows
from tests.serving.fakes import MemoryCapture

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from driftloop.core.models import ModelVersion

CONFIG = "[training]\nmax_epochs = 6\nhidden = [16]\n"
TOLERANCE = 1e-6


@dataclass
class Trained:
    dataset: Dataset
    directory: Path
    version: ModelVersion
    tracker: Tracker
    transform: Transform
    holdout: list[dict[str, Any]]  # the hold-out's raw rows, as a JSON client sends them
    evaluated: np.ndarray  # the training evaluation's scores of those rows
    client: TestClient


def _train(dataset: Dataset, directory: Path) -> None:
    csv = dataset.write(directory)
    (directory / "driftloop.toml").write_text(CONFIG)
    args = ["train", "--data", str(csv), "--target", dataset.target, "--register", "--name", dataset.name]
    with pytest.MonkeyPatch.context() as mp, pytest.raises(SystemExit) as done:
        mp.chdir(directory)
        main([*args, *dataset.flags])
    assert done.value.code == 0


def _holdout_frame(dataset: Dataset, csv: Path) -> pd.DataFrame:
    """The hold-out rows of the CSV as training split them: labelled rows, in time order, latest 20 %."""
    text = pd.read_csv(csv, dtype=str, keep_default_na=False)
    labelled = text[text[dataset.target] != ""]
    if dataset.timestamp:
        labelled = labelled.sort_values(dataset.timestamp, kind="stable")
    start = round(len(labelled) * (1 - 0.2))
    return labelled.iloc[start:]


@pytest.fixture(scope="module", params=DATASETS, ids=[d.name for d in DATASETS])
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    dataset: Dataset = request.param
    directory = tmp_path_factory.mktemp(dataset.name)
    with mlflow_state_kept():  # the in-process command and the trackers below point MLflow at this dir
        yield from _trained(dataset, directory)


def _trained(dataset: Dataset, directory: Path) -> Iterator[Trained]:
    _train(dataset, directory)
    settings = load_settings(cwd=directory)
    tracker, registry = Tracker(settings), Registry(settings)
    version = registry.get(dataset.name, 1)
    assert version.run_id is not None
    transform = Transform.from_json(tracker.read_bytes(version.run_id, "transform.json"))
    evaluated = np.asarray(json.loads(tracker.read_bytes(version.run_id, HOLDOUT_SCORES))["scores"])
    holdout = client_rows(dataset, _holdout_frame(dataset, directory / f"{dataset.name}.csv"))
    holder = ModelHolder()
    holder.install(load_version(settings, tracker, registry, dataset.name, 1))
    with TestClient(create_app(holder, capture=MemoryCapture())) as client:
        yield Trained(dataset, directory, version, tracker, transform, holdout, evaluated, client)


def _predict(trained: Trained, rows: list[dict[str, Any]]) -> np.ndarray:
    response = trained.client.post("/v1/predict", json={"instances": rows})
    assert response.status_code == 200, response.text
    return np.array([p["score"] for p in response.json()["predictions"]])


def _split(trained: Trained, rows: list[dict[str, Any]]) -> dict[str, Any]:
    columns = sorted({c for row in rows for c in row})  # any column order: the service maps by name
    return {"columns": columns, "data": [[row.get(c) for c in columns] for row in rows]}


def _tracking_uri(trained: Trained) -> str:
    return f"sqlite:///{trained.directory / '.driftloop' / 'mlflow.db'}"


def test_the_service_the_mlflow_model_and_the_evaluation_give_the_same_scores(trained: Trained) -> None:
    import mlflow.pyfunc
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    rows = trained.holdout
    assert len(rows) == len(trained.evaluated)
    served = _predict(trained, rows)
    response = trained.client.post("/invocations", json={"dataframe_split": _split(trained, rows)})
    assert response.status_code == 200, response.text
    invoked = np.array(response.json()["predictions"], dtype=np.float64)
    # The version's source is a logged model of the dataset's own tracking store: name it, rather than
    # rely on the store the module fixture's setup left current (reset after every test).
    mlflow.set_tracking_uri(_tracking_uri(trained))
    model = mlflow.pyfunc.load_model(trained.version.source)
    # The very body, parsed as `mlflow models serve` parses it before calling the model.
    frame = infer_and_parse_data(
        {"dataframe_split": _split(trained, rows)}, model.metadata.get_input_schema()
    )
    pyfunc = np.asarray(model.predict(frame), dtype=np.float64).reshape(-1)
    np.testing.assert_allclose(served, trained.evaluated, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(invoked, trained.evaluated, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(pyfunc, trained.evaluated, atol=TOLERANCE, rtol=0)
    assert np.ptp(served) > 0.01  # a model that says one thing to everyone would agree trivially


def test_single_rows_score_as_the_batch_does(trained: Trained) -> None:
    rows = trained.holdout[:40]
    batch = _predict(trained, rows)
    singles = np.concatenate([_predict(trained, [row]) for row in rows])
    np.testing.assert_allclose(singles, batch, atol=TOLERANCE, rtol=0)


def test_serving_accepts_what_training_accepted(trained: Trained) -> None:
    """Nulls where training had them, JSON booleans, unseen levels (scored as <other>), and the
    columns training dropped: all scored, never a 422."""
    transform = trained.transform
    base = trained.holdout[0]
    variants = []
    for spec in transform.inputs:
        if spec.nullable:
            variants.append({**base, spec.name: None})
    for spec in transform.categorical:
        if spec.boolean:
            variants += [{**base, spec.name: True}, {**base, spec.name: "false"}]
        elif spec.open:
            variants.append({**base, spec.name: "a level nobody has seen"})
    scores = _predict(trained, variants)
    assert np.isfinite(scores).all()
    dropped = {d.name for d in transform.dropped if d.name in base}
    assert dropped == set(base) - set(transform.input_names)  # the id and date columns went along


def test_an_unseen_level_scores_exactly_as_the_other_bucket(trained: Trained) -> None:
    opened = [c for c in trained.transform.categorical if c.open]
    if not opened:
        pytest.skip("no open categorical input in this dataset")
    spec = opened[0]
    base = trained.holdout[1]
    unseen, other = _predict(trained, [{**base, spec.name: "never seen"}, {**base, spec.name: "nor this"}])
    assert unseen == pytest.approx(other, abs=TOLERANCE)
    features = trained.transform.encode_records([{**base, spec.name: "never seen"}])[0]
    assert features[trained.transform.feature_names.index(f"f_{spec.name}={OTHER_LEVEL}")] == 1.0


def test_a_field_training_never_had_is_still_refused(trained: Trained) -> None:
    response = trained.client.post(
        "/v1/predict", json={"instances": [{**trained.holdout[0], "typo_field": 1}]}
    )
    assert response.status_code == 422
    assert [e["loc"][2] for e in response.json()["detail"]] == ["typo_field"]


def test_a_multi_class_target_is_refused_with_one_clear_line(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Classification is binary (documented); three classes must not train a silently wrong model.
    frame = pd.DataFrame({"x": np.arange(30.0), "kind": ["a", "b", "c"] * 10})
    frame.to_csv(tmp_path / "three.csv", index=False)
    done = cli("train", "--data", "three.csv", "--target", "kind")
    assert done.code == 1
    assert done.err.strip().splitlines()[-1] == (
        "error: classification needs a target with two classes, found 3: ['a', 'b', 'c'] "
        "(use --task regression for a numeric target)"
    )


class _MlflowServe:
    """``mlflow models serve`` of a registered version, on loopback, for comparisons."""

    def __init__(self, trained: Trained) -> None:
        import subprocess
        import sys

        from tests.conftest import free_port

        self.url = f"http://127.0.0.1:{free_port()}"
        tracking = _tracking_uri(trained)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
        env |= {"MLFLOW_TRACKING_URI": tracking, "MLFLOW_DISABLE_TELEMETRY": "true"}
        env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"  # its uvicorn
        self.log = trained.directory / "mlflow-serve.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "models",
                    "serve",
                    "-m",
                    f"models:/{trained.dataset.name}/1",
                    "--env-manager",
                    "local",
                    "--host",
                    "127.0.0.1",
                    "-p",
                    self.url.rsplit(":", 1)[1],
                ],
                cwd=trained.directory,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        from mlflow.pyfunc.scoring_server.client import ScoringServerClient

        try:
            ScoringServerClient("127.0.0.1", int(self.url.rsplit(":", 1)[1])).wait_server_ready(timeout=120)
        except Exception:
            raise AssertionError(self.log.read_text()[-3000:]) from None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _bodies(trained: Trained) -> list[tuple[str, str, bytes]]:
    """(case, content type, body): valid bodies in every MLflow format, and bodies both must refuse."""
    rows = [
        {k: v for k, v in row.items() if k in trained.transform.input_names} for row in trained.holdout[:8]
    ]
    full = [r for r in rows if all(v is not None for v in r.values())][:3]  # MLflow's tf-serving path
    columns = trained.transform.input_names  # turns nulls into the text "None"; keep those formats full
    split = {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}
    csv = pd.DataFrame(rows, columns=columns).to_csv(index=False).encode()
    numeric = trained.transform.numeric[0].name
    bad_type = [{**rows[0], numeric: "not a number"}]
    missing = [{k: v for k, v in rows[0].items() if k != numeric}]
    js = "application/json"
    return [
        ("split", js, json.dumps({"dataframe_split": split}).encode()),
        ("records", js, json.dumps({"dataframe_records": rows}).encode()),
        ("instances", js, json.dumps({"instances": full}).encode()),
        (
            "inputs as columns",
            js,
            json.dumps({"inputs": {c: [r[c] for r in full] for c in columns}}).encode(),
        ),
        ("params", js, json.dumps({"dataframe_split": split, "params": {}}).encode()),
        ("csv", "text/csv", csv),
        ("not json", js, b"{not json"),
        ("two formats", js, json.dumps({"dataframe_split": split, "dataframe_records": rows}).encode()),
        ("no format", js, json.dumps({"rows": rows}).encode()),
        ("a missing column", js, json.dumps({"dataframe_records": missing}).encode()),
        ("text in a number", js, json.dumps({"dataframe_records": bad_type}).encode()),
        ("unsupported content type", "text/plain", b"hello"),
    ]


# slow: starts `mlflow models serve` once per dataset (75 s each with its set-up, under load)
@pytest.mark.slow
def test_mlflow_models_serve_of_the_same_version_answers_the_same_bodies_alike(trained: Trained) -> None:
    if trained.dataset.name != "churn":
        pytest.skip("one dataset is enough to compare with mlflow models serve (it takes ~20 s to start)")
    import httpx

    mlflow_serve = _MlflowServe(trained)
    try:
        mlflow_serve.wait_ready()
        for case, content_type, body in _bodies(trained):
            ours = trained.client.post("/invocations", content=body, headers={"content-type": content_type})
            theirs = httpx.post(
                f"{mlflow_serve.url}/invocations",
                content=body,
                headers={"content-type": content_type},
                timeout=60,
            )
            assert ours.status_code == theirs.status_code, (case, ours.text, theirs.text)
            if theirs.status_code == 200:
                mine, reference = ours.json()["predictions"], theirs.json()["predictions"]
                assert len(mine) == len(reference), case
                np.testing.assert_allclose(mine, reference, atol=TOLERANCE, rtol=0, err_msg=case)
            elif theirs.status_code == 400:
                assert {"error_code", "message"} <= set(ours.json()), case
                assert ours.json()["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE"), case
    finally:
        mlflow_serve.stop()


def test_a_bad_byte_costs_its_line_not_the_training(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csv = DATASETS[0].write(tmp_path)
    lines = csv.read_bytes().split(b"\n")
    lines[5] = b"\xff\xfe garbage \x00 from a broken export"
    lines[9] = lines[9] + b",one field too many"
    csv.write_bytes(b"\n".join(lines))
    done = cli("train", "--data", str(csv), "--target", "churned", "--set", "max_epochs=2")
    assert done.code == 0, done.err
    assert "2 lines are not CSV rows" in done.err
    assert "    train: epochs 2/2  val_score " in done.err  # progress off a terminal: a line per epoch
    store = store_for(load_settings(cwd=tmp_path))
    [key] = [i.key for i in store.list("quarantine/") if i.key.endswith("malformed.csv")]
    quarantined = pd.read_csv(io.BytesIO(store.read_bytes(key)), keep_default_na=False)
    assert quarantined["line"].tolist() == [6, 10]
    assert quarantined["text"][0] == "\\xff\\xfe garbage \\x00 from a broken export"
    assert quarantined["_reasons"][0].startswith("not UTF-8")
    assert quarantined["_reasons"][1].startswith("malformed CSV line")
