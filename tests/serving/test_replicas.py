"""Several replicas of the service over one PostgreSQL, one MLflow server and one S3
(docs/scaling-replicas.md): each follows the production alias on its own and converges on a promotion
within the poll interval, each captures through its own WAL to the shared store under its own writer
id, and `driftloop monitor` reads what all of them captured."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx
import pytest
from mlflow.tracking import MlflowClient

from driftloop.settings import load_settings
from driftloop.storage import open_store, store_for
from tests.captured import predictions_by_writer
from tests.conftest import SETTLE_S, free_port, postgres_schema, wait_for
from tests.serving.fakes import plant_rows
from tests.serving.test_server import Server
from tests.waiting import poll_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from driftloop.settings import S3Settings
    from tests.conftest import MlflowServer
    from tests.plant import Plant

POLL_S = 2.0  # serving.poll_interval_s of every replica
# A replica swaps at its first poll after the promotion, once it has loaded the new version from MLflow
# (and exported it to ONNX): seconds on an idle machine, more on a loaded 2-core one.
LOAD_MARGIN_S = 30.0
SENT = (17, 23, 29)  # predictions sent to each replica: distinct, so a mixed-up count shows


def _config(database: str, bucket: str, s3: S3Settings) -> str:
    return (
        f'[database]\nurl = "{database}"\n'
        f'[storage]\nroot = "s3://{bucket}/driftloop"\n'
        f'[storage.s3]\nendpoint_url = "{s3.endpoint_url}"\naccess_key_id = "testing"\n'
        f'secret_access_key = "testing"\nregion = "{s3.region}"\n'
        # The staging version is not scored in shadow: three replicas loading it too is only more work here.
        f"[serving]\npoll_interval_s = {POLL_S}\nshadow = false\n"
        # Ship and compact soon after the last prediction (the defaults wait 5 s and 2 s).
        "[capture]\nsegment_max_age_s = 1.0\ncompact_idle_s = 1.0\n"
    )


def _share_plant_data(plant: Plant, bucket: str, s3: S3Settings) -> None:
    """The plant's raw data and labels, on the S3 root: the promotion compares versions on them and the
    monitor reads the labels there."""
    source = store_for(load_settings(cwd=plant.directory))
    target = open_store(f"s3://{bucket}/driftloop", s3)
    for prefix in ("raw/", "labels/"):
        for info in source.list(prefix):
            target.write_bytes(info.key, source.read_bytes(info.key))


def _register_again(server: MlflowServer, name: str) -> str:
    """A new version of ``name``: its version 1's model registered again (a retraining's outcome, without
    the retraining)."""
    client = MlflowClient(server.url)
    first = client.get_model_version(name, "1")
    model_id = first.source.removeprefix("models:/") if first.source.startswith("models:/m-") else None
    created = client.create_model_version(
        name, first.source, first.run_id, dict(first.tags), model_id=model_id
    )
    return str(created.version)


def _ready_version(url: str) -> int | None:
    try:
        response = httpx.get(f"{url}/ready", timeout=5)
    except httpx.HTTPError:
        return None
    return int(response.json()["model"]["version"]) if response.status_code == 200 else None


@pytest.fixture
def shared(postgres_url: str, s3_settings: S3Settings, s3_bucket: str, trained_plant: Plant) -> Iterator[str]:
    """The configuration of a team's replicas: a fresh PostgreSQL schema, the plant's data on S3."""
    with postgres_schema(postgres_url) as database:
        _share_plant_data(trained_plant, s3_bucket, s3_settings)
        yield _config(database, s3_bucket, s3_settings)


@pytest.mark.postgres
@pytest.mark.slow  # three MLflow-backed services loading two versions, three promotions, a monitoring pass
def test_three_replicas_converge_on_a_promotion_capture_apart_and_are_monitored_together(
    shared: str, mlflow_server: MlflowServer, plant_copy: Callable[..., Plant], tmp_path: Path
) -> None:
    ws = plant_copy(shared, production=True)
    replicas = [
        # Each replica has its own local WAL, as each host would; everything else is shared.
        Server(ws, free_port(), env={"DRIFTLOOP_CAPTURE__WAL_DIR": str(tmp_path / f"wal-{i}")})
        for i in range(3)
    ]
    try:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(Server.start, replicas))
        assert [_ready_version(r.url) for r in replicas] == [1, 1, 1]

        version = int(_register_again(mlflow_server, ws.name))
        ws.ok("promote", ws.name, str(version), "--to", "staging")
        ws.ok("approve", ws.name, str(version), "--by", "t", "--comment", "t")
        with _Watch(mlflow_server, ws.name, replicas, version) as watch:
            # The same model as the champion: the comparison's margin lets it through.
            margin = {"DRIFTLOOP_POLICY__COMPARISON_MARGIN": "1"}
            done = ws.run("promote", ws.name, str(version), "--to", "production", extra_env=margin)
            assert done.returncode == 0, done.stderr
            wait_for(watch.done.is_set, POLL_S + LOAD_MARGIN_S + SETTLE_S, "all replicas on the new version")
        after = watch.converged()
        seconds = ", ".join(f"{s:.1f}" for s in after)
        print(f"replicas serving {ws.name}/{version} {seconds} s after the alias moved")
        assert max(after) <= POLL_S + LOAD_MARGIN_S, after

        ids = [
            _predict(r.url, n, seed, version) for seed, (r, n) in enumerate(zip(replicas, SENT, strict=True))
        ]
        store = store_for(load_settings(cwd=ws.directory))

        def landed_apart() -> bool:
            by_writer = predictions_by_writer(store, ws.name)
            return sorted(map(frozenset, by_writer.values()), key=len) == [frozenset(i) for i in ids]

        # Each replica's predictions, and only those, in Parquet objects of one writer of its own.
        wait_for(landed_apart, SETTLE_S, "each replica's captures on S3 under a writer id of its own")
        assert len(predictions_by_writer(store, ws.name)) == 3

        out = ws.ok("monitor", "--window", "1h")
        found = re.search(r"([\d,]+) predictions", out)
        assert found is not None, out
        assert int(found.group(1).replace(",", "")) == sum(SENT), out
    finally:
        for replica in replicas:
            replica.stop()


class _Watch:
    """In a thread, from before a promotion: when the registry's production alias reaches ``version``, and
    when each replica's ``/ready`` does (monotonic seconds); ``done`` once all replicas have."""

    def __init__(self, server: MlflowServer, name: str, replicas: list[Server], version: int) -> None:
        self._client = MlflowClient(server.url)
        self._name = name
        self._replicas = replicas
        self._version = version
        self.alias_at: float | None = None
        self.ready_at: dict[int, float] = {}
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()  # stops the thread if the promotion failed
        self._thread.join(timeout=30)

    def converged(self) -> list[float]:
        """Seconds from the alias moving to each replica serving the version."""
        assert self.alias_at is not None
        return [self.ready_at[i] - self.alias_at for i in range(len(self._replicas))]

    def _run(self) -> None:
        poll_until(self._look, 600)  # the test's own wait_for ends it sooner (__exit__)
        self.done.set()

    def _look(self) -> bool:
        now = time.monotonic()
        if self.alias_at is None:
            alias = self._client.get_model_version_by_alias(self._name, "production")
            if int(alias.version) == self._version:
                self.alias_at = now
        for i, replica in enumerate(self._replicas):
            if i not in self.ready_at and _ready_version(replica.url) == self._version:
                self.ready_at[i] = time.monotonic()
        return self.done.is_set() or (self.alias_at is not None and len(self.ready_at) == len(self._replicas))


def _predict(url: str, n: int, seed: int, version: int) -> set[str]:
    """``n`` single-row predictions from the replica at ``url``, each answered by ``version``; their ids."""
    ids: set[str] = set()
    with httpx.Client(timeout=30) as client:
        for row in plant_rows(n, seed=seed):
            response = client.post(f"{url}/v1/predict", json={"instances": [row]})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model"]["version"] == version
            ids.update(p["id"] for p in body["predictions"])
    return ids
