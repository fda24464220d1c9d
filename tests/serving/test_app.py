"""The service's HTTP contract, in process: formats, every 422, MLflow's protocol, fallback, hot swap,
metrics."""

from __future__ import annotations

import json
import logging
import math
from importlib import metadata

import orjson
import pytest
from fastapi.testclient import TestClient

from driftloop.serving.app import create_app
from driftloop.serving.batching import MicroBatcher
from driftloop.serving.model import ModelHolder
from tests.conftest import wait_for
from tests.serving.fakes import (
    CSV,
    JSON,
    PARQUET,
    BrokenModule,
    MemoryCapture,
    mlflow_bodies,
    plant_model,
    plant_rows,
)


@pytest.fixture(params=[False, True], ids=["direct", "micro-batched"])
def served(request: pytest.FixtureRequest) -> tuple[TestClient, ModelHolder, MemoryCapture]:
    holder = ModelHolder()
    holder.install(plant_model(1))
    capture = MemoryCapture()
    batcher = MicroBatcher(holder.predict, max_rows=64) if request.param else None
    return TestClient(create_app(holder, capture=capture, batcher=batcher)), holder, capture


@pytest.fixture
def mlflow_served(
    served: tuple[TestClient, ModelHolder, MemoryCapture],
) -> tuple[TestClient, ModelHolder, MemoryCapture]:
    """``served``, for MLflow's routes (over a real server in ``test_http``)."""
    return served


def _invoke(client: TestClient, body: bytes, content_type: str | None = JSON):  # type: ignore[no-untyped-def]
    return client.post(
        "/invocations", content=body, headers={} if content_type is None else {"content-type": content_type}
    )


MLFLOW_ERROR = {"error_code": "BAD_REQUEST", "sqlstate": "KAM00", "error_class": "INVALID_PARAMETER_VALUE"}


def test_predict_scores_each_instance_and_captures_it(served) -> None:
    client, holder, capture = served
    rows = plant_rows(3)
    response = client.post("/v1/predict", json={"instances": rows})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == {"name": "plant", "version": 1}
    expected = holder.current.score(rows)
    assert [p["score"] for p in body["predictions"]] == pytest.approx(list(expected), abs=1e-7)
    assert all(p["label"] == int(p["score"] >= 0.5) for p in body["predictions"])
    assert [r["prediction_id"] for r in capture.records] == [p["id"] for p in body["predictions"]]
    assert capture.records[0]["inputs"] == rows[0]
    assert capture.records[0]["model_version"] == 1


@pytest.mark.parametrize("form", list(mlflow_bodies(plant_rows(1))))
def test_each_mlflow_format_scores_its_rows_as_mlflow_renders_them_and_captures_them(
    mlflow_served, form
) -> None:
    client, holder, capture = mlflow_served
    rows = plant_rows(4, seed=3)
    content_type, body = mlflow_bodies(rows)[form]
    response = _invoke(client, body, content_type)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    # As MLflow's scoring server renders a model's 1-D numpy output: a plain list, one score per row.
    scores = response.json()["predictions"]
    assert list(response.json()) == ["predictions"]
    assert all(type(s) is float for s in scores)
    assert scores == pytest.approx(list(holder.current.score(rows)), abs=1e-7)
    # Capture keeps the body as received and reads its rows back by its content type, as it was scored.
    assert [r["inputs"] for r in capture.records] == rows
    assert [r["score"] for r in capture.records] == scores
    assert {r["endpoint"] for r in capture.records} == {"/invocations"}


def test_a_single_value_in_a_column_is_repeated_down_it_as_pandas_does(mlflow_served) -> None:
    client, _, capture = mlflow_served
    rows = [{**row, "product_variant": "M"} for row in plant_rows(3, seed=2)]
    columns = {c: [r[c] for r in rows] for c in rows[0]} | {"product_variant": "M"}
    for key in ("instances", "inputs"):
        capture.records.clear()
        assert _invoke(client, orjson.dumps({key: columns})).status_code == 200
        assert [r["inputs"] for r in capture.records] == rows


