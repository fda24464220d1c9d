"""A real `driftloop serve` process on a port: hot swap under load, kill -9 under load, MLflow formats."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from driftloop.settings import load_settings
from driftloop.storage import store_for
from tests.conftest import SETTLE_S, free_port, wait_for
from tests.plant import Plant, copy_plant
from tests.serving.fakes import plant_rows

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.conftest import MlflowServer
    from tests.workspace import Workspace


class Server:
    """``driftloop serve`` in its own process, restartable."""

    def __init__(self, ws: Workspace, port: int, *args: str, env: dict[str, str] | None = None) -> None:
        self.ws = ws
        self.args = args
        self.env = {**ws.env, **(env or {})}
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.ws.directory / "serve.log").open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "driftloop",
                    "serve",
                    "--port",
                    self.url.rsplit(":", 1)[1],
                    *self.args,
                ],
                cwd=self.ws.directory,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
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
def production(
    trained_plant: Plant, mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Workspace:
    """A clean checkout whose model has version 1 in Production: a copy of the session's trained plant."""
    directory = tmp_path_factory.mktemp("serve") / "plant"
    return copy_plant(
        trained_plant, directory, mlflow_server, "[serving]\npoll_interval_s = 0.5\n", production=True
    )


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
        wait_for(lambda: len(load.acked) >= 20, 60, "traffic before the swap")
        out = ws.ok("train", "--features", fv, "--register", "--set", "seed=8")
        version = out.split(f"registered {ws.name}/", 1)[1].split()[0]
        ws.ok("promote", ws.name, version, "--to", "staging")
        ws.ok("approve", ws.name, version, "--by", "t", "--comment", "t")
        done = ws.run(
            "promote",
            ws.name,
            version,
            "--to",
            "production",
            extra_env={"DRIFTLOOP_POLICY__COMPARISON_MARGIN": "1"},
        )
        assert done.returncode == 0, done.stderr
        wait_for(lambda: int(version) in load.versions, 60, "answers from the new version")
        swapped = len(load.acked)
        wait_for(lambda: len(load.acked) >= swapped + 20, 60, "traffic after the swap")
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
        wait_for(lambda: len(load.acked) >= 50, 60, "acknowledged predictions")
        server.kill9()
    acked = set(load.acked)
    assert len(acked) > 20
    server.start()  # recovers the write-ahead log and ships it
    store = store_for(load_settings(cwd=production.directory))

    def shipped() -> set[str]:
        return set(read_captures(store, kind="prediction").column("prediction_id").to_pylist())

    wait_for(lambda: acked <= shipped(), 60, "the recovered WAL to be shipped")
    assert acked - shipped() == set()


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
    wal = settings.capture_wal_dir
    slot = wal / "worker-1"
    before = {p: p.stat().st_size for p in slot.glob("seg-*.wal")}  # left by another test, if any
    server = Server(production, free_port(), "--workers", "2")
    server.start()  # ready once one worker answers; the other may still be loading its model

    def second_worker_captured() -> bool:
        # The second worker took the second slot and has written captures there (a WAL segment).
        return any(p.stat().st_size > before.get(p, 0) for p in slot.glob("seg-*.wal"))

    try:
        with Load(server.url, threads=6, reconnect=True) as load:
            wait_for(second_worker_captured, 120, "the second worker to capture a prediction")
        assert (wal / "lock").exists()
    finally:
        server.stop()  # graceful: each worker ships its WAL before it exits
    assert load.errors == []
    assert set(load.statuses) == {200}
    shipped = read_captures(store_for(settings), kind="prediction")
    assert set(load.acked) <= set(shipped.column("prediction_id").to_pylist())
    keys = [
        info.key
        for prefix in ("captures/model=", "captures/_landing/")
        for info in store_for(settings).list(prefix)
    ]
    writers = {key.rsplit("/", 1)[1].split("-seg-")[0] for key in keys}
    assert len(writers) >= 2  # both workers' WALs shipped under their own writer ids


def _scrape(url: str, name: str, **labels: str) -> list[float]:
    """The values of the samples ``name`` with ``labels`` in one ``GET /metrics`` on a new connection
    (so with several workers, whichever takes it answers)."""
    text = httpx.get(f"{url}/metrics", headers={"connection": "close"}, timeout=30).text
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]


