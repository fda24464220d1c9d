"""compose.yaml for a team's single host, checked without an engine: every service is complete, every
driftloop command is a real verb, every file it mounts exists, every secret comes from .env, and the
configuration files it mounts load as driftloop and MLflow read them."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from driftloop.cli.main import main
from driftloop.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "compose.yaml"
ENV_EXAMPLE = REPO / "deploy" / "compose" / "env.example"
DRIFTLOOP_SERVICES = {"serve", "scheduler"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::([?-])([^}]*))?\}")


def _example_env() -> dict[str, str]:
    lines = (line.strip() for line in ENV_EXAMPLE.read_text().splitlines())
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def _interpolated(text: str, env: dict[str, str]) -> str:
    """Compose's variable syntax, as far as compose.yaml uses it: ${X:?message}, ${X:-default}, $$."""

    def value(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if name in env:
            return env[name]
        assert kind == "-", f"${{{name}}} is required but env.example does not set it"
        return rest

    return _VARIABLE.sub(value, text).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(_interpolated(COMPOSE.read_text(), _example_env()))
    return loaded


def test_every_secret_comes_from_env_and_env_example_names_only_used_ones() -> None:
    used = {m.group(1) for m in _VARIABLE.finditer(COMPOSE.read_text())}
    required = {m.group(1) for m in _VARIABLE.finditer(COMPOSE.read_text()) if m.group(2) == "?"}
    example = set(_example_env())
    assert required <= example, f"required but not in env.example: {required - example}"
    assert example <= used, f"in env.example but unused: {example - used}"
    raw = yaml.safe_load(COMPOSE.read_text())
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search("PASSWORD|SECRET|_KEY", key):
                assert _VARIABLE.fullmatch(str(value)), f"{name}: {key} is written out, not taken from .env"


def test_the_stack_has_every_part_and_each_service_is_complete(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "minio", "minio-init", "mlflow", "serve", "scheduler"}
    for name, service in services.items():
        assert service.get("image"), f"{name} has no image"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        assert "network_mode" not in service  # one project network; service names resolve in it
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).is_file(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} mounts undeclared volume {source}"
        for port in service.get("ports", []):
            if name != "serve":  # only the prediction service listens beyond the host's loopback
                assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    for name in DRIFTLOOP_SERVICES | {"mlflow"}:
        assert services[name]["build"] == "."  # this repository's Dockerfile
        assert services[name]["image"] == services["serve"]["image"]
    assert "condition" in services["serve"]["depends_on"]["mlflow"]


@pytest.mark.parametrize("service", sorted(DRIFTLOOP_SERVICES))
def test_driftloop_services_run_real_verbs_from_the_mounted_configuration(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = compose["services"][service]
    verb = spec["command"][0]
    with pytest.raises(SystemExit) as done:
        main([verb, "--help"])
    assert done.value.code in {0, None}, f"driftloop {verb} is not a command"
    capsys.readouterr()
    # The configuration file the container finds in its working directory, with compose's environment.
    mounts = dict(m.rsplit(":", 2)[:2] if m.endswith(":ro") else m.split(":", 1) for m in spec["volumes"])
    config = next(REPO / src for src, dst in mounts.items() if dst == f"{spec['working_dir']}/driftloop.toml")
    for key, value in spec["environment"].items():
        monkeypatch.setenv(key, str(value))
    settings = load_settings(cwd=config.parent)
    assert settings.config_file == config
    assert settings.home.is_absolute()
    assert "/home/driftloop" in {dst for dst in mounts.values()}  # home is on a volume the user owns
    assert settings.database_url.startswith("postgresql+psycopg://driftloop:")
    assert settings.storage_root == "s3://driftloop/root"
    assert settings.storage.s3.endpoint_url == "http://minio:9000"
    assert settings.tracking.uri == "http://mlflow:5000"
    assert settings.tracking.password is not None
    if service == "serve":
        assert settings.serving.host == "0.0.0.0"
        assert f"{settings.serving.port}:{settings.serving.port}" in spec["ports"]


def test_mlflow_runs_with_a_postgresql_store_s3_artifacts_and_basic_auth(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with warnings.catch_warnings():
        # Importing mlflow.server loads starlette's deprecated WSGI middleware: MLflow's, not ours.
        warnings.simplefilter("ignore")
        from mlflow.server.auth.config import read_auth_config

    spec = compose["services"]["mlflow"]
    assert spec["entrypoint"] == ["mlflow"]
    assert spec["command"][0] == "server"
    options = dict(arg.removeprefix("--").split("=", 1) for arg in spec["command"][1:])
    usage = subprocess.run(
        [sys.executable, "-m", "mlflow", "server", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert {f"--{name}" for name in options} <= set(re.findall(r"--[a-z-]+", usage))
    assert sa.make_url(options["backend-store-uri"]).drivername == "postgresql+psycopg"
    assert options["artifacts-destination"].startswith("s3://mlflow/")
    assert options["app-name"] == "basic-auth"
    env = spec["environment"]
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    ini = next(m.split(":")[0] for m in spec["volumes"] if m.split(":")[1] == env["MLFLOW_AUTH_CONFIG_PATH"])
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(REPO / ini))
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", env["MLFLOW_AUTH_ADMIN_PASSWORD"])
    auth = read_auth_config()
    assert auth.admin_username == "admin"
    assert len(auth.admin_password or "") >= 12  # driftloop refuses a shorter MLflow password
    assert auth.database_uri.startswith("sqlite:////home/driftloop/")  # on the mlflow-auth volume
    assert "mlflow-auth:/home/driftloop" in spec["volumes"]