def test_csv_cells_are_numbers_text_or_null_as_pandas_reads_them(mlflow_served) -> None:
    client, _, capture = mlflow_served
    head = (
        b"product_variant,air_temperature_k,process_temperature_k,rotational_speed_rpm,torque_nm,"
        b"tool_wear_min,machine_id\n"
    )
    assert _invoke(client, head + b"L,300.1,310.2,1500,42.5,120,\n", CSV).status_code == 200
    [inputs] = [r["inputs"] for r in capture.records]
    assert inputs == {
        "product_variant": "L",
        "air_temperature_k": 300.1,
        "process_temperature_k": 310.2,
        "rotational_speed_rpm": 1500,
        "torque_nm": 42.5,
        "tool_wear_min": 120,
        "machine_id": None,
    }
    assert type(inputs["rotational_speed_rpm"]) is int
    response = _invoke(client, head + b"L,300.1,310.2,1500,,120,m-7\n", CSV)  # no torque: null, not ""
    assert response.status_code == 400
    assert [(e["loc"], e["type"]) for e in response.json()["detail"]] == [
        (["instances", 0, "torque_nm"], "missing")
    ]


def test_nan_and_infinity_as_mlflows_client_writes_them_are_null_and_infinite(mlflow_served) -> None:
    client, _, capture = mlflow_served
    row = plant_rows(1)[0]
    # Python's json module (MLflow's client) writes a DataFrame's missing value as NaN, which is not JSON.
    missing = json.dumps({"dataframe_records": [{**row, "machine_id": math.nan}]})
    assert "NaN" in missing
    assert _invoke(client, missing.encode()).status_code == 200
    assert capture.records[0]["inputs"] == {**row, "machine_id": None}
    infinite = json.dumps({"dataframe_records": [{**row, "torque_nm": -math.inf}]})
    response = _invoke(client, infinite.encode())
    assert response.status_code == 400
    assert "torque_nm must be a finite number" in response.json()["message"]


def test_params_must_be_an_object_and_are_ignored_as_for_mlflow_models_without_params(
    mlflow_served, caplog
) -> None:
    client, _, _ = mlflow_served
    rows = plant_rows(2, seed=5)
    plain = _invoke(client, orjson.dumps({"dataframe_records": rows})).json()
    with caplog.at_level(logging.WARNING, logger="driftloop.serving.app"):
        for params in ({"temperature": 0.1}, {"max_tokens": 3}, None):
            assert (
                _invoke(client, orjson.dumps({"dataframe_records": rows, "params": params})).json() == plain
            )
    assert [r.getMessage() for r in caplog.records] == [
        "params ['temperature'] ignored: the served model takes no inference parameters (said once)"
    ]
    for params, kind in ((5, "int"), ([1], "list"), ("x", "str")):
        response = _invoke(client, orjson.dumps({"dataframe_records": rows, "params": params}))
        assert response.status_code == 400
        assert response.json() == {
            **MLFLOW_ERROR,
            "message": f"Parameters must be a dictionary. Got type '{kind}'.",
        }


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        (
            "text/plain",
            "This predictor only supports the following content types: Types: ['text/csv', "
            "'application/json', 'application/vnd.apache.parquet']. Got 'text/plain'.",
        ),
        ("application/x-www-form-urlencoded", "Got 'application/x-www-form-urlencoded'."),  # curl -d
        ("application/json; charset=latin-1", "The scoring server only supports UTF-8"),
        ("application/json; format=pandas-split", "Unrecognized content type parameters: format. IMPORTANT"),
    ],
)
def test_an_unsupported_content_type_is_mlflows_415(mlflow_served, content_type: str, message: str) -> None:
    client, _, capture = mlflow_served
    response = _invoke(client, orjson.dumps({"instances": plant_rows(1)}), content_type)
    assert response.status_code == 415
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert message in response.text
    assert capture.records == []
    assert 'driftloop_requests_total{path="/invocations",status="415"} 1.0' in client.get("/metrics").text


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        (JSON, b"{not json", "valid JSON"),
        (JSON, b"[1, 2]", "Received a list"),
        (JSON, b'{"tensor": [1]}', "exactly one of"),
        (JSON, b'{"instances": [], "inputs": []}', "exactly one of"),
        (JSON, b'{"instances": []}', "no rows to score"),
        (JSON, b'{"dataframe_split": {"columns": ["a"]}}', "must have 'data' field"),
        (JSON, b'{"dataframe_split": {"data": [[1]]}}', "needs 'columns'"),
        (
            JSON,
            b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1]]}}',
            "row 0 does not have 2 values",
        ),
        (JSON, b'{"dataframe_split": {"columns": ["a"], "data": [[1]], "index": [0, 1]}}', "'index'"),
        (JSON, b'{"dataframe_records": {"a": 1}}', "list of records"),
        (JSON, b'{"inputs": {"a": [1, 2], "b": [1]}}', "different lengths"),
        (CSV, b'a,b\n"1,2\n', "Failed to parse input as a Pandas DataFrame"),
        (CSV, b"", "No columns to parse"),
        (CSV, b"a,b\n\xff,1\n", "valid UTF-8"),
        (PARQUET, b"junk", "valid Parquet"),
    ],
)
def test_a_malformed_mlflow_request_is_mlflows_400(
    mlflow_served, content_type: str, body: bytes, reason: str
) -> None:
    client, _, capture = mlflow_served
    response = _invoke(client, body, content_type)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert {k: v for k, v in error.items() if k != "message"} == MLFLOW_ERROR
    assert reason in error["message"]
    assert capture.records == []