@pytest.mark.slow  # two workers loading the model, then a clean stop that ships and compacts: 41 s here
def test_workers_answer_metrics_for_all_of_them(production: Workspace) -> None:
    from tests.captured import predictions_by_writer

    server = Server(production, free_port(), "--workers", "2")
    server.start()
    predict = {"path": "/v1/predict"}
    try:
        # The model version is the one gauge kept per worker (a pid label): both are up and publishing.
        wait_for(
            lambda: len(_scrape(server.url, "driftloop_model_version")) == 2,
            SETTLE_S,
            "both workers to publish their metrics",
        )
        ids: list[str] = []
        # A new connection per request, so the workers share them.
        with httpx.Client(timeout=30, headers={"connection": "close"}) as client:
            for row in plant_rows(60, seed=3):
                response = client.post(f"{server.url}/v1/predict", json={"instances": [row]})
                assert response.status_code == 200, response.text
                ids.extend(p["id"] for p in response.json()["predictions"])
        sent = len(ids)

        def predicted() -> float:
            return sum(_scrape(server.url, "driftloop_requests_total", status="200", **predict))

        # Another worker's requests reach a scrape once it has published them (every second).
        wait_for(lambda: predicted() == sent, SETTLE_S, f"/metrics to count all {sent} predictions")
        assert [predicted() for _ in range(8)] == [sent] * 8  # whichever worker answers
        assert _scrape(server.url, "driftloop_request_seconds_count", **predict) == [sent]
    finally:
        server.stop()  # graceful: each worker ships and compacts its captures
    # Both workers answered some of them, so neither one's own count could have been the total.
    by_writer = predictions_by_writer(store_for(load_settings(cwd=production.directory)), production.name)
    answered = {writer: len(found & set(ids)) for writer, found in by_writer.items() if found & set(ids)}
    assert len(answered) == 2, answered
    assert sum(answered.values()) == sent


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_answers_what_is_in_flight_ships_the_captures_and_exits_0(
    production: Workspace, workers: str
) -> None:
    from driftloop.capture import read_captures

    server = Server(production, free_port(), "--workers", workers)
    server.start()
    assert server.proc is not None
    with Load(server.url, threads=4, reconnect=workers == "2") as load:
        wait_for(lambda: len(load.acked) >= 50, 30, "traffic")
        server.proc.send_signal(signal.SIGTERM)  # while requests are in flight
        code = server.proc.wait(timeout=60)
    log = (production.directory / "serve.log").read_text()
    assert code == 0, log[-3000:]  # was -15: uvicorn re-raised SIGTERM once it had shut down
    assert "Traceback" not in log
    assert len(load.statuses) >= 50
    assert set(load.statuses) == {200}  # every answer sent was a whole one
    shipped = read_captures(store_for(load_settings(cwd=production.directory)), kind="prediction")
    assert set(load.acked) <= set(shipped.column("prediction_id").to_pylist())  # shipped before it exited


def _metric(url: str, name: str) -> float:
    return float(httpx.get(f"{url}/metrics").text.split(f"\n{name} ")[1].split(maxsplit=1)[0])


def _wait(condition: Callable[[], bool], deadline: float, why: Callable[[], str]) -> None:
    while not condition():
        assert time.monotonic() < deadline, why()
        time.sleep(0.1)


def test_an_s3_outage_under_traffic_is_one_warning_one_recovery_line_a_metric_and_no_lost_capture(
    production: Workspace,
) -> None:
    from driftloop.capture import read_captures
    from driftloop.settings import S3Settings
    from driftloop.storage import open_store
    from driftloop.storage._s3 import make_client
    from tests.conftest import MotoServer

    moto = MotoServer()  # its own: stopping it must not disturb other tests' buckets
    moto.start()
    try:
        s3 = S3Settings(endpoint_url=moto.url, access_key_id="testing", secret_access_key="testing")  # type: ignore[arg-type]
        bucket = f"serve-{uuid.uuid4().hex[:12]}"
        make_client(s3).create_bucket(Bucket=bucket)
        env = {
            "DRIFTLOOP_STORAGE__ROOT": f"s3://{bucket}/root",
            "DRIFTLOOP_STORAGE__S3__ENDPOINT_URL": moto.url,
            "DRIFTLOOP_STORAGE__S3__ACCESS_KEY_ID": "testing",
            "DRIFTLOOP_STORAGE__S3__SECRET_ACCESS_KEY": "x",
            "DRIFTLOOP_STORAGE__S3__MAX_ATTEMPTS": "1",
            "DRIFTLOOP_CAPTURE__SEGMENT_MAX_AGE_S": "0.5",
            "DRIFTLOOP_CAPTURE__RETRY_INITIAL_S": "0.1",
            "DRIFTLOOP_CAPTURE__RETRY_MAX_S": "0.5",
        }
        log_file = production.directory / "serve.log"
        start = log_file.stat().st_size if log_file.exists() else 0
        server = Server(production, free_port(), env=env)
        server.start()
        url, deadline = server.url, time.monotonic() + 120

        def log() -> str:
            return log_file.read_text()[start:]

        try:
            with Load(url) as load:
                _wait(lambda: _metric(url, "driftloop_capture_shipped_records") >= 20, deadline, log)
                moto.stop()  # under traffic: retried every 0.1-0.5 s, dozens of failures
                _wait(lambda: _metric(url, "driftloop_capture_ship_failures") >= 10, deadline, log)
                during = len(load.acked)  # acknowledged from here on while S3 is certainly down
                _wait(lambda: len(load.acked) >= during + 50, deadline, log)
                assert _metric(url, "driftloop_capture_store_reachable") == 0
                assert _metric(url, "driftloop_capture_store_outages") == 1
                moto.start()
                # moto keeps buckets in memory: a restart empties it
                make_client(s3).create_bucket(Bucket=bucket)
                _wait(lambda: "reachable again" in log(), deadline, log)
            assert _metric(url, "driftloop_capture_store_reachable") == 1
        finally:
            server.stop()
        assert set(load.statuses) == {200}  # the outage cost no request anything
        lines = log().splitlines()
        outage = [line for line in lines if "unreachable, buffering locally" in line]
        assert len(outage) == 1, lines  # one warning however many attempts failed
        assert " WARNING driftloop.capture.outage: capture: s3://" in outage[0]
        recovery = [line for line in lines if "reachable again after" in line]
        assert len(recovery) == 1, lines
        assert " INFO    driftloop.capture.outage: capture: s3://" in recovery[0]
        assert "buffered record(s) shipped" in recovery[0]
        # What was shipped before the outage went with moto's memory (it keeps buckets in memory); what
        # was acknowledged during the outage was buffered and shipped once S3 was back.
        shipped = read_captures(open_store(f"s3://{bucket}/root", s3), kind="prediction")
        assert set(load.acked[during:]) <= set(shipped.column("prediction_id").to_pylist())
    finally:
        moto.stop()


