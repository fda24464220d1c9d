"""driftloop's OCI image, really run: built with podman, the pipeline with every step in a container
against PostgreSQL, moto S3 and an MLflow server, and the prediction service answering on loopback.

Containers use ``--network host`` only: the servers the tests start listen on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import pytest
from mlflow.tracking import MlflowClient

from driftloop.runtime.processes import free_port
from tests.conftest import postgres_schema, wait_for
from tests.container.conftest import ARTIFACTS, BUILD_TIMEOUT_S
from tests.plant import AS_OF, POLICY, SIMULATION, TRAINING
from tests.serving.fakes import plant_rows
from tests.workspace import Workspace, make_workspace

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.conftest import MlflowServer, MotoServer
    from tests.container.conftest import Image, Podman

# The first test builds the base and the image (minutes from cold); later ones find them built.
pytestmark = [pytest.mark.container, pytest.mark.timeout(BUILD_TIMEOUT_S + 600)]


def test_the_image_builds_non_root_with_driftloop_as_entry_point(
    podman: Podman, driftloop_image: Image
) -> None:
    megabytes = driftloop_image.size_bytes / 1e6
    built = "found built" if driftloop_image.build_s is None else f"built in {driftloop_image.build_s:.0f} s"
    line = f"{driftloop_image.tag}: {megabytes:.0f} MB ({built})"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "image-size.txt").write_text(line + "\n")
    print(line)  # the lane reports the image's size (make test-container shows it: -rP)

    (image,) = json.loads(podman.ok("image", "inspect", driftloop_image.tag))
    assert image["Config"]["User"] == "driftloop"
    assert image["Config"]["Entrypoint"] == ["driftloop"]
    assert any("/ready" in part for part in image["Healthcheck"]["Test"])
    version = podman.ok("run", "--rm", "--network", "host", "--pull=never", driftloop_image.tag, "--version")
    assert "driftloop" in version
    who = podman.ok(
        "run", "--rm", "--network", "host", "--entrypoint", "id", driftloop_image.tag, "-un"
    ).strip()
    assert who == "driftloop"
    # The healthcheck passes for a container that serves nothing (a step, the scheduler).
    name = f"dl-health-{uuid.uuid4().hex[:8]}"
    sleeper = ["--name", name, "--network", "host", "--entrypoint", "sleep", driftloop_image.tag, "120"]
    podman.ok("run", "-d", "--rm", *sleeper)
    try:
        assert podman("healthcheck", "run", name).returncode == 0
    finally:
        podman("rm", "--force", "--time", "0", name)


@dataclass(frozen=True)
class ContainerPlant:
    ws: Workspace
    since: str  # when its pipeline run started (podman events since then)
    out: str  # what `pipeline run` printed


@pytest.fixture(scope="module")
def container_plant(  # noqa: PLR0917 — the servers it stands on are fixtures
    podman: Podman,
    driftloop_image: Image,
    postgres_url: str,
    moto_server: MotoServer,
    mlflow_server: MlflowServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ContainerPlant]:
    """A plant whose pipeline ran with ``runner.type = "container"``: metadata in a PostgreSQL schema,
    data in a moto S3 bucket, runs and the model in the session's MLflow server."""
    from driftloop.settings import S3Settings
    from driftloop.storage._s3 import make_client

    bucket = f"container-{uuid.uuid4().hex[:10]}"
    s3 = S3Settings(endpoint_url=moto_server.url, access_key_id="testing", secret_access_key="testing")  # type: ignore[arg-type]
    make_client(s3).create_bucket(Bucket=bucket)
    with postgres_schema(postgres_url) as db_url:
        config = (
            TRAINING
            + POLICY
            + f'[database]\nurl = "{db_url}"\n'
            + f'[storage]\nroot = "s3://{bucket}/root"\n[storage.s3]\nendpoint_url = "{moto_server.url}"\n'
            + '[pipeline.runner]\ntype = "container"\nexecutable = "podman"\npull = "never"\n'
            + f'image = "{driftloop_image.tag}"\n'
        )
        directory = tmp_path_factory.mktemp("container-plant")
        ws = make_workspace(directory, mlflow_server, config, git=True)
        env = {**ws.env, "CONTAINERS_CONF": podman.env["CONTAINERS_CONF"]}
        env |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        ws = Workspace(ws.directory, ws.name, env)
        ws.ok("simulate", *SIMULATION)
        assert podman.ok("info", "--format", "{{.Host.EventLogger}}").strip() == "file"  # readable events
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        done = ws.run("pipeline", "run", "--as-of", AS_OF)
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{_step_logs(directory)}"
        yield ContainerPlant(ws, since, done.stdout)