def test_invalid_fields_are_mlflows_400_naming_each_field_and_v1_predict_keeps_its_422(mlflow_served) -> None:
    client, _, capture = mlflow_served
    rows = plant_rows(2)
    rows[1]["torque_nm"] = "forty"
    rows[1]["colour"] = "red"
    mlflow = _invoke(client, orjson.dumps({"dataframe_records": rows}))
    driftloop = client.post("/v1/predict", json={"instances": rows})
    assert (mlflow.status_code, driftloop.status_code) == (400, 422)
    detail = driftloop.json()["detail"]
    assert [e["loc"] for e in detail] == [["instances", 1, "colour"], ["instances", 1, "torque_nm"]]
    assert mlflow.json() == {
        **MLFLOW_ERROR,
        "detail": detail,
        "message": "Invalid input. 2 invalid field(s): row 1, field 'colour': unknown field 'colour'; "
        "row 1, field 'torque_nm': torque_nm must be a number, got str",
    }
    assert [r["kind"] for r in capture.records] == ["rejection", "rejection"]  # both refusals counted


def test_ping_and_version_answer_as_mlflows_scoring_server() -> None:
    holder = ModelHolder()
    client = TestClient(create_app(holder))
    ping = client.get("/ping")
    assert (ping.status_code, ping.text, ping.headers["content-type"]) == (404, "\n", "application/json")
    holder.install(plant_model(1))
    ping = client.get("/ping")
    assert (ping.status_code, ping.text, ping.headers["content-type"]) == (200, "\n", "application/json")
    version = client.get("/version")
    assert (version.status_code, version.headers["content-type"]) == (200, "application/json")
    assert version.text == metadata.version("mlflow")
    assert {"/ping", "/version"} <= set(client.get("/openapi.json").json()["paths"])
    assert 'driftloop_requests_total{path="/ping",status="404"} 1.0' in client.get("/metrics").text


@pytest.mark.parametrize(
    ("change", "field", "kind"),
    [
        (lambda r: r.pop("torque_nm"), "torque_nm", "missing"),
        (lambda r: r.update(torque_nm="forty"), "torque_nm", "type"),
        (lambda r: r.update(torque_nm=True), "torque_nm", "type"),
        (lambda r: r.update(air_temperature_k=-5.0), "air_temperature_k", "range"),
        (lambda r: r.update(product_variant="XL"), "product_variant", "category"),
        (lambda r: r.update(product_variant=3), "product_variant", "category"),  # "3" is not a level
        (lambda r: r.update(product_variant=True), "product_variant", "type"),
        (lambda r: r.update(colour="red"), "colour", "unknown"),
    ],
)
def test_each_bad_field_is_a_422_naming_it(served, change, field: str, kind: str) -> None:
    client, _, capture = served
    rows = plant_rows(2)
    change(rows[1])
    response = client.post("/v1/predict", json={"instances": rows})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["instances", 1, field]
    assert error["type"] == kind
    assert field in error["msg"]
    # Nothing scored; the refusal itself is captured for the monitor's data-quality share.
    [rejection] = capture.records
    assert (rejection["kind"], rejection["rows"], rejection["model_name"]) == ("rejection", 2, "plant")
    assert rejection["errors"] == response.json()["detail"]


