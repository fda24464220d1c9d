"""Shared fixtures: isolated working directory, a real S3 HTTP endpoint (moto server), PostgreSQL."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from driftloop.cli.main import main
from driftloop.runtime.processes import free_port, wait_answering
from driftloop.settings import S3Settings
from driftloop.storage import ObjectStore, open_store
from tests.mlflow_state import SESSION_ENV, mlflow_state_kept
from tests.plant import Plant, build_plant, copy_plant
from tests.waiting import poll_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

POSTGRES_ENV = "DRIFTLOOP_TEST_POSTGRES_URL"
# Set by .ci/run: PostgreSQL tests must run there, so an unreachable server is a failure, not a skip.
POSTGRES_REQUIRED_ENV = "DRIFTLOOP_TEST_POSTGRES_REQUIRED"
# An MLflow server imports a lot and migrates its database; on a loaded 2-core machine that took > 90 s.
MLFLOW_START_TIMEOUT_S = 240
# How long a test waits for capture to settle (flush, release) before it fails. Waits end as soon as the
# condition holds, so this only bounds a failure; a 2-core machine under load ran these 5x slower than idle.
SETTLE_S = 60.0


class MotoServer:
    """A moto S3 server in its own process on 127.0.0.1, restartable on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_answering(f"{self.url}/moto-api/", 30)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds (never a bare sleep)."""
    if not poll_until(condition, timeout):
        pytest.fail(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own directory with no driftloop configuration leaking in."""
    for key in list(os.environ):
        if key.startswith("DRIFTLOOP_") and not key.startswith("DRIFTLOOP_TEST_"):
            monkeypatch.delenv(key)
    # Never let a test reach real AWS with someone's credentials.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _mlflow_state() -> Iterator[None]:
    """No test, nor a module fixture before it, leaves MLflow pointed at its own tracking store for the
    next test (see mlflow_state_kept): after each test the process is back to the session's start."""
    with mlflow_state_kept(restore=SESSION_ENV):
        yield


@pytest.fixture(autouse=True)
def _driftloop_logging() -> Iterator[None]:
    """Every in-process CLI call configures driftloop's logger (driftloop.logs: its own handler, not
    propagating to the root, where pytest captures logs); each test starts with it as it was."""
    logger = logging.getLogger("driftloop")
    level, propagate, handlers = logger.level, logger.propagate, list(logger.handlers)
    root = logging.getLogger()
    root_level, root_handlers = root.level, set(root.handlers)
    yield
    logger.setLevel(level)
    logger.propagate, logger.handlers = propagate, handlers
    for handler in [
        h for h in root.handlers if h not in root_handlers and type(h).__module__ == "driftloop.logs"
    ]:
        root.removeHandler(handler)
    root.setLevel(root_level)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_settings(moto_server: MotoServer) -> S3Settings:
    return S3Settings(
        endpoint_url=moto_server.url,
        access_key_id="testing",
        secret_access_key="testing",  # type: ignore[arg-type]  # pydantic coerces str to SecretStr
        region="us-east-1",
    )


@pytest.fixture
def s3_bucket(s3_settings: S3Settings) -> str:
    """A fresh, empty bucket on the moto server."""
    from driftloop.storage._s3 import make_client

    name = f"test-{uuid.uuid4().hex[:12]}"
    make_client(s3_settings).create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """The same store contract, once per backend."""
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    s3_settings = request.getfixturevalue("s3_settings")
    bucket = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/root", s3_settings)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server for metadata tests; skipped with a reason when not configured."""
    url = os.environ.get(POSTGRES_ENV)
    required = os.environ.get(POSTGRES_REQUIRED_ENV) == "1"
    if not url:
        if required:
            pytest.fail(f"{POSTGRES_REQUIRED_ENV}=1 but {POSTGRES_ENV} is not set")
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1/test)"
        )
    try:
        engine = sa.create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
    except sa.exc.OperationalError as exc:
        if required:
            pytest.fail(f"PostgreSQL at {POSTGRES_ENV} is unreachable: {exc.orig}")
        pytest.skip(f"PostgreSQL at {POSTGRES_ENV} is unreachable")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from metadata_url(request, tmp_path)


def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh metadata database for ``request.param`` ("sqlite" or "postgresql"), for ``db_url``
    fixtures (tests/registry overrides it to put its slow PostgreSQL variants in the slow lane)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.db'}"
        return
    with postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


@contextlib.contextmanager
def postgres_schema(base: str) -> Iterator[str]:
    """A fresh schema on ``base``'s server, as a URL whose search path is that schema; dropped on exit.
    Isolation without creating databases (one per test, or per module for a shared workspace)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``driftloop ARGS…`` in-process and return its exit code and output."""

    def run(*args: str) -> Result:
        with mlflow_state_kept(), pytest.raises(SystemExit) as info:
            main(list(args))
        captured = capsys.readouterr()
        code = info.value.code
        return Result(code=code if isinstance(code, int) else 1, out=captured.out, err=captured.err)

    return run


class MlflowServer:
    """A real ``mlflow server`` process on 127.0.0.1 (SQLite or PostgreSQL backend)."""

    def __init__(
        self, backend_uri: str, artifacts: str, log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.backend_uri = backend_uri
        self._args = ["--backend-store-uri", backend_uri, "--artifacts-destination", artifacts]
        self._env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})}
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = False
        self._use_port(free_port())

    def _use_port(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        """Start and wait until it answers. On the first start, a port another process took between
        ``free_port()`` and the bind (xdist workers and other jobs share the machine) is retried on a
        fresh one; a restart keeps its port, which its clients know."""
        for _ in range(3):
            if self._started_once():
                return
            assert self._proc is not None
            exited = self._proc.poll() is not None  # a port clash ends it at once; silence is not one
            self.stop()
            if self._started or not exited:
                break
            self._use_port(free_port())
        raise RuntimeError(f"mlflow server did not start; see {self._log}")

    def _started_once(self) -> bool:
        """One start: True once it answers; False when it exited or stayed silent for START_TIMEOUT_S."""
        command = [sys.executable, "-m", "mlflow", "server", *self._args, "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--workers", "1"]
        with self._log.open("ab") as fh:
            self._proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, env=self._env)
        deadline = time.monotonic() + MLFLOW_START_TIMEOUT_S
        while self._proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                wait_answering(f"{self.url}/health", 1)
                self._started = True
                return True
        return False

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One MLflow tracking server for the session: SQLite backend, artifacts proxied to a local directory."""
    root = tmp_path_factory.mktemp("mlflow")
    server = MlflowServer(f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts"), root / "server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def trained_plant(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Plant:
    """The session's trained plant (tests.plant): version 1 registered by a pipeline run, no stage.
    Read-only: a test that writes to the workspace or the registry takes a ``plant_copy``."""
    return build_plant(tmp_path_factory.mktemp("plant"), mlflow_server)


@pytest.fixture
def plant_copy(trained_plant: Plant, mlflow_server: MlflowServer, tmp_path: Path) -> Callable[..., Plant]:
    """``plant_copy(config="", production=False)``: a private copy of the trained plant for this test."""
    count = iter(range(1000))

    def make(config: str = "", *, production: bool = False) -> Plant:
        directory = tmp_path / f"plant-{next(count)}"
        return copy_plant(trained_plant, directory, mlflow_server, config, production=production)

    return make
