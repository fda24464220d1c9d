"""Tokens, roles and rate limits on every protected route, in process (over a real server:
``test_http``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from driftloop.auth import ROLES, Gate, RateLimiter, TokenStore, TokenVerifier
from driftloop.errors import MetadataError
from driftloop.serving.app import create_app
from driftloop.serving.model import ModelHolder
from driftloop.settings import RateLimit
from driftloop.storage.metadata import ApiTokenRow, open_metadata
from tests.serving.fakes import MemoryCapture, plant_model, plant_rows

if TYPE_CHECKING:
    from pathlib import Path

ROWS = plant_rows(2)
# (method, path, body, the role it needs, the status it answers when admitted)
Route = tuple[str, str, Any, str, int]
ROUTES: list[Route] = [
    ("POST", "/v1/predict", {"instances": ROWS}, "predict", 200),
    ("POST", "/invocations", {"dataframe_records": ROWS}, "predict", 200),
    ("POST", "/v1/feedback", {"labels": [{"prediction_id": "p-1", "label": 1}]}, "label", 200),
    ("POST", "/v1/registry-events", {"entity": "model_version_alias"}, "promote", 202),
    ("GET", "/v1/model", None, "view", 200),
    ("GET", "/metrics", None, "view", 200),
]
OPEN = ["/health", "/ready", "/ping", "/version", "/docs", "/openapi.json"]
# A role that does not imply the one each route needs (every role implies view: no such role there).
WRONG = {"predict": "label", "label": "predict", "promote": "approve"}


class Tokens:
    """One token per role (identity ``<role>-bot``), plus a revoked and an expired one."""

    def __init__(self, directory: Path) -> None:
        self.store = TokenStore(open_metadata(f"sqlite:///{directory / 'meta.db'}"))
        self.by_role = {r: self.store.create(f"{r}-bot", [r], created_by="t")[1] for r in ROLES}
        self.revoked = self.store.create("gone", ["admin"], created_by="t")[1]
        self.store.revoke("gone", revoked_by="t")
        expired, self.expired = self.store.create("old", ["admin"], created_by="t")
        with self.store.db.session() as session:
            session.get(ApiTokenRow, expired.id).expires_at = datetime.now(UTC) - timedelta(seconds=1)  # type: ignore[union-attr]


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    return Tokens(tmp_path)


def _served(gate: Gate | None, *, secret: str | None = None) -> tuple[TestClient, MemoryCapture, list[int]]:
    holder = ModelHolder()
    holder.install(plant_model(1))
    capture, woken = MemoryCapture(), []
    app = create_app(
        holder, capture=capture, on_registry_event=lambda: woken.append(1), webhook_secret=secret, gate=gate
    )
    return TestClient(app), capture, woken


@pytest.fixture
def served(tokens: Tokens) -> tuple[TestClient, MemoryCapture, list[int]]:
    return _served(Gate(TokenVerifier(tokens.store.lookup, ttl_s=5.0), None))


def _call(client: TestClient, method: str, path: str, body: Any, authorization: str | None = None) -> Any:
    headers = {} if authorization is None else {"authorization": authorization}
    if method == "GET":
        return client.get(path, headers=headers)
    return client.post(path, json=body, headers=headers)


def _message(path: str, response: Any) -> str:
    """The error's message: MLflow's body on /invocations, driftloop's elsewhere."""
    body = response.json()
    if path == "/invocations":
        assert set(body) == {"error_code", "message"} | ({"sqlstate", "error_class"} & set(body))
        return str(body["message"])
    assert set(body) == {"error"}
    return str(body["error"])


@pytest.mark.parametrize("route", ROUTES, ids=[r[1] for r in ROUTES])
def test_every_protected_route_refuses_missing_and_invalid_credentials_with_a_json_401(
    served, tokens: Tokens, route: Route
) -> None:
    client, capture, woken = served
    method, path, body, role, _ = route
    right = tokens.by_role[role]
    for authorization, why in [
        (None, "missing credentials"),
        ("", "missing credentials"),
        (f"Basic {base64.b64encode(b'u:p').decode()}", 'must be "Bearer <token>"'),
        (f"Token {right}", 'must be "Bearer <token>"'),
        ("Bearer ", "invalid token"),
        ("Bearer dl_" + "x" * 43, "invalid token"),
        (f"Bearer {right[:-2]}", "invalid token"),
        (f"Bearer {tokens.revoked}", "invalid token"),
        (f"Bearer {tokens.expired}", "invalid token"),
    ]:
        response = _call(client, method, path, body, authorization)
        assert response.status_code == 401, (authorization, response.text)
        assert response.headers["www-authenticate"] == 'Bearer realm="driftloop"'
        assert why in _message(path, response)
        if path == "/invocations":
            assert response.json()["error_code"] == "UNAUTHENTICATED"
    assert capture.records == []  # nothing refused was scored, labelled or captured
    assert woken == []