def test_every_bad_field_of_every_row_is_reported_at_once(served) -> None:
    client, _, _ = served
    rows = plant_rows(2)
    rows[0]["torque_nm"] = None
    rows[1]["tool_wear_min"] = "lots"
    rows[1]["extra"] = 1
    detail = client.post("/v1/predict", json={"instances": rows}).json()["detail"]
    assert sorted((e["loc"][1], e["loc"][2]) for e in detail) == [
        (0, "torque_nm"),
        (1, "extra"),
        (1, "tool_wear_min"),
    ]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/predict", b"{not json", 422),
        ("/v1/predict", b'{"rows": []}', 422),
        ("/v1/predict", b'{"instances": []}', 422),
        ("/v1/predict", b'{"instances": [1, 2]}', 422),
        ("/v1/feedback", b'{"labels": [{"prediction_id": 3, "label": 1}]}', 422),
        ("/v1/feedback", b'{"labels": [{"prediction_id": "a", "label": "yes"}]}', 422),
    ],
)
def test_malformed_bodies_are_4xx_with_a_json_reason(served, path: str, body: bytes, status: int) -> None:
    client, _, _ = served
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert response.json()["error"]


def test_too_many_rows_is_413() -> None:
    holder = ModelHolder()
    holder.install(plant_model(1))
    client = TestClient(create_app(holder, max_rows=2))
    assert client.post("/v1/predict", json={"instances": plant_rows(3)}).status_code == 413


def test_fallback_answers_when_the_current_model_raises(served) -> None:
    client, holder, capture = served
    broken = plant_model(2)
    broken.module = BrokenModule()
    holder.install(broken)
    response = client.post("/v1/predict", json={"instances": plant_rows(2)})
    assert response.status_code == 200
    body = response.json()
    assert body["model"]["version"] == 1
    assert all(p["fallback"] for p in body["predictions"])
    assert all(r["fallback"] for r in capture.records)
    assert "driftloop_fallbacks_total 1.0" in client.get("/metrics").text


def test_no_fallback_left_is_a_503_not_a_500() -> None:
    holder = ModelHolder()
    broken = plant_model(1)
    broken.module = BrokenModule()
    holder.install(broken)
    response = TestClient(create_app(holder)).post("/v1/predict", json={"instances": plant_rows(1)})
    assert response.status_code == 503
    assert "no fallback" in response.json()["error"]


def test_feedback_is_captured_for_joining_by_prediction_id(served) -> None:
    client, _, capture = served
    pid = client.post("/v1/predict", json={"instances": plant_rows(1)}).json()["predictions"][0]["id"]
    response = client.post("/v1/feedback", json={"labels": [{"prediction_id": pid, "label": 1}]})
    assert response.status_code == 200
    feedback = [r for r in capture.records if r["kind"] == "feedback"]
    assert feedback == [
        {"kind": "feedback", "prediction_id": pid, "ts": feedback[0]["ts"], "label": 1.0, "source": "api"}
    ]


def test_ready_model_metrics_and_docs() -> None:
    holder = ModelHolder()
    client = TestClient(create_app(holder))
    assert client.get("/health").json() == {"status": "alive"}
    assert client.get("/ready").status_code == 503
    assert client.post("/v1/predict", json={"instances": plant_rows(1)}).status_code == 503
    holder.install(plant_model(4))
    assert client.get("/ready").json()["model"] == {"name": "plant", "version": 4}
    info = client.get("/v1/model").json()
    assert info["current"]["version"] == 4
    assert "torque_nm" in info["current"]["inputs"]
    metrics = client.get("/metrics").text
    assert 'driftloop_model_version{model="plant"} 4.0' in metrics
    assert 'driftloop_requests_total{path="/v1/predict",status="503"} 1.0' in metrics
    assert client.get("/docs").status_code == 200
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]


