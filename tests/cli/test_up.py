"""``driftloop up``: the real services started, found, refused twice, stopped by Ctrl-C with no orphans;
and its one-line errors."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import psutil  # a dependency of dvc, hence always installed
import pytest

from driftloop.cli._state import CliState
from driftloop.cli.up import MLFLOW, SCHEDULER, SERVICE, _mlflow_env, _mlflow_security, _specs
from driftloop.runtime.processes import InstanceLock
from tests.conftest import free_port, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.conftest import Result

START_TIMEOUT_S = 150  # a fresh home: MLflow migrates its SQLite store, the service imports torch + MLflow


def alive(pid: int) -> bool:
    """Running: a zombie (exited, waiting for init to reap it) is not."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


class Up:
    """A ``driftloop up`` process with its output in files, and every process it started remembered."""

    def __init__(self, directory: Path, env: dict[str, str], *args: str) -> None:
        self.out, self.err = directory / "up.out", directory / "up.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "driftloop", "up", *args],
                cwd=directory,
                env=env,
                stdout=out,
                stderr=err,
            )
        self.descendants: list[int] = []

    def wait_until_up(self) -> str:
        def up() -> bool:
            assert self.proc.poll() is None, f"up exited {self.proc.returncode}: {self.err.read_text()}"
            return "Ctrl-C stops everything" in self.out.read_text()

        wait_for(up, START_TIMEOUT_S, "driftloop up to print its URLs")
        self.descendants = [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        return self.out.read_text()

    def kill_everything(self) -> None:
        """Cleanup after a failed test: nothing may outlive it."""
        for pid in [self.proc.pid, *self.descendants]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    # The autouse fixture already dropped any DRIFTLOOP_* of the caller; the home is this test's own.
    return {**os.environ, "DRIFTLOOP_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def up_process(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[..., Up]]:
    started: list[Up] = []

    def start(*args: str) -> Up:
        started.append(Up(tmp_path, env, *args))
        return started[-1]

    yield start
    for up in started:
        up.kill_everything()


@pytest.mark.slow
def test_up_serves_refuses_a_second_up_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path, env: dict[str, str], up_process: Callable[..., Up]
) -> None:
    port, mlflow_port = free_port(), free_port()
    ui_port = free_port()
    up = up_process("--port", str(port), "--mlflow-port", str(mlflow_port), "--ui-port", str(ui_port))
    out = up.wait_until_up()
    mlflow, service = f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{port}"
    dashboard = f"http://127.0.0.1:{ui_port}"
    assert re.search(rf"dashboard\s*│\s*{re.escape(dashboard)}\s", out), out
    assert get(f"{dashboard}/health") == (200, '{"status":"ok"}')
    status, page = get(f"{dashboard}/decisions")
    assert status == 200
    assert "no monitoring pass recorded" in page
    assert re.search(rf"MLflow UI\s*│\s*{re.escape(mlflow)}\s", out), out
    assert re.search(rf"prediction service\s*│\s*{re.escape(service)}\s", out), out
    assert f"{service}/docs" in out
    scheduler = re.search(r"scheduler\s*│\s*running \(pid (\d+)\)", out)
    assert scheduler is not None, out
    assert int(scheduler.group(1)) in up.descendants
    assert f"logs: {tmp_path / 'home' / 'logs' / 'up'}\n" in out

    assert get(f"{mlflow}/health")[0] == 200
    # /health is exempt from MLflow's Host-header check; the UI page and its API are not.
    status, page = get(f"{mlflow}/")
    assert status == 200
    assert "<html" in page.lower()
    assert get(f"{mlflow}/ajax-api/2.0/mlflow/experiments/search?max_results=1")[0] == 200
    assert get(f"{service}/health") == (200, '{"status":"alive"}')
    assert get(f"{service}/ready")[0] == 503  # no production model yet: the service runs and says so
    # MLflow's server, its uvicorn, the prediction service, the scheduler (at least).
    assert len(up.descendants) >= 4

    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "driftloop",
            "up",
            "--no-scheduler",
            "--port",
            str(free_port()),
            "--mlflow-port",
            str(free_port()),
            "--ui-port",
            str(free_port()),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 1
    assert second.stderr.splitlines() == [
        f"error: driftloop up is already running here (pid {up.proc.pid}, since "
        + second.stderr.split("since ", 1)[1].split(")", 1)[0]
        + f"): URLs MLflow UI {mlflow}, prediction service {service}, dashboard {dashboard}"
    ]
    # Another home on the same ports: the lock is free there, the ports are not.
    same_ports = ("--port", str(port), "--mlflow-port", str(mlflow_port), "--ui-port", str(ui_port))
    elsewhere = subprocess.run(
        [sys.executable, "-m", "driftloop", "up", *same_ports],
        cwd=tmp_path,
        env={**env, "DRIFTLOOP_HOME": str(tmp_path / "other")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert elsewhere.returncode == 1
    assert elsewhere.stderr.splitlines() == [
        f"error: port {mlflow_port} on 127.0.0.1 (MLflow server) is already in use; choose another "
        "with --mlflow-port"
    ]

    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(timeout=60) == 0, up.err.read_text()
    err = up.err.read_text()
    order = [
        "stopped the scheduler",
        "stopped the dashboard",
        "stopped the prediction service",
        "stopped the MLflow server",
    ]
    assert sorted(order, key=err.index) == order, err
    assert [pid for pid in up.descendants if alive(pid)] == []
    lock = InstanceLock(tmp_path / "home" / "up.lock")
    lock.acquire()  # released on the way out
    lock.release()


@pytest.mark.slow
def test_a_service_that_cannot_start_stops_the_rest_with_one_line(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store MLflow cannot open: its server exits while starting, before anything else is started.
    monkeypatch.setenv("DRIFTLOOP_TRACKING__URI", "bogus://nowhere")
    ports = ("--port", str(free_port()), "--mlflow-port", str(free_port()), "--ui-port", str(free_port()))
    result = cli("up", "--no-scheduler", *ports)
    assert result.code == 1
    [line] = result.err.strip().splitlines()
    assert re.match(
        r"error: MLflow server \(pid \d+\) exited with code 1: .+'bogus://nowhere'.+ \(log: .+\.log\)$", line
    )
    assert "prediction service" not in result.err


def test_a_busy_port_is_one_line_naming_it(cli: Callable[..., Result]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli(
            "up", "--port", str(port), "--mlflow-port", str(free_port()), "--ui-port", str(free_port())
        )
    assert result.code == 1
    assert result.err.splitlines() == [
        f"error: port {port} on 127.0.0.1 (prediction service) is already in use; choose another with --port"
    ]


def test_a_running_up_in_the_same_home_is_named(cli: Callable[..., Result], tmp_path: Path) -> None:
    holder = InstanceLock(tmp_path / ".driftloop" / "up.lock")
    holder.acquire()
    holder.update({"MLflow UI": "http://127.0.0.1:5000"})
    try:
        result = cli("up")
    finally:
        holder.release()
    assert result.code == 1
    assert re.fullmatch(
        rf"error: driftloop up is already running here \(pid {os.getpid()}, since \S+\): "
        r"URLs MLflow UI http://127\.0\.0\.1:5000\n",
        result.err,
    )


def test_the_same_port_twice_is_a_usage_error(cli: Callable[..., Result]) -> None:
    result = cli("up", "--port", "5001", "--mlflow-port", "5001")
    assert result.code == 2
    assert result.err == "error: --port and --mlflow-port are both 5001: give them different ports\n"


def test_up_is_a_listed_verb(cli: Callable[..., Result]) -> None:
    assert re.search(
        r"│ up\s+Start MLflow \(UI\), the prediction service, the dashboard and the",
        cli("--help").out,
    )


def test_the_commands_it_runs(tmp_path: Path) -> None:
    (tmp_path / "driftloop.toml").write_text("[serving]\nport = 9001\n")
    st = CliState(config=Path("driftloop.toml"), debug=True)
    specs = _specs(st, "0.0.0.0", 9001, 5005, external_mlflow=False, no_scheduler=False)
    assert [s.name for s in specs] == [MLFLOW, SERVICE, SCHEDULER]
    mlflow, service, scheduler = specs
    home = st.settings.home
    assert mlflow.command[1:4] == ["-m", "mlflow", "server"]
    cmd = " ".join(mlflow.command)
    assert f"--backend-store-uri sqlite:///{home}/mlflow.db" in cmd
    assert f"--default-artifact-root {(home / 'mlflow').as_uri()} --no-serve-artifacts" in cmd
    assert "--host 0.0.0.0 --port 5005 --workers 1" in cmd
    assert mlflow.ready_url == "http://127.0.0.1:5005/health"  # a wildcard bind is probed on loopback
    driftloop = [sys.executable, "-m", "driftloop", "--config", str(tmp_path / "driftloop.toml"), "--debug"]
    assert service.command == [*driftloop, "serve", "--host", "0.0.0.0", "--port", "9001"]
    assert service.ready_url == "http://127.0.0.1:9001/health"
    assert (scheduler.command, scheduler.ready_url) == ([*driftloop, "scheduler"], None)
    # A tracking server elsewhere has its own UI: nothing to start for it.
    st = CliState()
    assert [s.name for s in _specs(st, "127.0.0.1", 1, 2, external_mlflow=True, no_scheduler=True)] == [
        SERVICE
    ]


def test_mlflow_env_carries_the_s3_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_STORAGE__S3__ENDPOINT_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("DRIFTLOOP_STORAGE__S3__ACCESS_KEY_ID", "key")
    monkeypatch.setenv("DRIFTLOOP_STORAGE__S3__SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", raising=False)
    env = _mlflow_env(CliState().settings)
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:9999"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("key", "secret")
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0.0.0.0", "192.168.1.20", "10.0.0.7", "::1"])
def test_hosts_mlflow_allows_by_default_need_no_flags(host: str) -> None:
    assert _mlflow_security(host, 5000) == []


def test_a_named_host_is_allowed_by_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_SERVER_ALLOWED_HOSTS", raising=False)
    assert _mlflow_security("ml.example.com", 5000) == [
        "--allowed-hosts",
        "ml.example.com,ml.example.com:5000,localhost,localhost:*,127.0.0.1,127.0.0.1:*",
        "--cors-allowed-origins",
        "http://ml.example.com:5000",
    ]
    monkeypatch.setenv("MLFLOW_SERVER_ALLOWED_HOSTS", "*.example.com")  # the user's own choice wins
    assert _mlflow_security("ml.example.com", 5000) == []