@pytest.mark.parametrize("route", [r for r in ROUTES if r[3] in WRONG], ids=lambda r: r[1])
def test_a_token_without_the_routes_role_is_a_json_403(served, tokens: Tokens, route: Route) -> None:
    client, capture, _ = served
    method, path, body, role, _ = route
    response = _call(client, method, path, body, f"Bearer {tokens.by_role[WRONG[role]]}")
    assert response.status_code == 403
    assert f"the token of '{WRONG[role]}-bot' lacks the {role} role" in _message(path, response)
    if path == "/invocations":
        assert response.json()["error_code"] == "PERMISSION_DENIED"
    assert capture.records == []


@pytest.mark.parametrize("route", ROUTES, ids=[r[1] for r in ROUTES])
def test_the_right_role_or_admin_is_admitted(served, tokens: Tokens, route: Route) -> None:
    client, _, woken = served
    method, path, body, role, ok = route
    if path == "/v1/feedback":  # a label is accepted for an id this service issued (decision 0041)
        admin = {"authorization": f"Bearer {tokens.by_role['admin']}"}
        issued = client.post("/v1/predict", json={"instances": ROWS[:1]}, headers=admin).json()
        body = {"labels": [{"prediction_id": issued["predictions"][0]["id"], "label": 1}]}
    for holder in (role, "admin"):
        response = _call(client, method, path, body, f"Bearer {tokens.by_role[holder]}")
        assert response.status_code == ok, (holder, response.text)
    # The scheme is case-insensitive (RFC 7235); surrounding blanks around the token are ignored.
    assert _call(client, method, path, body, f"bearer  {tokens.by_role[role]} ").status_code == ok
    if path == "/v1/registry-events":
        assert len(woken) == 3


@pytest.mark.parametrize("path", OPEN)
def test_probes_and_docs_stay_open(served, path: str) -> None:
    client, _, _ = served
    assert client.get(path).status_code == 200


def test_labels_record_the_identity_that_sent_them(served, tokens: Tokens) -> None:
    client, capture, _ = served
    predicted = client.post(
        "/v1/predict",
        json={"instances": ROWS[:1]},
        headers={"authorization": f"Bearer {tokens.by_role['predict']}"},
    )
    pid = predicted.json()["predictions"][0]["id"]
    for who in ("label", "admin"):
        response = client.post(
            "/v1/feedback",
            json={"labels": [{"prediction_id": pid, "label": 1}]},
            headers={"authorization": f"Bearer {tokens.by_role[who]}"},
        )
        assert response.status_code == 200
    assert [r["source"] for r in capture.records if r["kind"] == "feedback"] == ["label-bot", "admin-bot"]


def test_refusals_are_counted_in_the_request_metrics(served, tokens: Tokens) -> None:
    client, _, _ = served
    client.post("/v1/predict", json={"instances": ROWS})
    client.post(
        "/v1/predict",
        json={"instances": ROWS},
        headers={"authorization": f"Bearer {tokens.by_role['label']}"},
    )
    metrics = client.get("/metrics", headers={"authorization": f"Bearer {tokens.by_role['view']}"}).text
    assert 'driftloop_requests_total{path="/v1/predict",status="401"} 1.0' in metrics
    assert 'driftloop_requests_total{path="/v1/predict",status="403"} 1.0' in metrics


