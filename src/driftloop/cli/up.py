"""``driftloop up``: the embedded platform in the foreground until Ctrl-C (docs/up.md).

Starts, one after another and each once the previous answers: the MLflow server with its UI (over the
same store the other commands use), the prediction service (``driftloop serve``) and the scheduler
(``driftloop scheduler``). Ctrl-C or SIGTERM stops them, last started first, and exits 0; a service that
fails to start or dies stops the rest and exits 1 with one line naming it. With ``auth.enabled`` the
MLflow server runs MLflow's basic-auth app (docs/auth.md), so its REST API and UI need a login.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import signal
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from driftloop.cli._exposure import port_in_use, warn_if_exposed
from driftloop.cli._state import state
from driftloop.errors import ConfigError, ConflictError, ServiceError, UsageError
from driftloop.runtime.processes import InstanceLock, ServiceSpec, Supervisor, reap_leftovers

if TYPE_CHECKING:
    from collections.abc import Iterator

    from driftloop.cli._state import CliState
    from driftloop.runtime.processes import Child, Stopped
    from driftloop.settings import Settings

__all__ = ["up"]

MLFLOW, SERVICE, SCHEDULER = "MLflow server", "prediction service", "scheduler"
DASHBOARD = "dashboard"
_OPTIONS = {SERVICE: "--port", MLFLOW: "--mlflow-port", DASHBOARD: "--ui-port"}  # what moves each port
# A first start migrates MLflow's SQLite store and imports torch + MLflow in the service: tens of seconds
# on a small host, so the deadline is generous; a crash is reported at once, not at the deadline.
_READY_TIMEOUT_S = 180.0
_GRACE_S = 15.0  # the service ships its capture buffer on SIGTERM; give it time before SIGKILL
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
# Host headers MLflow's security middleware accepts without --allowed-hosts: loopback and private IPv4.
_MLFLOW_DEFAULT_HOSTS = re.compile(
    r"^(localhost|127\.[\d.]+|::1|0\.0\.0\.0|::|10\.[\d.]+|192\.168\.[\d.]+"
    r"|172\.(1[6-9]|2\d|3[01])\.[\d.]+)$"
)


def up(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface every service binds."),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="Prediction service port (default: serving.port)."
    ),
    mlflow_port: int = typer.Option(5000, "--mlflow-port", min=1, max=65535, help="MLflow server (UI) port."),
    no_scheduler: bool = typer.Option(False, "--no-scheduler", help="Do not start the scheduler."),
    ui_port: int = typer.Option(8090, "--ui-port", min=1, max=65535, help="Dashboard (driftloop ui) port."),
) -> None:
    """Start MLflow (UI), the prediction service, the dashboard and the scheduler; Ctrl-C stops all."""
    st = state(ctx)
    settings = st.settings
    service_port = port or settings.serving.port
    # A tracking server configured elsewhere already has its UI; up starts MLflow only over a local store.
    external_mlflow = settings.tracking_uri.startswith(("http://", "https://"))
    ports = {SERVICE: service_port} if external_mlflow else {MLFLOW: mlflow_port, SERVICE: service_port}
    ports[DASHBOARD] = ui_port
    seen: dict[int, str] = {}
    for name in (n for n in _OPTIONS if n in ports):  # named in the order the options are listed
        number = ports[name]
        if number in seen:
            both = f"{_OPTIONS[seen[number]]} and {_OPTIONS[name]}"
            raise UsageError(f"{both} are both {number}: give them different ports")
        seen[number] = name
    warn_if_exposed(st, host, "driftloop up serves the prediction service and MLflow (registry writes)")
    lock = InstanceLock(settings.home / "up.lock")
    lock.acquire()  # before the port check: a second `up` here should hear about the first, not a port
    for pid in reap_leftovers(lock.previous):
        st.err.print(f"stopped pid {pid}, left running by a driftloop up that was killed")
    try:
        for name, number in ports.items():
            if port_in_use(host, number):
                option = _OPTIONS[name]
                raise ConflictError(
                    f"port {number} on {host} ({name}) is already in use; choose another with {option}"
                )
        specs = _specs(st, host, service_port, mlflow_port, external_mlflow, no_scheduler)
        _run(st, _with_dashboard(specs, st, host, ui_port), lock)
    finally:
        lock.release()


def _run(st: CliState, specs: list[ServiceSpec], lock: InstanceLock) -> None:
    settings = st.settings
    supervisor = Supervisor(settings.home / "logs" / "up", grace_s=_GRACE_S)
    started: dict[str, Child] = {}
    with _stop_on_signals(supervisor):
        try:
            for spec in specs:
                with st.err.status(f"starting the {spec.name}…"):
                    started[spec.name] = supervisor.start(spec, timeout_s=_READY_TIMEOUT_S)
                lock.update({}, supervisor.children)
                if supervisor.stop_requested:
                    break
                if spec.name == MLFLOW and settings.auth.enabled:
                    assert spec.ready_url is not None
                    _check_mlflow_login(settings, _site(spec.ready_url))
                st.err.print(f"{spec.name} is up (pid {started[spec.name].pid})")
            else:
                urls = {s.name: _site(s.ready_url) for s in specs if s.ready_url}
                lock.update(
                    {("MLflow UI" if k == MLFLOW else k): v for k, v in urls.items()}, supervisor.children
                )
                _print_table(st, specs, started, urls, supervisor.log_dir)
                supervisor.watch()
        finally:
            # After a ServiceError everything is stopped already and the error line says why; this is
            # for a stop request, and for a bug in this module, which must not leave children behind.
            stopped = supervisor.stop()
    _print_stopped(st, stopped)


@contextmanager
def _stop_on_signals(supervisor: Supervisor) -> Iterator[None]:
    """Ctrl-C and SIGTERM ask the supervisor to stop (a flag), instead of raising wherever we are."""

    def handler(signum: int, frame: object) -> None:
        supervisor.request_stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _specs(
    st: CliState, host: str, service_port: int, mlflow_port: int, external_mlflow: bool, no_scheduler: bool
) -> list[ServiceSpec]:
    settings = st.settings
    probe = _WILDCARDS.get(host, host)  # a wildcard bind is reached (and shown) through loopback
    specs = []
    if not external_mlflow:
        mlflow = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            settings.tracking_uri,
            # Experiments the UI creates get the same artifact root driftloop uses; no artifact proxy:
            # every embedded client reads and writes that root directly, and the UI reads it the same way.
            "--default-artifact-root",
            _as_uri(settings.artifact_root),
            "--no-serve-artifacts",
            "--host",
            host,
            "--port",
            str(mlflow_port),
            "--workers",
            "1",
            *_mlflow_security(host, mlflow_port),
        ]
        env = _mlflow_env(settings)
        if settings.auth.enabled:
            # MLflow's own login in front of its REST API and UI; /health stays open for the probe.
            mlflow += ["--app-name", "basic-auth"]
            env |= _mlflow_basic_auth(settings)
        url = f"http://{_url_host(probe)}:{mlflow_port}"
        specs.append(ServiceSpec(MLFLOW, mlflow, ready_url=f"{url}/health", env=env))
    # The children load the same configuration: the same file, and the environment they inherit.
    driftloop = [sys.executable, "-m", "driftloop"]
    if settings.config_file is not None:
        driftloop += ["--config", str(settings.config_file)]
    if st.debug:
        driftloop.append("--debug")
    serve = [*driftloop, "serve", "--host", host, "--port", str(service_port)]
    url = f"http://{_url_host(probe)}:{service_port}"
    specs.append(ServiceSpec(SERVICE, serve, ready_url=f"{url}/health"))
    if not no_scheduler:
        # No HTTP endpoint: ready once it has outlived its imports and configuration checks.
        specs.append(ServiceSpec(SCHEDULER, [*driftloop, "scheduler"], settle_s=1.0))
    return specs


def _with_dashboard(specs: list[ServiceSpec], st: CliState, host: str, ui_port: int) -> list[ServiceSpec]:
    """``specs`` with the dashboard (``driftloop ui``) after the prediction service it reads metrics of."""
    driftloop = [sys.executable, "-m", "driftloop"]
    if st.settings.config_file is not None:
        driftloop += ["--config", str(st.settings.config_file)]
    service = next(s for s in specs if s.name == SERVICE)
    assert service.ready_url is not None
    ui = [*driftloop, "ui", "--host", host, "--port", str(ui_port), "--service-url", _site(service.ready_url)]
    url = f"http://{_url_host(_WILDCARDS.get(host, host))}:{ui_port}"
    at = specs.index(service) + 1
    return [*specs[:at], ServiceSpec(DASHBOARD, ui, ready_url=f"{url}/health"), *specs[at:]]


def _mlflow_env(settings: Settings) -> dict[str, str]:
    """The environment of the MLflow server: ours, plus the S3 endpoint and credentials of
    ``storage.s3`` (configuration wins, as in ``tracking.configure_mlflow``) so the UI reads the
    artifacts where driftloop wrote them."""
    env = dict(os.environ)
    s3 = settings.storage.s3
    if s3.endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = s3.endpoint_url
    if s3.access_key_id and s3.secret_access_key:
        env["AWS_ACCESS_KEY_ID"] = s3.access_key_id
        env["AWS_SECRET_ACCESS_KEY"] = s3.secret_access_key.get_secret_value()
    env.setdefault("AWS_DEFAULT_REGION", s3.region)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow's job runner (GenAI judges, trace rollups) starts seven more processes driftloop never uses.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return env


def _mlflow_basic_auth(settings: Settings) -> dict[str, str]:
    """The environment of MLflow's basic-auth app: its configuration file (written under
    ``<home>/mlflow-auth/``, with its own user store there), the admin user ``tracking.username`` and,
    only in the environment, its password ``tracking.password``. MLflow creates that admin the first
    time it starts on an empty user store; afterwards the password is the store's (docs/auth.md)."""
    password = settings.tracking.password.get_secret_value() if settings.tracking.password else ""
    if len(password) < 12:
        raise ConfigError(
            "auth is on, so the MLflow server up starts needs a login: set tracking.password "
            "(DRIFTLOOP_TRACKING__PASSWORD, at least 12 characters) for the admin user tracking.username"
        )
    directory = settings.home / "mlflow-auth"
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{directory / 'users.db'}\n"
        f"admin_username = {settings.tracking.username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_USERNAME": settings.tracking.username,
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        # The app's CSRF protection needs a static key; one per start is enough for one server.
        "MLFLOW_FLASK_SERVER_SECRET_KEY": os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY")
        or secrets.token_hex(32),
    }


