"""``driftloop up`` with auth on: MLflow runs its basic-auth app, so an anonymous REST call cannot move a
registry alias, while driftloop's own promote, sending ``tracking.username``/``password``, can."""

from __future__ import annotations

import base64
import json
import os
import signal
import urllib.error
import urllib.request
import uuid
from typing import TYPE_CHECKING

import pytest

from driftloop.cli.up import _mlflow_basic_auth
from driftloop.errors import ConfigError
from driftloop.settings import load_settings
from tests.cli.test_up import Up, get
from tests.conftest import free_port

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.conftest import Result

PASSWORD = "not-the-default-1"


def _rest(url: str, body: dict[str, object] | None = None, login: str | None = None) -> tuple[int, str]:
    """A REST call to MLflow as any HTTP client would make it (POST with ``body``, else GET)."""
    headers = {"content-type": "application/json"}
    if login is not None:
        headers["authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body else "GET")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


@pytest.mark.slow
def test_mlflow_refuses_an_anonymous_alias_move_and_driftloop_promotes_with_its_login(
    tmp_path: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = tmp_path / "platform"
    platform.mkdir()
    (platform / "driftloop.toml").write_text(f'[auth]\nenabled = true\n[tracking]\npassword = "{PASSWORD}"\n')
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    mlflow_port = free_port()
    up = Up(
        platform,
        env,
        *("--no-scheduler", "--port", str(free_port()), "--mlflow-port", str(mlflow_port)),
        *("--ui-port", str(free_port())),
    )
    try:
        up.wait_until_up()
        site = f"http://127.0.0.1:{mlflow_port}"
        assert get(f"{site}/health")[0] == 200  # the readiness probe needs no login

        # driftloop, configured with the login, registers and promotes through the server.
        name = f"guarded-{uuid.uuid4().hex[:8]}"
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.setenv(key, "")  # restored after the test: configure_mlflow sets them in-process
        monkeypatch.setenv("DRIFTLOOP_TRACKING__URI", site)
        monkeypatch.setenv("DRIFTLOOP_TRACKING__PASSWORD", PASSWORD)
        monkeypatch.setenv("DRIFTLOOP_POLICY__CHECKS", "[]")
        from mlflow.tracking import MlflowClient

        from driftloop.tracking import configure_mlflow

        configure_mlflow(load_settings())
        client = MlflowClient(site)
        run = client.create_run(client.create_experiment(f"exp-{name}"))
        client.create_registered_model(name)
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)

        alias = f"{site}/api/2.0/mlflow/registered-models/alias"
        move = {"name": name, "alias": "production", "version": "1"}
        status, text = _rest(alias, move)
        assert status == 401, text
        assert "You are not authenticated" in text
        assert _rest(alias, move, login=f"admin:{PASSWORD}x")[0] == 401
        assert "production" not in client.get_registered_model(name).aliases  # nothing moved

        promoted = cli("promote", name, "1", "--to", "staging", "--by", "ci")
        assert promoted.code == 0, promoted.err
        status, text = _rest(f"{alias}?name={name}&alias=staging", login=f"admin:{PASSWORD}")
        assert status == 200, text
        assert json.loads(text)["model_version"]["version"] == "1"

        monkeypatch.delenv("DRIFTLOOP_TRACKING__PASSWORD")  # without the login: refused, one line
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "")
        refused = cli("models", "list", name)
        assert refused.code == 1
        [line] = refused.err.splitlines()
        assert line.startswith("error: ")
        assert line == (
            f"error: cannot list versions of {name}: MLflow at {site} needs a login: set "
            "tracking.username and tracking.password (DRIFTLOOP_TRACKING__PASSWORD)"
        )
    finally:
        if up.proc.poll() is None:
            up.proc.send_signal(signal.SIGINT)
            up.proc.wait(timeout=60)
        up.kill_everything()
    assert (platform / ".driftloop" / "mlflow-auth" / "users.db").exists()  # MLflow's own user store
    assert PASSWORD not in (platform / ".driftloop" / "mlflow-auth" / "basic_auth.ini").read_text()


def test_auth_on_needs_a_password_of_twelve_characters_for_ups_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_AUTH__ENABLED", "true")
    with pytest.raises(
        ConfigError, match=r"needs a login: set tracking.password \(DRIFTLOOP_TRACKING__PASSWORD"
    ):
        _mlflow_basic_auth(load_settings())
    monkeypatch.setenv("DRIFTLOOP_TRACKING__PASSWORD", "short")
    with pytest.raises(ConfigError, match="at least 12 characters"):
        _mlflow_basic_auth(load_settings())
    monkeypatch.setenv("DRIFTLOOP_TRACKING__PASSWORD", PASSWORD)
    monkeypatch.setenv("DRIFTLOOP_TRACKING__USERNAME", "root")
    env = _mlflow_basic_auth(load_settings())
    assert (env["MLFLOW_AUTH_ADMIN_USERNAME"], env["MLFLOW_AUTH_ADMIN_PASSWORD"]) == ("root", PASSWORD)
    config = (tmp_path / ".driftloop" / "mlflow-auth" / "basic_auth.ini").read_text()
    assert "admin_username = root" in config
    assert f"database_uri = sqlite:///{tmp_path / '.driftloop' / 'mlflow-auth' / 'users.db'}" in config