def test_a_real_service_with_auth_on_checks_tokens_roles_rates_and_revocation(production: Workspace) -> None:
    from driftloop.capture import read_captures

    ws = production
    root = ws.ok("auth", "create", "ops", "--role", "admin").strip()  # the bootstrap: no admin yet
    as_admin = {"DRIFTLOOP_TOKEN": root}
    scorer = ws.run("auth", "create", "scorer", "--role", "predict", extra_env=as_admin).stdout.strip()
    labeller = ws.run("auth", "create", "labeller", "--role", "label", extra_env=as_admin).stdout.strip()
    auth = {
        "DRIFTLOOP_AUTH__ENABLED": "true",
        "DRIFTLOOP_AUTH__CACHE_S": "1",
        "DRIFTLOOP_AUTH__ROLE_RATE_LIMITS__LABEL__PER_SECOND": "0.01",
        "DRIFTLOOP_AUTH__ROLE_RATE_LIMITS__LABEL__BURST": "2",
    }
    server = Server(ws, free_port(), env=auth)
    server.start()  # /ready stays open for probes
    try:
        rows = {"instances": plant_rows(1, seed=11)}
        predict = f"{server.url}/v1/predict"
        missing = httpx.post(predict, json=rows)
        assert (missing.status_code, missing.headers["www-authenticate"]) == (401, 'Bearer realm="driftloop"')
        assert "missing credentials" in missing.json()["error"]
        assert httpx.post(predict, json=rows, headers=_bearer(labeller)).status_code == 403
        answered = httpx.post(predict, json=rows, headers=_bearer(scorer))
        assert answered.status_code == 200
        pid = answered.json()["predictions"][0]["id"]
        assert httpx.get(f"{server.url}/v1/model").status_code == 401
        assert httpx.get(f"{server.url}/v1/model", headers=_bearer(labeller)).status_code == 200  # view
        labels = {"labels": [{"prediction_id": pid, "label": 1}]}
        feedback = [
            httpx.post(f"{server.url}/v1/feedback", json=labels, headers=_bearer(labeller)) for _ in range(3)
        ]
        assert [r.status_code for r in feedback] == [200, 200, 429]
        assert feedback[2].headers["retry-after"] == "100"

        revoked = ws.run("auth", "revoke", "scorer", extra_env=as_admin)
        assert revoked.returncode == 0, revoked.stderr
        since = time.monotonic()
        revoked_token = _bearer(scorer)

        def refused() -> bool:
            return httpx.post(predict, json=rows, headers=revoked_token).status_code != 200

        wait_for(refused, 30, "the revoked token to be refused")
        # Refused within auth.cache_s of the revocation (plus a request's time on a busy host).
        assert time.monotonic() - since < 1 + 1.0
    finally:
        server.stop()  # graceful: ships the capture WAL
    sources = read_captures(store_for(load_settings(cwd=ws.directory)), kind="feedback").column("source")
    assert set(sources.to_pylist()) == {"labeller"}  # the identity that sent the labels


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


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
    # The module's workspace is shared: other tests' labels are there too. Each of ours, exactly once.
    ours = [r for r in feedback if r["prediction_id"] in set(ids)]
    assert sorted(r["prediction_id"] for r in ours) == sorted(ids)
    assert {r["source"] for r in ours} == {"api"}