def test_a_version_that_fails_to_load_keeps_the_old_one_serving() -> None:
    from driftloop.serving.model import Follower

    holder = ModelHolder()
    holder.install(plant_model(1))

    def load(version: int):  # type: ignore[no-untyped-def]
        raise RuntimeError("artifact missing")

    follower = Follower(holder, lambda: 2, load, interval_s=60)
    assert follower.check_once() is False
    assert holder.current.version == 1
    assert "version 2 failed to load" in holder.describe()["last_error"]
    assert follower.check_once() is False  # not retried until the alias moves again
    assert holder.load_failures == 1
    good = Follower(holder, lambda: 3, plant_model, interval_s=60)
    assert good.check_once() is True
    assert (holder.current.version, holder.previous.version) == (3, 1)


def test_a_registry_webhook_wakes_the_follower_and_signatures_are_checked() -> None:
    import base64
    import hashlib
    import hmac
    import time

    from driftloop.serving.model import Follower

    holder = ModelHolder()
    holder.install(plant_model(1))
    wanted = [1]
    follower = Follower(holder, lambda: wanted[0], plant_model, interval_s=3600)  # polling never fires
    follower.start()
    woken: list[int] = []

    def wake() -> None:
        woken.append(1)
        follower.wake()

    try:
        client = TestClient(create_app(holder, on_registry_event=wake, webhook_secret="s3cret"))
        body = b'{"entity": "model_version_alias", "action": "created", "data": {"alias": "production"}}'
        stamp, delivery = str(int(time.time())), "d-1"
        digest = hmac.new(b"s3cret", f"{delivery}.{stamp}.".encode() + body, hashlib.sha256).digest()
        good = {
            "X-MLflow-Signature": "v1," + base64.b64encode(digest).decode(),
            "X-MLflow-Delivery-Id": delivery,
            "X-MLflow-Timestamp": stamp,
        }
        wanted[0] = 2
        for headers, status in [
            ({}, 401),
            ({**good, "X-MLflow-Signature": "v1,AAAA"}, 401),
            ({**good, "X-MLflow-Timestamp": str(int(stamp) - 3600)}, 401),
        ]:
            response = client.post("/v1/registry-events", content=body, headers=headers)
            assert response.status_code == status
            assert response.json()["error"]
        assert woken == []  # refused deliveries wake nothing (a delivery wakes before it is answered)
        assert holder.current.version == 1
        assert client.post("/v1/registry-events", content=body, headers=good).status_code == 202
        assert woken == [1]
        wait_for(lambda: holder.current.version == 2, what="the webhook's swap")
    finally:
        follower.stop()


