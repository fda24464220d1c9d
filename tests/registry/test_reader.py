"""The read-only registry readers (decision 0073) against MLflow's own client, on one real store: the
session's MLflow server, read over its REST API and through its SQLite file."""

from __future__ import annotations

import http.server
import shutil
import sqlite3
import threading
import uuid
from typing import TYPE_CHECKING

import pytest
from mlflow.tracking import MlflowClient

from driftloop.core.logins import login_refused
from driftloop.core.models import ModelRef
from driftloop.errors import NotFoundError, StorageError, StorageUnavailableError
from driftloop.registry import Registry
from driftloop.registry.reader import TESTED_REVISIONS, RestReader, SqlReader, registry_reader, resolve
from driftloop.settings import Settings
from driftloop.tracking import Tracker
from tests.conftest import free_port

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import MlflowServer


@pytest.fixture(scope="module")
def registered(mlflow_server: MlflowServer) -> str:
    """A model with three versions on the session's server: tags, two aliases, one version deleted, and
    a run with params, metrics logged at several steps (the latest counts) and tags."""
    client = MlflowClient(mlflow_server.url)
    name = f"reader-{uuid.uuid4().hex[:8]}"
    experiment = client.create_experiment(f"{name}-runs")
    run = client.create_run(experiment, run_name="train", tags={"driftloop.pipeline_run": "p-1"})
    run_id = run.info.run_id
    client.log_param(run_id, "epochs", "3")
    for step, value in enumerate((0.5, 0.7, 0.9)):
        client.log_metric(run_id, "holdout_roc_auc", value, step=step)
    client.set_terminated(run_id)
    client.create_registered_model(name)
    for number in (1, 2, 3):
        tags = {"driftloop.stage": "None", "driftloop.metric.roc_auc": f"0.9{number}"}
        client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id, tags=tags)
    client.update_model_version(name, "2", description="the champion")
    client.set_registered_model_alias(name, "production", "2")
    client.set_registered_model_alias(name, "staging", "2")
    client.delete_model_version(name, "3")
    return name


def _settings(tmp_path: Path, uri: str) -> Settings:
    return Settings(home=tmp_path, tracking={"uri": uri})


def test_both_readers_see_what_mlflows_client_sees(
    mlflow_server: MlflowServer, registered: str, tmp_path: Path
) -> None:
    through_mlflow = _settings(tmp_path, mlflow_server.url)
    expected = Registry(through_mlflow).versions(registered)
    assert [v.version for v in expected] == [2, 1]  # the deleted version is gone
    rest = registry_reader(through_mlflow)
    sql = registry_reader(_settings(tmp_path, mlflow_server.backend_uri))
    assert isinstance(rest, RestReader)
    assert isinstance(sql, SqlReader), "the store's schema revision is not in TESTED_REVISIONS"
    run_id = expected[0].run_id
    assert run_id is not None
    tracked = Tracker(through_mlflow).get_run(run_id)
    assert tracked.metrics["holdout_roc_auc"] == 0.9
    for reader in (rest, sql):
        assert reader.versions(registered) == expected
        assert reader.versions(registered)[0].aliases == ("production", "staging")
        assert reader.versions(registered)[0].description == "the champion"
        assert resolve(reader, ModelRef.parse(registered)).version == 2
        assert resolve(reader, ModelRef.parse(f"{registered}/1")) == expected[1]
        run = reader.run(run_id)
        assert (run.run_id, run.status, run.name, run.experiment_id) == (
            tracked.run_id,
            tracked.status,
            tracked.name,
            tracked.experiment_id,
        )
        assert (run.params, run.metrics, run.tags, run.start_time) == (
            tracked.params,
            tracked.metrics,
            tracked.tags,
            tracked.start_time,
        )


def test_both_readers_say_what_is_missing(
    mlflow_server: MlflowServer, registered: str, tmp_path: Path
) -> None:
    for uri in (mlflow_server.url, mlflow_server.backend_uri):
        reader = registry_reader(_settings(tmp_path, uri))
        assert reader is not None
        with pytest.raises(NotFoundError, match="no registered model 'nobody'"):
            reader.versions("nobody")
        with pytest.raises(NotFoundError, match=f"no model version {registered}/3"):
            resolve(reader, ModelRef.parse(f"{registered}/3"))  # deleted
        with pytest.raises(NotFoundError, match="no tracked run 'f00'"):
            reader.run("f00")


def test_an_untested_schema_or_an_unknown_store_falls_back_to_mlflows_client(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    copy = tmp_path / "mlflow.db"
    shutil.copy(mlflow_server.backend_uri.removeprefix("sqlite:///"), copy)
    with sqlite3.connect(copy) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert revision in TESTED_REVISIONS
        conn.execute("UPDATE alembic_version SET version_num = 'f00dcafe'")  # a newer MLflow's schema
    assert registry_reader(_settings(tmp_path, f"sqlite:///{copy}")) is None
    assert registry_reader(_settings(tmp_path, f"sqlite:///{tmp_path / 'none.db'}")) is None
    assert not (tmp_path / "none.db").exists()  # looking created nothing
    assert registry_reader(_settings(tmp_path, "file:///somewhere/mlruns")) is None


class _Refusing(http.server.BaseHTTPRequestHandler):
    """An MLflow server with its basic-auth app, to a request without a login."""

    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"You are not authenticated.")

    def log_message(self, *args: object) -> None:
        pass


def test_the_rest_reader_words_a_refusal_and_an_outage_as_the_mlflow_client_path_does(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    site = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        reader = registry_reader(_settings(tmp_path, site))
        assert reader is not None
        with pytest.raises(StorageError) as refused:
            reader.versions("m")
        assert str(refused.value) == f"cannot list versions of m: {login_refused('error code 401', site)}"
    finally:
        server.shutdown()
        server.server_close()
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(
        StorageUnavailableError, match=f"cannot read run r1: MLflow at {nobody} is unreachable"
    ):
        RestReader(nobody).run("r1")