def test_a_signed_webhook_needs_no_token_but_an_unsigned_one_does(tokens: Tokens) -> None:
    client, _, woken = _served(Gate(TokenVerifier(tokens.store.lookup, ttl_s=5.0), None), secret="s3cret")
    body = b'{"entity": "model_version_alias", "action": "created"}'
    stamp, delivery = str(int(time.time())), "d-1"
    digest = hmac.new(b"s3cret", f"{delivery}.{stamp}.".encode() + body, hashlib.sha256).digest()
    signed = {
        "X-MLflow-Signature": "v1," + base64.b64encode(digest).decode(),
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": stamp,
    }
    assert client.post("/v1/registry-events", content=body, headers=signed).status_code == 202
    forged = {**signed, "X-MLflow-Signature": "v1,AAAA"}
    assert client.post("/v1/registry-events", content=body, headers=forged).status_code == 401
    assert client.post("/v1/registry-events", content=body).status_code == 401
    bearer = {"authorization": f"Bearer {tokens.by_role['promote']}"}
    assert client.post("/v1/registry-events", content=body, headers=bearer).status_code == 202
    assert len(woken) == 2


def test_a_token_database_outage_is_a_503_not_a_401(tokens: Tokens) -> None:
    def down(digest: str) -> None:
        raise MetadataError("metadata database sqlite:///x: unable to open database file")

    client, capture, _ = _served(Gate(TokenVerifier(down, ttl_s=5.0), None))
    bearer = {"authorization": f"Bearer {tokens.by_role['predict']}"}
    response = client.post("/v1/predict", json={"instances": ROWS}, headers=bearer)
    assert (response.status_code, response.json()) == (
        503,
        {"error": "metadata database sqlite:///x: unable to open database file"},
    )
    assert client.post("/invocations", json={"instances": ROWS}, headers=bearer).status_code == 503
    assert capture.records == []


def test_a_token_over_its_rate_is_a_429_with_retry_after(tokens: Tokens) -> None:
    limiter = RateLimiter(RateLimit(per_second=0.01, burst=2), {"label": RateLimit(per_second=0.01, burst=1)})
    client, capture, _ = _served(Gate(TokenVerifier(tokens.store.lookup, ttl_s=5.0), limiter))
    scorer = {"authorization": f"Bearer {tokens.by_role['predict']}"}
    assert [
        client.post("/v1/predict", json={"instances": ROWS}, headers=scorer).status_code for _ in range(2)
    ] == [
        200,
        200,
    ]
    refused = client.post("/v1/predict", json={"instances": ROWS}, headers=scorer)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "100"  # one request comes back in 1 / 0.01 s
    assert refused.json() == {
        "error": "rate limit for 'predict-bot' exceeded (0.01 requests/s, bursts of 2): retry in 100 s"
    }
    mlflow = client.post("/invocations", json={"instances": ROWS}, headers=scorer)
    assert (mlflow.status_code, mlflow.json()["error_code"]) == (429, "REQUEST_LIMIT_EXCEEDED")
    admin = {"authorization": f"Bearer {tokens.by_role['admin']}"}
    assert (
        client.post("/v1/predict", json={"instances": ROWS}, headers=admin).status_code == 200
    )  # its own bucket
    issued = client.post("/v1/predict", json={"instances": ROWS}, headers=admin).json()["predictions"]
    labels = {"labels": [{"prediction_id": issued[0]["id"], "label": 0}]}
    assert (
        client.post("/v1/feedback", json=labels, headers=admin).status_code == 200
    )  # the label role's own limit
    refused = client.post("/v1/feedback", json=labels, headers=admin)
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "100")
    assert "bursts of 1" in refused.json()["error"]
    assert len([r for r in capture.records if r["kind"] == "prediction"]) == 4 * len(ROWS)  # none refused


def test_with_auth_off_the_rate_limit_keys_by_client_address() -> None:
    client, _, _ = _served(Gate(None, RateLimiter(RateLimit(per_second=0.01, burst=1), {})))
    assert client.post("/v1/predict", json={"instances": ROWS}).status_code == 200
    refused = client.post("/v1/predict", json={"instances": ROWS})
    assert refused.status_code == 429
    assert "rate limit for client testclient exceeded" in refused.json()["error"]
    other = TestClient(client.app, client=("10.1.2.3", 5000))
    assert other.get("/v1/model").status_code == 200  # no token needed with auth off
    assert other.post("/v1/predict", json={"instances": ROWS}).status_code == 429  # one bucket per client


def test_without_a_gate_nothing_is_checked() -> None:
    client, capture, _ = _served(None)
    answer = client.post("/v1/predict", json={"instances": ROWS})
    assert answer.status_code == 200
    label = {"prediction_id": answer.json()["predictions"][0]["id"], "label": 1}
    assert client.post("/v1/feedback", json={"labels": [label]}).status_code == 200
    assert [r["source"] for r in capture.records if r["kind"] == "feedback"] == ["api"]