def test_metrics_carry_the_latest_monitoring_gauges(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from driftloop.serving.server import monitor_gauges
    from driftloop.settings import load_settings
    from driftloop.storage import store_for

    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    gauges = monitor_gauges(settings, "plant")
    assert gauges.refresh()  # no monitoring pass yet: nothing added, no error
    assert gauges().startswith(b"# HELP driftloop_monitor_gauges_age_seconds")
    text = b'driftloop_monitor_drift_share{model="plant",version="1"} 0.25\n'
    store_for(settings).write_bytes("monitoring/plant/latest.prom", text)
    assert gauges.refresh()  # what the background thread does every 10 s
    holder = ModelHolder()
    holder.install(plant_model(1))
    metrics = TestClient(create_app(holder, monitor_gauges=gauges)).get("/metrics").text
    assert 'driftloop_monitor_drift_share{model="plant",version="1"} 0.25' in metrics
    assert "driftloop_requests_total" in metrics
    assert float(metrics.split("driftloop_monitor_gauges_age_seconds ")[-1].split()[0]) < 60


def test_the_staging_version_is_scored_in_shadow_and_captured_but_never_returned(served) -> None:
    client, holder, capture = served
    holder.install_shadow(plant_model(2, seed=5))
    rows = plant_rows(5, seed=8)
    body = client.post("/v1/predict", json={"instances": rows}).json()
    assert body["model"]["version"] == 1  # production answers
    assert all(set(p) == {"id", "score", "fallback", "label"} for p in body["predictions"])
    expected_shadow = plant_model(2, seed=5).score(rows)
    captured = [r for r in capture.records if r["kind"] == "prediction"]
    assert [r["shadow_version"] for r in captured] == [2] * 5
    assert [r["shadow_score"] for r in captured] == pytest.approx(list(expected_shadow), abs=1e-6)
    assert [r["score"] for r in captured] == pytest.approx([p["score"] for p in body["predictions"]])
    assert client.get("/v1/model").json()["shadow"]["version"] == 2


def test_a_failing_shadow_costs_the_caller_nothing(served) -> None:
    client, holder, capture = served
    broken = plant_model(2)
    broken.module = BrokenModule()
    holder.install_shadow(broken)
    response = client.post("/v1/predict", json={"instances": plant_rows(3)})
    assert response.status_code == 200
    assert not any(p["fallback"] for p in response.json()["predictions"])
    assert all(r.get("shadow_version") is None for r in capture.records)
    assert holder.shadow_failures >= 1


def test_the_shadow_follower_tracks_staging_and_stops_when_it_goes() -> None:
    from driftloop.serving.model import Follower

    holder = ModelHolder()
    holder.install(plant_model(1))
    staged: list[int | None] = [2]
    shadow = Follower(holder, lambda: staged[0], plant_model, interval_s=60, shadow=True)
    assert shadow.check_once() is True
    assert (holder.current.version, holder.shadow.version) == (1, 2)
    staged[0] = None  # promoted or discarded: the staging alias is gone
    shadow.check_once()
    assert holder.shadow is None
    assert holder.current.version == 1


class _BuggyCapture(MemoryCapture):
    async def append_many_async(self, records, *, trusted=False) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug in the capture sink")

    def append_nowait(self, records, *, trusted=False) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug in the capture sink")


def test_a_bug_on_the_scoring_path_is_a_json_500_and_counted() -> None:
    holder = ModelHolder()
    holder.install(plant_model(1))
    client = TestClient(create_app(holder, capture=_BuggyCapture()))
    mlflow = {
        "error_code": "INTERNAL_ERROR",
        "message": "internal server error",
        "sqlstate": "XXM00",
        "error_class": "CLIENT_INTERNAL_ERROR",
    }
    for path, body in (("/v1/predict", {"error": "internal server error"}), ("/invocations", mlflow)):
        response = client.post(path, json={"instances": plant_rows(1)})
        assert response.status_code == 500
        assert response.json() == body
        assert f'driftloop_requests_total{{path="{path}",status="500"}} 1.0' in client.get("/metrics").text


def _without_ids(body: dict) -> dict:  # type: ignore[type-arg]
    """A response body minus the random prediction ids."""
    predictions = body.get("predictions", [])
    return {
        **body,
        "predictions": [
            {k: v for k, v in p.items() if k != "id"} if isinstance(p, dict) else p for p in predictions
        ],
    }


def test_the_scoring_routes_answer_by_status_and_refuse_other_methods_as_fastapi_does() -> None:
    holder = ModelHolder()
    holder.install(plant_model(1))
    client = TestClient(create_app(holder))
    ok, bad = {"instances": plant_rows(2)}, {"instances": [{**plant_rows(1)[0], "torque_nm": "x"}]}
    csv = mlflow_bodies(plant_rows(2))["csv"][1]
    sent = [
        ("/v1/predict", ok, JSON),
        ("/invocations", ok, JSON),
        ("/v1/predict", bad, JSON),
        ("/invocations", bad, JSON),
        ("/invocations", b"{", JSON),
        ("/invocations", csv, CSV),
        ("/invocations", csv, "text/html"),
    ]
    responses = [
        client.post(
            path,
            content=body if isinstance(body, bytes) else orjson.dumps(body),
            headers={"content-type": content_type},
        )
        for path, body, content_type in sent
    ]
    assert [r.status_code for r in responses] == [200, 200, 422, 400, 400, 200, 415]
    assert [r.headers["content-type"] for r in responses] == ["application/json"] * 6 + [
        "text/plain; charset=utf-8"
    ]
    assert {"/v1/predict", "/invocations"} <= set(client.get("/openapi.json").json()["paths"])
    refused = client.get("/v1/predict")
    assert (refused.status_code, refused.json(), refused.headers["allow"]) == (
        405,
        {"detail": "Method Not Allowed"},
        "POST",
    )
    assert client.get("/v1/unknown").status_code == 404
