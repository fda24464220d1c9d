"""The service's HTTP contract, in process: formats, every 422, fallback, hot swap, metrics."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient

from driftloop.serving.app import create_app
from driftloop.serving.batching import MicroBatcher
from driftloop.serving.model import ModelHolder
from tests.serving.fakes import BrokenModule, MemoryCapture, plant_model, plant_rows


@pytest.fixture(params=[False, True], ids=["direct", "micro-batched"])
def served(request: pytest.FixtureRequest) -> tuple[TestClient, ModelHolder, MemoryCapture]:
    holder = ModelHolder()
    holder.install(plant_model(1))
    capture = MemoryCapture()
    batcher = MicroBatcher(holder.predict, max_rows=64) if request.param else None
    return TestClient(create_app(holder, capture=capture, batcher=batcher)), holder, capture


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


def test_mlflow_scoring_formats_give_the_same_scores_and_capture_the_rows_scored(served) -> None:
    client, holder, capture = served
    rows = plant_rows(4, seed=3)
    columns = list(rows[0])
    expected = pytest.approx(list(holder.current.score(rows)), abs=1e-7)
    bodies = [
        {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}},
        {"dataframe_records": rows},
        {"instances": rows},
        {"inputs": rows},
        {"inputs": {c: [r[c] for r in rows] for c in columns}},
    ]
    for body in bodies:
        capture.records.clear()
        response = client.post("/invocations", json=body)
        assert response.status_code == 200, (body, response.text)
        assert response.json()["predictions"] == expected
        # Capture keeps the body as received and reads its rows back with the service's own parser.
        assert [r["inputs"] for r in capture.records] == rows
        assert [r["score"] for r in capture.records] == response.json()["predictions"]
        assert {r["endpoint"] for r in capture.records} == {"/invocations"}


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
        ("/invocations", b'{"dataframe_split": {"columns": ["a"]}}', 422),
        ("/invocations", b'{"tensor": [1]}', 422),
        ("/invocations", b'{"instances": [], "inputs": []}', 422),
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
    try:
        client = TestClient(create_app(holder, on_registry_event=follower.wake, webhook_secret="s3cret"))
        body = b'{"entity": "model_version_alias", "action": "created", "data": {"alias": "production"}}'
        stamp, delivery = str(int(time.time())), "d-1"
        digest = hmac.new(b"s3cret", f"{delivery}.{stamp}.".encode() + body, hashlib.sha256).digest()
        good = {"X-MLflow-Signature": "v1," + base64.b64encode(digest).decode(),
                "X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": stamp}  # fmt: skip
        wanted[0] = 2
        for headers, status in [
            ({}, 401),
            ({**good, "X-MLflow-Signature": "v1,AAAA"}, 401),
            ({**good, "X-MLflow-Timestamp": str(int(stamp) - 3600)}, 401),
        ]:
            response = client.post("/v1/registry-events", content=body, headers=headers)
            assert response.status_code == status
            assert response.json()["error"]
        time.sleep(0.2)
        assert holder.current.version == 1  # refused deliveries wake nothing
        assert client.post("/v1/registry-events", content=body, headers=good).status_code == 202
        deadline = time.monotonic() + 10
        while holder.current.version != 2:
            assert time.monotonic() < deadline, "the webhook did not trigger a swap"
            time.sleep(0.02)
    finally:
        follower.stop()


def test_metrics_carry_the_latest_monitoring_gauges(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from driftloop.serving.server import _MonitorGauges
    from driftloop.settings import load_settings
    from driftloop.storage import store_for

    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    gauges = _MonitorGauges(settings, "plant")
    assert gauges() == b""  # no monitoring pass yet: nothing added, no error
    text = b'driftloop_monitor_drift_share{model="plant",version="1"} 0.25\n'
    store_for(settings).write_bytes("monitoring/plant/latest.prom", text)
    gauges._read_at = -1e9  # as if ten seconds had passed
    holder = ModelHolder()
    holder.install(plant_model(1))
    metrics = TestClient(create_app(holder, monitor_gauges=gauges)).get("/metrics").text
    assert 'driftloop_monitor_drift_share{model="plant",version="1"} 0.25' in metrics
    assert "driftloop_requests_total" in metrics


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
    for path in ("/v1/predict", "/invocations"):
        response = client.post(path, json={"instances": plant_rows(1)})
        assert response.status_code == 500
        assert response.json() == {"error": "internal server error"}
        assert f'driftloop_requests_total{{path="{path}",status="500"}} 1.0' in client.get("/metrics").text


def _without_ids(body: dict) -> dict:  # type: ignore[type-arg]
    """A response body minus the random prediction ids."""
    predictions = body.get("predictions", [])
    return {**body, "predictions": [{k: v for k, v in p.items() if k != "id"} if isinstance(p, dict) else p
                                    for p in predictions]}  # fmt: skip


def test_the_scoring_routes_answer_alike_ahead_of_fastapi_and_through_it() -> None:
    holder = ModelHolder()
    holder.install(plant_model(1))
    app = create_app(holder)
    client = TestClient(app)
    ok, bad = {"instances": plant_rows(2)}, {"instances": [{**plant_rows(1)[0], "torque_nm": "x"}]}
    answers = []
    for fast_routes in (dict(app.fast_routes), {}):  # {}: every request goes through FastAPI's router
        app.fast_routes = fast_routes
        sent = [("/v1/predict", ok), ("/invocations", ok), ("/v1/predict", bad), ("/invocations", b"{")]
        responses = [client.post(path, content=body if isinstance(body, bytes) else orjson.dumps(body))
                     for path, body in sent]  # fmt: skip
        answers.append(
            [(r.status_code, r.headers["content-type"], _without_ids(r.json())) for r in responses]
        )
    assert answers[0] == answers[1]
    assert [status for status, *_ in answers[0]] == [200, 200, 422, 422]
    assert {"/v1/predict", "/invocations"} <= set(client.get("/openapi.json").json()["paths"])
    assert client.get("/v1/predict").status_code == 405  # other methods are FastAPI's, as before