def _check_mlflow_login(settings: Settings, site: str) -> None:
    """Fail with one line when the started MLflow refuses tracking.username/password: its user store
    was created with another password, and every driftloop client of that server would be refused."""
    assert settings.tracking.password is not None
    user = settings.tracking.username
    login = base64.b64encode(f"{user}:{settings.tracking.password.get_secret_value()}".encode()).decode()
    request = urllib.request.Request(
        f"{site}/api/2.0/mlflow/experiments/search?max_results=1", headers={"Authorization": f"Basic {login}"}
    )
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30):
            return
    except urllib.error.HTTPError as exc:
        if exc.code not in (401, 403):
            raise ServiceError(f"the MLflow server at {site} answered {exc.code} to a login check") from None
    users = settings.home / "mlflow-auth" / "users.db"
    raise ConfigError(
        f"the MLflow server refuses user {user!r} with tracking.password: its users in {users} were "
        "created with another password; use that one, change it with MLflow's update-password API, or "
        "delete that file to start its users afresh"
    )


def _mlflow_security(host: str, port: int) -> list[str]:
    """MLflow ≥ 3.5 refuses Host headers outside loopback and private IPs (DNS-rebinding protection)
    and cross-origin writes outside localhost. A host given by name is how the UI will be reached, so
    allow it too — unless the user configured MLFLOW_SERVER_ALLOWED_HOSTS themselves."""
    if _MLFLOW_DEFAULT_HOSTS.match(host) or os.environ.get("MLFLOW_SERVER_ALLOWED_HOSTS"):
        return []
    name = _url_host(host)
    hosts = f"{name},{name}:{port},localhost,localhost:*,127.0.0.1,127.0.0.1:*"
    return ["--allowed-hosts", hosts, "--cors-allowed-origins", f"http://{name}:{port}"]


