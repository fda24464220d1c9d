"""``serve`` and ``up`` warn once, loudly, when they listen beyond loopback with auth off; else silent."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest

from driftloop.cli._exposure import is_loopback

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.conftest import Result

WARNING = "WARNING: driftloop serve listens on {host} with auth off: anyone who can reach it can score"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """``driftloop serve`` up to uvicorn: what it would run uvicorn with (nothing binds, no model loads)."""
    import uvicorn

    from driftloop.serving import server

    runs: list[dict[str, Any]] = []
    monkeypatch.setattr(server, "build_app", lambda settings: object())
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append(options))
    return runs


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "serving.example.com"])
def test_serve_beyond_loopback_with_auth_off_warns_once(
    cli: Callable[..., Result], served: list[dict[str, Any]], host: str
) -> None:
    result = cli("serve", "--host", host)
    assert result.code == 0, result.err
    assert served[0]["host"] == host
    assert result.err.count("WARNING:") == 1
    assert WARNING.format(host=host) in " ".join(result.err.split())
    assert "[auth] enabled = true" in result.err


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_serve_on_loopback_is_silent(
    cli: Callable[..., Result], served: list[dict[str, Any]], host: str
) -> None:
    result = cli("serve", "--host", host)
    assert result.code == 0
    assert "WARNING" not in result.err


def test_serve_beyond_loopback_with_auth_on_is_silent(
    cli: Callable[..., Result], served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_AUTH__ENABLED", "true")
    result = cli("serve", "--host", "0.0.0.0")
    assert result.code == 0
    assert "WARNING" not in result.err


def test_the_warning_is_logged_too_where_logging_is_configured(
    cli: Callable[..., Result], served: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    # driftloop's logger has its own handler and does not propagate (driftloop.logs): listen on it.
    logging.getLogger("driftloop").addHandler(caplog.handler)  # the autouse fixture restores handlers
    result = cli("serve", "--host", "0.0.0.0")
    assert result.err.count("WARNING:") == 1
    [record] = [r for r in caplog.records if r.name == "driftloop.cli._exposure"]
    assert record.getMessage().startswith("driftloop serve listens on 0.0.0.0 with auth off")


def test_up_beyond_loopback_with_auth_off_warns_before_starting(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    from driftloop.cli import up

    started: list[list[str]] = []
    monkeypatch.setattr(up, "port_in_use", lambda host, port: False)
    monkeypatch.setattr(up, "_run", lambda st, specs, lock: started.append([s.name for s in specs]))
    result = cli("up", "--host", "0.0.0.0", "--no-scheduler")
    assert result.code == 0, result.err
    assert started == [[up.MLFLOW, up.SERVICE, up.DASHBOARD]]
    assert result.err.count("WARNING:") == 1
    assert (
        "driftloop up serves the prediction service and MLflow (registry writes) on 0.0.0.0 with auth off"
        in (" ".join(result.err.split()))
    )
    assert "WARNING" not in cli("up", "--host", "127.0.0.1", "--no-scheduler").err


def test_what_counts_as_loopback() -> None:
    assert [
        h for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST") if is_loopback(h)
    ] == [
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "[::1]",
        "localhost",
        "LOCALHOST",
    ]
    assert not any(
        is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "myhost", "localhost.example.com", "")
    )
