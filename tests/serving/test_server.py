"""A real `driftloop serve` process on a port: hot swap under load, kill -9 under load, MLflow formats."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from driftloop.settings import load_settings
from driftloop.storage import store_for
from tests.conftest import free_port
from tests.registry.conftest import POLICY, TRAINING
from tests.serving.fakes import plant_rows
from tests.workspace import Workspace, make_workspace

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import MlflowServer


class Server:
    """``driftloop serve`` in its own process, restartable."""

    def __init__(self, ws: Workspace, port: int, *args: str) -> None:
        self.ws = ws
        self.args = args
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.ws.directory / "serve.log").open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "driftloop", "serve", "--port", self.url.rsplit(":", 1)[1],
                 *self.args],
                cwd=self.ws.directory, env=self.ws.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, (self.ws.directory / "serve.log").read_text()[-3000:]
            time.sleep(0.2)
        raise AssertionError(
            "the service did not become ready: " + (self.ws.directory / "serve.log").read_text()[-3000:]
        )

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def production(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A clean checkout whose model has version 1 in Production."""
    serving = "[serving]\npoll_interval_s = 0.5\n"
    ws = make_workspace(
        tmp_path_factory.mktemp("serve"), mlflow_server, TRAINING + POLICY + serving, git=True
    )
    ws.ok("simulate", "--start", "2026-01-01", "--days", "6", "--rows-per-day", "2000", "--seed", "5")
    ws.ok("pipeline", "run", "--as-of", "2026-01-10")
    ws.ok("promote", ws.name, "1", "--to", "staging")
    ws.ok("approve", ws.name, "1", "--by", "t", "--comment", "t")
    ws.ok("promote", ws.name, "1", "--to", "production")
    return ws


@pytest.fixture
def server(production: Workspace) -> Iterator[Server]:
    srv = Server(production, free_port())
    srv.start()
    yield srv
    srv.stop()


class Load:
    """Threads posting single-row predictions until stopped; every status and acknowledged id kept."""

    def __init__(self, url: str, threads: int = 4, *, reconnect: bool = False) -> None:
        self.url = url
        self.reconnect = reconnect  # a new connection per request (spreads them over workers)
        self.statuses: list[int] = []
        self.versions: set[int] = set()
        self.acked: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _run(self, seed: int) -> None:
        rows = plant_rows(200, seed=seed)
        headers = {"connection": "close"} if self.reconnect else {}
        with httpx.Client(timeout=10, headers=headers) as client:
            i = 0
            while not self._stop.is_set():
                try:
                    response = client.post(
                        f"{self.url}/v1/predict", json={"instances": [rows[i % len(rows)]]}
                    )
                except httpx.HTTPError as exc:
                    self.errors.append(type(exc).__name__)
                    continue
                self.statuses.append(response.status_code)
                if response.status_code == 200:
                    body: dict[str, Any] = response.json()
                    self.versions.add(body["model"]["version"])
                    self.acked.extend(p["id"] for p in body["predictions"])
                i += 1


def test_hot_swap_under_load_fails_no_request(production: Workspace, server: Server) -> None:
    ws = production
    fv = ws.ok("models", "show", f"{ws.name}/1").split("feature version ", 1)[1].split()[0]
    with Load(server.url) as load:
        time.sleep(1)
        out = ws.ok("train", "--features", fv, "--register", "--set", "seed=8")
        version = out.split(f"registered {ws.name}/", 1)[1].split()[0]
        ws.ok("promote", ws.name, version, "--to", "staging")
        ws.ok("approve", ws.name, version, "--by", "t", "--comment", "t")
        done = ws.run("promote", ws.name, version, "--to", "production",
                      extra_env={"DRIFTLOOP_POLICY__COMPARISON_MARGIN": "1"})  # fmt: skip
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.url}/v1/model").json()["current"]["version"] != int(version):
            assert time.monotonic() < deadline, "the service did not swap"
            time.sleep(0.2)
        time.sleep(1)
    assert load.errors == []
    assert len(load.statuses) > 50
    assert set(load.statuses) == {200}
    assert load.versions == {1, int(version)}
    info = httpx.get(f"{server.url}/v1/model").json()
    assert info["fallback"]["version"] == 1
    assert (
        f'driftloop_model_version{{model="{ws.name}"}} {float(version)}'
        in httpx.get(f"{server.url}/metrics").text
    )


