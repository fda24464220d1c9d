"""``POST /v1/feedback``: labels in the model's label set, for ids the service issued, once per request,
at most ``serving.max_feedback_rows`` a request; every refusal a 4xx with a JSON reason, never a 500, and
nothing recorded from a refused request. Each case runs in process (FastAPI's router) and through
uvicorn with driftloop's HTTP protocol, as ``driftloop serve`` runs it."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi.testclient import TestClient

from driftloop.capture import CaptureStore, read_captures
from driftloop.core.labels import LabelSpec
from driftloop.serving.app import create_app
from driftloop.serving.model import ModelHolder
from driftloop.serving.stamps import IdKeys
from driftloop.settings import CaptureSettings
from driftloop.storage import open_store
from tests.conftest import SETTLE_S
from tests.serving.fakes import MemoryCapture, plant_model, plant_rows, serving

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi import FastAPI


@dataclass
class Service:
    client: httpx.Client
    holder: ModelHolder
    capture: MemoryCapture

    def predict(self, n: int) -> list[str]:
        response = self.client.post("/v1/predict", json={"instances": plant_rows(n)})
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["predictions"]]

    def feedback(self, labels: Any) -> httpx.Response:
        return self.client.post("/v1/feedback", json={"labels": labels})

    def recorded(self) -> list[dict[str, Any]]:
        return [r for r in self.capture.records if r["kind"] == "feedback"]

    def metric(self, sample: str) -> float | None:
        """The value of a Prometheus sample (``name{labels}``) on ``GET /metrics``; None when absent."""
        for line in self.client.get("/metrics").text.splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
        return None


@contextlib.contextmanager
def _client(app: FastAPI, transport: str) -> Iterator[httpx.Client]:
    if transport == "fastapi":
        yield TestClient(app)
        return
    with serving(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        yield client


TRANSPORTS = pytest.mark.parametrize("transport", ["fastapi", "uvicorn"])


@pytest.fixture(params=["fastapi", "uvicorn"])
def service(request: pytest.FixtureRequest) -> Iterator[Service]:
    holder = ModelHolder()
    holder.install(plant_model(1))
    capture = MemoryCapture()
    with _client(create_app(holder, capture=capture), request.param) as client:
        yield Service(client, holder, capture)


def _refused(response: httpx.Response, status: int = 422) -> dict[str, Any]:
    """The JSON body of a refusal with ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["error"]
    return body


def test_accepted_labels_are_recorded_with_their_source_and_counted(service: Service) -> None:
    ids = service.predict(2)
    response = service.feedback(
        [{"prediction_id": ids[0], "label": 1}, {"prediction_id": ids[1], "label": 0.0}]
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 2}
    assert [(r["prediction_id"], r["label"], r["source"]) for r in service.recorded()] == [
        (ids[0], 1.0, "api"),
        (ids[1], 0.0, "api"),
    ]
    assert service.metric("driftloop_feedback_labels_total") == 2.0


def test_booleans_are_read_as_one_and_zero_for_a_classifier(service: Service) -> None:
    ids = service.predict(2)
    response = service.feedback(
        [{"prediction_id": ids[0], "label": True}, {"prediction_id": ids[1], "label": False}]
    )
    assert response.status_code == 200, response.text
    assert [r["label"] for r in service.recorded()] == [1.0, 0.0]


@pytest.mark.parametrize("label", [-5, 0.5, 7, 2, 1e300, -1e300, "1", None, [1], {"value": 1}])
def test_a_classifier_takes_only_0_and_1(service: Service, label: Any) -> None:
    [pid] = service.predict(1)
    body = _refused(service.feedback([{"prediction_id": pid, "label": label}]))
    [problem] = body["detail"]
    assert problem["loc"] == ["labels", 0, "label"]
    assert problem["type"] == "category"
    assert "must be 0 or 1 (or false/true)" in problem["msg"]
    assert service.recorded() == []
    assert service.metric('driftloop_feedback_refused_total{reason="category"}') == 1.0