def _print_table(
    st: CliState, specs: list[ServiceSpec], started: dict[str, Child], urls: dict[str, str], logs: Path
) -> None:
    table = Table(title="driftloop is up", title_justify="left")
    table.add_column("service", no_wrap=True)
    table.add_column("where", overflow="fold")  # a URL too long for the width folds, never loses its end
    if MLFLOW not in urls:
        table.add_row("MLflow UI", f"{st.settings.tracking_uri} (external, not started here)")
    for spec in specs:
        if spec.name == MLFLOW:
            table.add_row("MLflow UI", urls[MLFLOW])
        elif spec.name == SERVICE:
            table.add_row(SERVICE, urls[SERVICE])
            table.add_row("  API docs", f"{urls[SERVICE]}/docs")
        elif spec.name == DASHBOARD:
            table.add_row(DASHBOARD, urls[DASHBOARD])
        else:
            table.add_row(spec.name, f"running (pid {started[spec.name].pid})")
    st.out.print(table)
    st.out.print(f"logs: {logs}")  # outside the table: a long path stays one copyable line
    st.out.print("Ctrl-C stops everything.")


def _print_stopped(st: CliState, stopped: list[Stopped]) -> None:
    for s in stopped:
        if s.killed:
            how = f"killed: still running {_GRACE_S:g} s after SIGTERM"
        elif s.returncode is not None and s.returncode < 0:
            how = f"ended by {signal.Signals(-s.returncode).name}"
        else:
            how = f"exit status {s.returncode}"
        st.err.print(f"stopped the {s.name} (pid {s.pid}, {how})")


def _site(ready_url: str) -> str:
    return ready_url.rsplit("/", 1)[0]


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _as_uri(root: str) -> str:
    return root if "://" in root else Path(root).resolve().as_uri()