def test_kill_9_under_load_loses_no_acknowledged_prediction(production: Workspace, server: Server) -> None:
    from driftloop.capture import read_captures

    with Load(server.url) as load:
        time.sleep(2)
        server.kill9()
    acked = set(load.acked)
    assert len(acked) > 20
    server.start()  # recovers the write-ahead log and ships it
    store = store_for(load_settings(cwd=production.directory))
    deadline = time.monotonic() + 60
    while True:
        shipped = set(read_captures(store, kind="prediction").column("prediction_id").to_pylist())
        if acked <= shipped or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert acked - shipped == set()


def test_mlflow_clients_format_on_the_real_server(server: Server) -> None:
    import pandas as pd
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    rows = plant_rows(3, seed=4)
    columns = list(rows[0])
    split = {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}}
    a = httpx.post(f"{server.url}/invocations", json=split).json()["predictions"]
    b = httpx.post(f"{server.url}/invocations", json={"dataframe_records": rows}).json()["predictions"]
    csv = pd.DataFrame(rows).to_csv(index=False)
    c = httpx.post(f"{server.url}/invocations", content=csv, headers={"content-type": "text/csv"})
    assert a == b == c.json()["predictions"]
    assert len(a) == 3
    client = ScoringServerClient("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    client.wait_server_ready(timeout=30)
    assert client.invoke(pd.DataFrame(rows)).get_predictions()[0].tolist() == a
    bad = httpx.post(f"{server.url}/invocations", json={"dataframe_records": [{**rows[0], "torque_nm": "x"}]})
    assert bad.status_code == 400
    assert bad.json()["error_code"] == "BAD_REQUEST"
    assert bad.json()["detail"][0]["loc"] == ["instances", 0, "torque_nm"]


def test_workers_each_capture_through_their_own_wal(production: Workspace) -> None:
    from driftloop.capture import read_captures

    settings = load_settings(cwd=production.directory)
    server = Server(production, free_port(), "--workers", "2")
    server.start()
    try:
        with Load(server.url, threads=6, reconnect=True) as load:
            time.sleep(3)
        wal = settings.capture_wal_dir
        assert (wal / "lock").exists()
        assert (wal / "worker-1" / "lock").exists()  # the second worker took the second slot
    finally:
        server.stop()  # graceful: each worker ships its WAL before it exits
    assert load.errors == []
    assert set(load.statuses) == {200}
    shipped = read_captures(store_for(settings), kind="prediction")
    assert set(load.acked) <= set(shipped.column("prediction_id").to_pylist())
    keys = [info.key for info in store_for(settings).list("captures/model=")]
    writers = {key.rsplit("/", 1)[1].split("-seg-")[0] for key in keys}
    assert len(writers) >= 2  # both workers' WALs shipped under their own writer ids


CLOSE = {"connection": "close"}  # a new connection per request: spread over the workers


def test_feedback_on_the_real_server_any_worker_and_after_a_restart(production: Workspace) -> None:
    """Ids are checked without a lookup: a label may reach another worker than its prediction did, or
    the service after a restart; labels are checked against the served model's label set (its run's
    ``driftloop.task``: classification), and every refusal is a JSON 4xx."""
    from driftloop.capture import read_captures

    settings = load_settings(cwd=production.directory)
    server = Server(production, free_port(), "--workers", "2")
    server.start()
    try:
        ids = []
        for seed in range(12):  # a connection each: spread over both workers
            body = {"instances": plant_rows(2, seed=seed)}
            answer = httpx.post(f"{server.url}/v1/predict", json=body, headers=CLOSE, timeout=30)
            ids += [p["id"] for p in answer.json()["predictions"]]
        server.stop()
        server.start()
        for i, pid in enumerate(ids):
            body = {"labels": [{"prediction_id": pid, "label": i % 2}]}
            response = httpx.post(f"{server.url}/v1/feedback", json=body, headers=CLOSE, timeout=30)
            assert response.status_code == 200, response.text
        refusals = [
            ([{"prediction_id": ids[0], "label": 7}], "category"),
            ([{"prediction_id": "", "label": 1}], "format"),
            ([{"prediction_id": "0" * 48, "label": 1}], "unknown_id"),
        ]
        for labels, kind in refusals:
            response = httpx.post(f"{server.url}/v1/feedback", json={"labels": labels}, timeout=30)
            assert response.status_code == 422, response.text
            assert response.json()["detail"][0]["type"] == kind
    finally:
        server.stop()
    feedback = read_captures(store_for(settings), kind="feedback").to_pylist()
    assert sorted(r["prediction_id"] for r in feedback) == sorted(ids)
    assert {r["source"] for r in feedback} == {"api"}