@TRANSPORTS
def test_a_regression_model_takes_finite_numbers_within_its_band(transport: str) -> None:
    holder = ModelHolder()
    model = plant_model(1, threshold=None)
    # The training target ranged over [0, 10]: labels within [-10, 20] are plausible.
    model.labels = LabelSpec.derive("regression", {"target": {"min": 0.0, "max": 10.0}})
    holder.install(model)
    capture = MemoryCapture()
    with _client(create_app(holder, capture=capture), transport) as client:
        service = Service(client, holder, capture)
        ids = service.predict(3)
        good = [{"prediction_id": i, "label": y} for i, y in zip(ids, (3.25, -10, 19.5), strict=True)]
        assert service.feedback(good).status_code == 200
        assert [r["label"] for r in service.recorded()] == [3.25, -10.0, 19.5]
        for label in (1e300, -1e300, 20.5, True, "3"):
            [problem] = _refused(service.feedback([{"prediction_id": ids[0], "label": label}]))["detail"]
            assert problem["type"] == "range"
            assert "within [-10, 20]" in problem["msg"]
        assert len(service.recorded()) == 3


def test_unknown_ids_are_refused_by_name_and_counted(service: Service) -> None:
    [pid] = service.predict(1)
    made_up = secrets.token_hex(24)  # the right shape, no valid tag
    elsewhere = ModelHolder()  # another service, under its own key
    elsewhere.install(plant_model(1))
    answer = TestClient(create_app(elsewhere)).post("/v1/predict", json={"instances": plant_rows(1)})
    foreign = answer.json()["predictions"][0]["id"]
    labels = [(pid, 1), (made_up, 1), (foreign, 0)]
    body = _refused(service.feedback([{"prediction_id": i, "label": y} for i, y in labels]))
    assert body["error"] == "invalid feedback: 2 of 3 labels refused, none recorded"
    assert [(p["loc"], p["type"]) for p in body["detail"]] == [
        (["labels", 1, "prediction_id"], "unknown_id"),
        (["labels", 2, "prediction_id"], "unknown_id"),
    ]
    assert made_up in body["detail"][0]["msg"]
    assert foreign in body["detail"][1]["msg"]
    assert service.recorded() == []  # all or nothing: the good label was not recorded either
    assert service.metric('driftloop_feedback_refused_total{reason="unknown_id"}') == 2.0


def test_the_list_of_problems_is_bounded(service: Service) -> None:
    fakes = [{"prediction_id": secrets.token_hex(24), "label": 1} for _ in range(300)]
    response = service.feedback(fakes)
    body = _refused(response)
    assert body["error"] == (
        "invalid feedback: 300 of 300 labels refused, none recorded; the first 20 of 300 problems are listed"
    )
    assert len(body["detail"]) == 20
    assert len(response.content) < 8_000
    assert service.metric('driftloop_feedback_refused_total{reason="unknown_id"}') == 300.0


@pytest.mark.parametrize(
    ("pid", "kind", "fragment"),
    [
        ("", "format", "got ''"),
        ("x" * 1_000_000, "format", "got a string of 1,000,000 characters"),
        ("0" * 32, "format", "48 lowercase hex digits"),  # the old, untagged form
        (3, "type", "must be a string, got int"),
        (None, "missing", "prediction_id is required"),
    ],
    ids=["empty", "1 MB", "untagged", "number", "null"],
)
def test_malformed_ids_are_a_422_naming_the_problem_never_a_500(
    service: Service, pid: Any, kind: str, fragment: str
) -> None:
    response = service.feedback([{"prediction_id": pid, "label": 1}])
    [problem] = _refused(response)["detail"]
    assert (problem["loc"], problem["type"]) == (["labels", 0, "prediction_id"], kind)
    assert fragment in problem["msg"]
    assert len(response.content) < 2_000  # a megabyte id is described, not echoed
    assert service.metric(f'driftloop_feedback_refused_total{{reason="{kind}"}}') == 1.0


def test_an_id_labelled_twice_in_one_request_is_refused(service: Service) -> None:
    [pid] = service.predict(1)
    body = _refused(
        service.feedback([{"prediction_id": pid, "label": 1}, {"prediction_id": pid, "label": 1}])
    )
    [problem] = body["detail"]
    assert (problem["loc"], problem["type"]) == (["labels", 1, "prediction_id"], "duplicate")
    assert "first at labels[0]" in problem["msg"]
    assert service.recorded() == []


def test_a_field_other_than_the_id_and_the_label_is_refused(service: Service) -> None:
    [pid] = service.predict(1)
    body = _refused(service.feedback([{"prediction_id": pid, "label": 1, "source": "me"}]))
    assert [(p["loc"], p["type"]) for p in body["detail"]] == [(["labels", 0, "source"], "unknown")]
    assert service.recorded() == []