def _step_logs(directory: Path) -> str:
    return "\n".join(f"== {p}\n{p.read_text()[-2000:]}" for p in sorted(directory.rglob("logs/*/*.log")))


@pytest.mark.postgres
def test_pipeline_runs_every_step_in_a_container(
    podman: Podman, container_plant: ContainerPlant, mlflow_server: MlflowServer
) -> None:
    ws, since, out = container_plant.ws, container_plant.since, container_plant.out
    match = re.search(r"pipeline run (\S+) \(([^)]*)\)", out)
    assert match, out
    run_id, steps = match.group(1), match.group(2).split(", ")
    assert f"model={ws.name}/1" in out, out
    events = podman.ok(
        "events", "--stream=false", "--since", since, "--filter", "event=start", "--format", "{{.Name}}"
    ).split()
    ran = {step for step in steps if any(e.startswith(f"driftloop-{run_id}-{step}-") for e in events)}
    assert ran == set(steps), f"steps without a container: {set(steps) - ran}; events: {events}"
    leftovers = podman.ok("ps", "--all", "--format", "{{.Names}}", "--filter", f"name=driftloop-{run_id}")
    assert leftovers.strip() == ""  # --rm: nothing left behind
    # The step saw the host's checkout (mounted at the same path): lineage names the real commit.
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ws.directory, capture_output=True, text=True, check=True
    ).stdout.strip()
    client = MlflowClient(mlflow_server.url)
    tags = client.get_run(client.get_model_version(ws.name, "1").run_id).data.tags
    assert tags["driftloop.git.commit"] == head
    assert tags["driftloop.git.dirty"] == "false"


@pytest.mark.postgres
def test_serve_runs_in_a_container_and_answers_on_loopback(
    podman: Podman, driftloop_image: Image, container_plant: ContainerPlant
) -> None:
    ws = container_plant.ws
    for args in (
        ("promote", ws.name, "1", "--to", "staging"),
        ("approve", ws.name, "1", "--by", "t", "--comment", "t"),
        ("promote", ws.name, "1", "--to", "production"),
    ):
        ws.ok(*args)
    port = free_port()
    name = f"dl-serve-{uuid.uuid4().hex[:8]}"
    config = ws.directory / "driftloop.toml"
    # As a user runs it: the image's own (non-root) user, the configuration mounted read-only, state
    # in the container; --network host because the servers it talks to listen on 127.0.0.1.
    command = ["podman", "run", "--rm", "--name", name, "--network", "host", "--pull=never"]
    command += ["-v", f"{config}:/etc/driftloop/driftloop.toml:ro"]
    command += ["-e", "DRIFTLOOP_HOME=/home/driftloop/state", "-e", f"DRIFTLOOP_SERVING__PORT={port}"]
    command += ["-e", "AWS_ACCESS_KEY_ID", "-e", "AWS_SECRET_ACCESS_KEY"]
    command += [driftloop_image.tag, "--config", "/etc/driftloop/driftloop.toml", "serve"]
    log = ws.directory / "serve-container.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(command, env=ws.env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                return httpx.get(f"{url}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=240, what="the containerised service's /ready")
        response = httpx.post(f"{url}/v1/predict", json={"instances": plant_rows(3)}, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == {"name": ws.name, "version": 1}
        assert len(body["predictions"]) == 3
        assert podman("healthcheck", "run", name).returncode == 0
    finally:
        podman("stop", "--time", "30", name, timeout=60)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()[-3000:]  # SIGTERM: a clean stop, not a kill
    assert podman.ok("ps", "--all", "--format", "{{.Names}}", "--filter", f"name={name}").strip() == ""
