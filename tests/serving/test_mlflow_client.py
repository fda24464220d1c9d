"""MLflow's own scoring client against the service on loopback: it works unchanged."""

from __future__ import annotations

import math
from importlib import metadata
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd
import pytest
from mlflow.pyfunc.scoring_server.client import ScoringServerClient

from driftloop.serving.app import create_app
from driftloop.serving.batching import MicroBatcher
from driftloop.serving.model import ModelHolder
from tests.serving.fakes import MemoryCapture, plant_model, plant_rows, serving

if TYPE_CHECKING:
    from collections.abc import Iterator


class _Service:
    def __init__(self, port: int, capture: MemoryCapture) -> None:
        self.url, self.capture = f"http://127.0.0.1:{port}", capture
        self.client = ScoringServerClient("127.0.0.1", port)

    def predict(self, rows: list[dict[str, Any]]) -> list[float]:
        """The scores ``POST /v1/predict`` gives the same rows."""
        response = httpx.post(f"{self.url}/v1/predict", json={"instances": rows})
        assert response.status_code == 200, response.text
        return [p["score"] for p in response.json()["predictions"]]


@pytest.fixture(scope="module")
def service() -> Iterator[_Service]:
    """``driftloop serve``'s app and protocol, with the plant model, micro-batching and capture."""
    holder = ModelHolder()
    holder.install(plant_model(1))
    capture = MemoryCapture()
    app = create_app(holder, capture=capture, batcher=MicroBatcher(holder.predict, max_rows=64))
    with serving(app) as port:
        yield _Service(port, capture)


def test_the_client_finds_the_service_ready_and_its_version(service: _Service) -> None:
    service.client.wait_server_ready(timeout=30)
    service.client.ping()  # raises unless 200
    assert service.client.get_version() == metadata.version("mlflow")


@pytest.mark.parametrize("params", [None, {"temperature": 0.3}], ids=["no params", "params"])
def test_a_dataframe_is_scored_as_v1_predict_scores_its_rows(service: _Service, params: Any) -> None:
    rows = plant_rows(5, seed=7)
    response = service.client.invoke(pd.DataFrame(rows), params=params)  # sends dataframe_split
    assert response.get_predictions(predictions_format="ndarray").shape == (5,)  # one score per row
    predictions = response.get_predictions()
    assert predictions[0].tolist() == pytest.approx(service.predict(rows), abs=1e-7)


def test_a_dataframe_with_missing_values_is_scored_and_captured_with_nulls(service: _Service) -> None:
    rows = [{**row, "machine_id": f"m-{i}" if i else math.nan} for i, row in enumerate(plant_rows(3, seed=8))]
    service.capture.records.clear()
    predictions = service.client.invoke(pd.DataFrame(rows)).get_predictions()  # NaN reaches us as NaN
    expected = [{**row, "machine_id": row["machine_id"] if i else None} for i, row in enumerate(rows)]
    assert [r["inputs"] for r in service.capture.records] == expected
    assert predictions[0].tolist() == pytest.approx(service.predict(expected), abs=1e-7)


def test_invalid_input_fails_the_client_with_mlflows_400(service: _Service) -> None:
    row = {**plant_rows(1)[0], "torque_nm": "forty"}
    with pytest.raises(Exception, match=r"error code 400.*BAD_REQUEST.*torque_nm"):
        service.client.invoke(pd.DataFrame([row]))
