"""The service's OpenAPI document is complete, valid, describes the served model's rows and the access
rules, the service keeps to it for any input (schemathesis), and ``/docs`` works without a network."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from driftloop.auth import Gate, RateLimiter, TokenVerifier
from driftloop.capture import CaptureStore
from driftloop.serving.app import create_app
from driftloop.serving.batching import MicroBatcher
from driftloop.serving.model import ModelHolder
from driftloop.settings import CaptureSettings, RateLimit
from driftloop.storage import open_store
from tests.serving.fakes import MemoryCapture, plant_model

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi import FastAPI


def _app(capture: Any = None, *, holder: ModelHolder | None = None, gate: Gate | None = None) -> FastAPI:
    if holder is None:
        holder = ModelHolder()
        holder.install(plant_model(1))
    app = create_app(
        holder,
        capture=capture or MemoryCapture(),
        batcher=MicroBatcher(holder.predict, max_rows=64),
        on_registry_event=lambda: None,
        webhook_secret="s3cret",
        monitor_gauges=lambda: b"",
        max_body_bytes=64 * 1024,
        gate=gate,
    )
    return app


def test_every_route_declares_its_responses_and_every_post_its_body() -> None:
    document = TestClient(_app()).get("/openapi.json").json()
    paths = document["paths"]
    assert set(paths) == {
        "/v1/predict",
        "/invocations",
        "/ping",
        "/version",
        "/v1/feedback",
        "/health",
        "/ready",
        "/v1/model",
        "/metrics",
        "/v1/registry-events",
    }
    for path, operations in paths.items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                assert response["content"], (path, method, status)  # a body, and what it is
                if path not in ("/ping", "/version"):  # MLflow's: application/json that is not JSON
                    for media in response["content"].values():
                        assert media["schema"], (path, method, status)
            if method == "post" and path != "/v1/registry-events":
                assert operation["requestBody"]["required"] is True, path
    predict = paths["/v1/predict"]["post"]
    assert set(predict["responses"]) == {"200", "413", "422", "503"}
    assert predict["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictRequest"
    }
    invocations = paths["/invocations"]["post"]["requestBody"]["content"]
    assert set(invocations) == {"application/json", "text/csv", "application/vnd.apache.parquet"}
    components = document["components"]["schemas"]
    for name in (
        "PredictRequest",
        "PredictResponse",
        "ErrorBody",
        "InvocationsRequest",
        "MlflowError",
        "FeedbackRequest",
        "ModelInfo",
    ):
        assert name in components
    # What the service answers matches what the document says, for a real prediction.
    assert set(components["PredictResponse"]["properties"]) == {"model", "predictions"}


# Checks: no 5xx, and every answer documented (status, content type, body schema). Fixed derandomised
# examples and a bounded budget: the same requests every run, a few seconds in all.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
BUDGET = settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)

# A Parquet body is bytes: sent as they are generated (the service answers 400 for non-Parquet bytes).
schemathesis.serializer.alias("application/vnd.apache.parquet", "application/octet-stream")


def test_no_input_makes_the_service_fail_or_leave_its_schema(tmp_path: Path) -> None:
    """Every operation of the document, fuzzed from its schemas, against the service with a real capture
    store (what it cannot capture it must refuse, not fail on), its scoring routes answered ahead of
    FastAPI or by FastAPI's routes."""
    cfg = CaptureSettings(convert_in_subprocess=False, compact_idle_s=0)
    with CaptureStore(open_store(str(tmp_path / "store")), tmp_path / "wal", cfg) as capture:
        schema = schemathesis.openapi.from_asgi("/openapi.json", _app(capture))
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 10
        for operation in operations:

            @given(case=operation.as_strategy())
            @BUDGET
            def call(case: Any) -> None:
                case.call_and_validate(checks=CHECKS)

            call()