@pytest.mark.parametrize(
    "body", [b"{not json", b"[]", b'{"labels": []}', b'{"labels": {}}', b'{"labels": [1]}', b"{}"]
)
def test_bodies_of_another_shape_are_a_422(service: Service, body: bytes) -> None:
    response = service.client.post("/v1/feedback", content=body, headers={"content-type": "application/json"})
    _refused(response)


@TRANSPORTS
def test_more_labels_than_the_limit_is_a_413_before_any_is_checked(transport: str) -> None:
    holder = ModelHolder()
    holder.install(plant_model(1))
    capture = MemoryCapture()
    with _client(create_app(holder, capture=capture, max_feedback_rows=5), transport) as client:
        service = Service(client, holder, capture)
        ids = service.predict(6)
        assert service.feedback([{"prediction_id": i, "label": 1} for i in ids[:5]]).status_code == 200
        body = _refused(service.feedback([{"prediction_id": i, "label": 1} for i in ids]), 413)
        assert body["error"] == "6 labels in one request; the limit is 5 (serving.max_feedback_rows)"
        assert len(service.recorded()) == 5
        assert service.metric('driftloop_feedback_refused_total{reason="too_many_rows"}') == 6.0


def test_the_default_limit_refuses_a_flood_of_labels(service: Service) -> None:
    flood = [{"prediction_id": "0" * 48, "label": 1}] * 10_001
    body = _refused(service.feedback(flood), 413)
    assert "the limit is 10,000 (serving.max_feedback_rows)" in body["error"]


@TRANSPORTS
def test_without_a_model_the_labels_cannot_be_checked_503(transport: str) -> None:
    capture = MemoryCapture()
    with _client(create_app(ModelHolder(), capture=capture), transport) as client:
        response = client.post("/v1/feedback", json={"labels": [{"prediction_id": "0" * 48, "label": 1}]})
        assert "no model loaded" in _refused(response, 503)["error"]
    assert capture.records == []


@TRANSPORTS
def test_a_replica_sharing_the_secret_takes_labels_for_its_siblings_ids(transport: str) -> None:
    """Replicas behind a load balancer: the label may reach another replica than the prediction did."""
    replicas = []
    for secret in (b"one fleet's secret, shared", b"one fleet's secret, shared", b"another fleet"):
        holder = ModelHolder()
        holder.install(plant_model(1))
        replicas.append(create_app(holder, capture=MemoryCapture(), id_keys=IdKeys([secret])))
    with _client(replicas[0], transport) as first:
        ids = [
            p["id"]
            for p in first.post("/v1/predict", json={"instances": plant_rows(3)}).json()["predictions"]
        ]
    labels = {"labels": [{"prediction_id": i, "label": 1} for i in ids]}
    with _client(replicas[1], transport) as sibling:
        assert sibling.post("/v1/feedback", json=labels).status_code == 200
    with _client(replicas[2], transport) as stranger:
        assert stranger.post("/v1/feedback", json=labels).status_code == 422


def test_through_the_capture_store_an_empty_id_is_a_422_and_labels_land_with_their_source(
    tmp_path: Path,
) -> None:
    """The real store: it refuses a record with an empty id, which the route must never let reach it."""
    holder = ModelHolder()
    holder.install(plant_model(1))
    store = open_store(str(tmp_path / "store"))
    cfg = CaptureSettings(segment_max_age_s=0.2, retry_initial_s=0.05, convert_in_subprocess=False)
    with CaptureStore(store, tmp_path / "wal", cfg) as capture:
        client = TestClient(create_app(holder, capture=capture))
        ids = [
            p["id"]
            for p in client.post("/v1/predict", json={"instances": plant_rows(2)}).json()["predictions"]
        ]
        _refused(client.post("/v1/feedback", json={"labels": [{"prediction_id": "", "label": 1}]}))
        labels = [{"prediction_id": ids[0], "label": True}, {"prediction_id": ids[1], "label": 0}]
        assert client.post("/v1/feedback", json={"labels": labels}).status_code == 200
        assert capture.flush(SETTLE_S)
    feedback = read_captures(store, kind="feedback").sort_by("label").to_pylist()
    assert [(r["prediction_id"], r["label"], r["source"]) for r in feedback] == [
        (ids[1], 0.0, "api"),
        (ids[0], 1.0, "api"),
    ]
