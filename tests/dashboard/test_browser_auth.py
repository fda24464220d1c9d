"""With auth on, a browser reads the dashboard by HTTP Basic with a viewer's token as the password (the
401 challenges for it), loads Plotly from the app itself, and logs no error; without the token the page
is refused."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest
import uvicorn

from driftloop.auth import TokenStore
from driftloop.dashboard import build_app
from driftloop.runtime.processes import free_port
from driftloop.settings import load_settings
from driftloop.storage.metadata import open_metadata
from tests.conftest import wait_for
from tests.dashboard.browser import chromium

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The dashboard with auth on, served by uvicorn on a free port, and a viewer's token."""
    (tmp_path / "driftloop.toml").write_text('[auth]\nenabled = true\n[registry]\nmodel_name = "m"\n')
    settings = load_settings(tmp_path / "driftloop.toml")
    db = open_metadata(settings.database_url)
    _, viewer = TokenStore(db).create("viewer", ["view"], created_by="t")
    db.dispose()
    port = free_port()
    app = build_app(settings, service_url=f"http://127.0.0.1:{free_port()}")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 30, "the dashboard to listen")
        yield f"127.0.0.1:{port}", viewer
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_a_browser_signs_in_with_the_token_as_basic_password(served: tuple[str, str]) -> None:
    site, viewer = served
    driver = chromium()
    try:
        driver.get(f"http://{site}/decisions")
        # The 401's Basic challenge: the browser asks for credentials (headless: an empty page), no page.
        assert driver.find_elements("tag name", "header") == []
        driver.get_log("browser")  # the refused page's own 401 is expected: start the log afresh
        driver.get(f"http://anyone:{viewer}@{site}/decisions")
        wait_for(lambda: driver.execute_script("return typeof Plotly") == "object", 30, "Plotly loaded")
        assert "signed in as viewer" in driver.find_element("tag name", "header").text
        assert "no monitoring pass recorded for m" in driver.find_element("tag name", "main").text
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()
