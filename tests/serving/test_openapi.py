"""The service's OpenAPI document is complete, the service keeps to it for any input (schemathesis), and
``/docs`` works without a network."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from driftloop.capture import CaptureStore
from driftloop.serving.app import create_app
from driftloop.serving.batching import MicroBatcher
from driftloop.serving.model import ModelHolder
from driftloop.settings import CaptureSettings
from driftloop.storage import open_store
from tests.serving.fakes import MemoryCapture, plant_model

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi import FastAPI


def _app(capture: Any = None) -> FastAPI:
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
        assert client.get(url).status_code == 200, url
    assert any(url.endswith(".js") for url in urls)
