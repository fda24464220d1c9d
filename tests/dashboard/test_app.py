"""The dashboard app in process: auth on (the service's tokens; a viewer reads, no token is a JSON 401
that a browser answers with Basic), read-only (every write method is a JSON 405), JSON errors, and a
service that is down shown as such."""

from __future__ import annotations

import base64
import http.server
import socket
import threading
from typing import TYPE_CHECKING, ClassVar

import pytest
from fastapi.testclient import TestClient

from driftloop.auth import TokenStore
from driftloop.dashboard import build_app
from driftloop.dashboard.html import PAGES
from driftloop.runtime.processes import free_port
from driftloop.settings import load_settings
from driftloop.storage.metadata import open_metadata
from tests.dashboard.test_sources import METRICS

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# Pages that read only the metadata database (the models page reads MLflow: tests/dashboard/test_browser.py).
LOCAL_PAGES = ["drift", "decisions", "triggers", "retrainings", "shadow", "guards", "traffic"]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    """The dashboard with auth on over an empty platform, a viewer's token, and a service URL where
    nothing listens. One per module: opening the metadata database (migrations) is most of its cost, and
    no test here writes."""
    directory = tmp_path_factory.mktemp("dashboard")
    config = directory / "driftloop.toml"
    config.write_text(
        f'home = "{directory / ".driftloop"}"\n[auth]\nenabled = true\n[registry]\nmodel_name = "m"\n'
    )
    settings = load_settings(config)
    db = open_metadata(settings.database_url)
    _, viewer = TokenStore(db).create("viewer", ["view"], created_by="t")
    db.dispose()
    app = build_app(settings, service_url=f"http://127.0.0.1:{free_port()}")
    with TestClient(app) as client:
        yield client, viewer


@pytest.mark.parametrize("path", [*PAGES, "/api/drift", "/static/plotly.min.js", "/"])
def test_without_a_token_every_route_is_a_json_401_with_a_basic_challenge(dashboard, path: str) -> None:
    client, _ = dashboard
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert "Authorization" in response.json()["error"]
    assert response.headers["www-authenticate"].startswith("Basic ")


def test_an_unknown_token_is_refused_and_health_stays_open(dashboard) -> None:
    client, _ = dashboard
    refused = client.get("/models", headers={"Authorization": "Bearer dl_" + "x" * 43})
    assert refused.status_code == 401
    assert refused.json()["error"].startswith("invalid token")
    assert client.get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize("name", LOCAL_PAGES)
def test_a_viewer_reads_every_page_by_bearer_and_by_basic(dashboard, name: str) -> None:
    client, viewer = dashboard
    basic = "Basic " + base64.b64encode(f"anyone:{viewer}".encode()).decode()
    for authorization in (f"Bearer {viewer}", basic):
        page = client.get(f"/{name}", headers={"Authorization": authorization})
        assert page.status_code == 200, page.text
        assert "signed in as viewer" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        data = client.get(f"/api/{name}", headers={"Authorization": authorization})
        assert data.status_code == 200
        assert data.json()["model"] == "m"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_the_dashboard_has_no_write_route(dashboard, method: str) -> None:
    client, viewer = dashboard
    for path in ["/models", "/api/triggers", "/tokens", "/"]:
        response = client.request(method, path, headers={"Authorization": f"Bearer {viewer}"})
        assert response.status_code == 405
        assert "read-only" in response.json()["error"]
        assert response.headers["allow"] == "GET, HEAD"


def test_unknown_pages_and_bad_model_names_are_json_4xx(dashboard) -> None:
    client, viewer = dashboard
    auth = {"Authorization": f"Bearer {viewer}"}
    missing = client.get("/api/nothing", headers=auth)
    assert missing.status_code == 404
    assert "no dashboard page 'nothing'" in missing.json()["error"]
    assert client.get("/nowhere", headers=auth).json() == {"error": "Not Found", "detail": None}
    # Query parameters other than ?model= change nothing (a page's name is its path, not a parameter).
    assert "<h1>Triggers" in client.get("/triggers", params={"name": "nothing"}, headers=auth).text
    bad = client.get("/api/drift", params={"model": "a\nb"}, headers=auth)
    assert bad.status_code == 400
    assert "invalid ?model=" in bad.json()["error"]


def test_a_service_that_is_down_is_said_so_on_the_traffic_page(dashboard) -> None:
    client, viewer = dashboard
    auth = {"Authorization": f"Bearer {viewer}"}
    data = client.get("/api/traffic", headers=auth).json()
    assert data["reachable"] is False
    assert data["reason"].startswith("service not reachable at http://127.0.0.1:")
    page = client.get("/traffic", headers=auth).text
    assert '<p class="warn">service not reachable at' in page
    assert 'class="chart"' not in page


def test_empty_pages_say_what_is_missing_without_failing(dashboard) -> None:
    client, viewer = dashboard
    page = client.get("/decisions", headers={"Authorization": f"Bearer {viewer}"}).text
    assert "no monitoring pass recorded for m" in page


def test_ui_help_and_its_one_line_errors(cli) -> None:
    helped = cli("ui", "--help")
    assert helped.code == 0
    assert "--service-url" in helped.out
    bad = cli("ui", "--service-url", "ftp://x")
    assert bad.code == 2
    assert bad.err.strip().splitlines() == [
        "error: invalid --service-url 'ftp://x': give an http:// or https:// URL"
    ]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = cli("ui", "--port", str(port))
    assert busy.code != 0
    assert busy.err.strip().splitlines() == [
        f"error: port {port} on 127.0.0.1 is already in use; choose another with --port"
    ]


class _Metrics(http.server.BaseHTTPRequestHandler):
    """A stand-in service's ``/metrics`` that remembers the credentials it was sent."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        body = METRICS.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def test_the_traffic_page_scrapes_the_service_with_the_viewers_own_token(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = tmp_path / "driftloop.toml"
        config.write_text('[auth]\nenabled = true\n[registry]\nmodel_name = "m"\n')
        settings = load_settings(config)
        db = open_metadata(settings.database_url)
        _, viewer = TokenStore(db).create("viewer", ["view"], created_by="t")
        db.dispose()
        app = build_app(settings, service_url=f"http://127.0.0.1:{server.server_address[1]}")
        basic = "Basic " + base64.b64encode(f"me:{viewer}".encode()).decode()
        with TestClient(app) as client:
            data = client.get("/api/traffic", headers={"Authorization": basic}).json()
            page = client.get("/traffic", headers={"Authorization": basic}).text
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert _Metrics.seen == [f"Bearer {viewer}"] * 2  # as the service's gate reads it
    assert data["reachable"] is True
    assert data["refusals"] == {"invalid input": 6.0, "unauthenticated": 4.0}
    assert "serving v2; 100 requests since it started" in page
    assert page.count('class="chart"') == 3