def test_a_row_is_described_as_the_served_model_takes_it() -> None:
    model = plant_model(1)
    document = TestClient(_app()).get("/openapi.json").json()
    validate(document)  # a valid OpenAPI 3.1 document (openapi-spec-validator)
    row = document["components"]["schemas"]["Row"]
    transform = model.spec.transform
    ignored = [d.name for d in transform.dropped]
    assert ignored == ["timestamp", "record_id", "machine_id"]  # accepted, not used
    assert list(row["properties"]) == transform.input_names + ignored
    assert row["required"] == transform.input_names
    assert row["properties"]["record_id"]["description"].startswith("Ignored (id)")
    assert row["additionalProperties"] is False  # an unknown field is a 422
    fields = {  # null where training allowed nulls (the plant's columns allow none)
        spec.name: row["properties"][spec.name]["anyOf"][0] if spec.nullable else row["properties"][spec.name]
        for spec in transform.inputs
    }
    # The bounds and values the plant's schema declares (simulate/plant.py).
    assert fields["air_temperature_k"] == {"type": "number", "minimum": 250.0, "maximum": 350.0}
    assert fields["rotational_speed_rpm"] == {"type": "integer", "minimum": 0.0, "maximum": 5000.0}
    assert fields["product_variant"] == {"type": "string", "enum": ["L", "M", "H"]}
    assert document["info"]["x-driftloop-model"] == {"name": "plant", "version": 1}
    schemas = document["components"]["schemas"]
    ref = {"$ref": "#/components/schemas/Row"}
    assert schemas["PredictRequest"]["properties"]["instances"]["items"] == ref
    records = schemas["InvocationsRequest"]["properties"]["dataframe_records"]["anyOf"][0]
    assert records["items"] == ref
    # Request and response schemas of the routes a client of the model calls.
    paths = document["paths"]
    for path, method in (("/v1/predict", "post"), ("/invocations", "post"), ("/v1/feedback", "post")):
        assert paths[path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"], path
    for path, method in (
        ("/v1/predict", "post"),
        ("/invocations", "post"),
        ("/v1/feedback", "post"),
        ("/v1/model", "get"),
    ):
        assert paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"], path


def test_the_document_follows_the_served_version() -> None:
    holder = ModelHolder()
    client = TestClient(_app(holder=holder))
    before = client.get("/openapi.json").json()
    validate(before)
    assert before["components"]["schemas"]["Row"]["additionalProperties"] is True  # no model yet
    assert "x-driftloop-model" not in before["info"]
    holder.install(plant_model(1))
    assert client.get("/openapi.json").json()["info"]["x-driftloop-model"]["version"] == 1
    holder.install(plant_model(2))  # a hot swap
    after = client.get("/openapi.json").json()
    assert after["info"]["x-driftloop-model"]["version"] == 2
    assert "plant/2" in after["components"]["schemas"]["Row"]["description"]


def test_with_auth_on_the_document_declares_the_token_and_the_docs_stay_open() -> None:
    """docs/auth.md: /docs and /openapi.json are open (the API's shape, no data); the protected routes
    say which role they need, and answer 401, 403 and, with rate limits, 429."""
    gate = Gate(TokenVerifier(lambda _: None, ttl_s=5.0), RateLimiter(RateLimit(per_second=5, burst=5), {}))
    client = TestClient(_app(gate=gate))
    document = client.get("/openapi.json").json()  # no token
    validate(document)
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    roles = {
        ("/v1/predict", "post"): "predict",
        ("/invocations", "post"): "predict",
        ("/v1/feedback", "post"): "label",
        ("/v1/model", "get"): "view",
        ("/metrics", "get"): "view",
    }
    for (path, method), role in roles.items():
        operation = document["paths"][path][method]
        assert operation["security"] == [{"bearer": []}], path
        assert f"`{role}` role" in operation["description"], path
        assert {"401", "403", "429"} <= set(operation["responses"]), path
    for path in ("/health", "/ready", "/ping", "/version"):
        assert "security" not in document["paths"][path]["get"], path
    assert client.get("/docs").status_code == 200
    refused = client.post("/v1/predict", json={"instances": []})
    assert refused.status_code == 401  # as documented
    assert "401" in document["paths"]["/v1/predict"]["post"]["responses"]


def test_without_a_gate_no_access_rules_are_declared() -> None:
    document = TestClient(_app()).get("/openapi.json").json()
    assert "securitySchemes" not in document["components"]
    assert "429" not in document["paths"]["/v1/predict"]["post"]["responses"]


# What each documentation page's files must be served as, by their extension.
CONTENT_TYPES = {
    ".js": ("application/javascript", "text/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_documentation_pages_load_only_local_files(page: str) -> None:
    client = TestClient(_app())
    html = client.get(page)
    assert html.status_code == 200
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text)
    urls += re.findall(r"""url:\s*'([^']+)'""", html.text)  # Swagger UI's and ReDoc's document URL
    assert urls
    assert "http://" not in html.text
    assert "https://" not in html.text  # no CDN, no fonts, no validator badge
    for url in urls:
        assert url.startswith("/"), url
        answer = client.get(url)
        assert answer.status_code == 200, url
        kind = answer.headers["content-type"].split(";")[0]
        if url == "/openapi.json":
            assert kind == "application/json"
        else:
            assert kind in CONTENT_TYPES["." + url.rpartition(".")[2]], (url, kind)
    assert any(url.endswith(".js") for url in urls)
