"""The Kubernetes runner: the Job it renders, and driving Jobs through a fake kubectl (tests/pipeline/
fake_kubectl.py) that follows the real command's contract and really runs each Job's command here."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from driftloop.core.runs import RunStatus, StepStatus
from driftloop.pipeline import records
from driftloop.pipeline.executors import KubernetesExecutor, executor_for, step_argv
from driftloop.pipeline.runner import PipelineFailedError, Runner
from driftloop.pipeline.training import training_pipeline
from driftloop.settings import KubernetesRunnerSettings, load_settings
from tests.pipeline import fake_kubectl
from tests.pipeline.conftest import params

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.pipeline.conftest import Env
    from tests.plant import Plant

FAKE = Path(fake_kubectl.__file__)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _runner_toml(**extra: str) -> str:
    """``[pipeline.runner]``: Jobs in namespace ml applied with the fake; ``extra`` keys (TOML values)."""
    keys = {"type": '"kubernetes"', "image": '"reg/driftloop:1"', "namespace": '"ml"', "kubectl": f'"{FAKE}"'}
    keys |= {"poll_s": "0.5", **extra}  # each poll is a process: fewer keep the CPU for the steps
    return "[pipeline.runner]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())


def test_job_manifest(tmp_path: Path) -> None:
    (tmp_path / "driftloop.toml").write_text("[pipeline]\nstep_timeout_s = 90.5\n")
    settings = load_settings(cwd=tmp_path)
    cfg = KubernetesRunnerSettings(
        type="kubernetes",
        image="reg/driftloop:1",
        image_pull_policy="Always",
        namespace="ml",
        service_account="runner",
        env_secret="dl-env",
        cpu="500m",
        memory="1Gi",
        cpu_limit="2",
        ttl_after_finished_s=600,
    )
    executor = KubernetesExecutor(cfg, settings)
    job = executor.manifest("transform", "20260101-000000-ABCDEF", attempt="a1b2c")
    assert job["kind"] == "Job"
    assert job["metadata"]["namespace"] == "ml"
    assert job["metadata"]["name"] == "driftloop-20260101-000000-abcdef-transform-a1b2c"
    assert job["metadata"]["labels"]["driftloop/step"] == "transform"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 91  # the step timeout, rounded up
    assert spec["ttlSecondsAfterFinished"] == 600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "runner"
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["imagePullPolicy"] == "Always"
    assert container["envFrom"] == [{"secretRef": {"name": "dl-env"}}]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "1Gi"},  # the memory limit defaults to the request
    }
    # The ConfigMap's driftloop.toml, mounted read-only, is the step's --config.
    assert container["command"] == [
        "driftloop",
        "--config",
        "/etc/driftloop/driftloop.toml",
        *step_argv("transform", "20260101-000000-ABCDEF", None)[1:],
    ]
    assert container["volumeMounts"] == [{"name": "config", "mountPath": "/etc/driftloop", "readOnly": True}]
    assert pod["volumes"][0]["configMap"]["name"] == "driftloop-config"
    # An explicit timeout (the runner's) wins over the setting.
    assert executor.manifest("transform", "r", 5)["spec"]["activeDeadlineSeconds"] == 5


def test_job_without_config_map_or_limits_runs_on_the_environment(tmp_path: Path) -> None:
    cfg = KubernetesRunnerSettings(type="kubernetes", image="i", config_map="")
    job = KubernetesExecutor(cfg, load_settings(cwd=tmp_path)).manifest("ingest", "r")
    pod = job["spec"]["template"]["spec"]
    assert "volumes" not in pod
    assert pod["containers"][0]["command"] == step_argv("ingest", "r", None)
    assert pod["containers"][0]["resources"]["limits"] == {"memory": "2Gi"}  # no CPU limit by default
    assert job["spec"]["activeDeadlineSeconds"] == math.ceil(
        load_settings(cwd=tmp_path).pipeline.step_timeout_s
    )


def test_resource_quantities_are_checked(tmp_path: Path) -> None:
    from driftloop.errors import ConfigError

    (tmp_path / "driftloop.toml").write_text(_runner_toml(memory='"2 GB"'))
    with pytest.raises(ConfigError, match="memory"):
        load_settings(cwd=tmp_path)


def test_job_names_are_dns_labels_unique_per_attempt(tmp_path: Path) -> None:
    executor = KubernetesExecutor(
        KubernetesRunnerSettings(type="kubernetes", image="i"), load_settings(cwd=tmp_path)
    )
    names = {executor.job_name("Train_Model", "20260101-000000-ABCDEF") for _ in range(20)}
    assert len(names) == 20  # a resumed step never finds its failed predecessor's Job
    long = executor.job_name("x" * 80, "r")
    assert len(long) <= 63
    for name in [*names, long]:
        assert _DNS_LABEL.match(name), name


# --- the fake kubectl follows the real contract ---------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The fake's cluster directory, and an "image" whose ``driftloop`` is this checkout's."""
    state = tmp_path / "cluster"
    state.mkdir()
    image = tmp_path / "image-bin"
    image.mkdir()
    shim = image / "driftloop"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m driftloop "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("FAKE_KUBECTL_STATE", str(state))
    monkeypatch.setenv("PATH", f"{image}{os.pathsep}{os.environ['PATH']}")
    yield state
    fake_kubectl.reap(state)


def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FAKE), *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def _job(name: str, command: list[str], deadline: int = 30) -> str:
    pod = {"restartPolicy": "Never", "containers": [{"name": "step", "image": "i", "command": command}]}
    spec = {"backoffLimit": 0, "activeDeadlineSeconds": deadline, "template": {"spec": pod}}
    return json.dumps({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec})


def test_fake_kubectl_speaks_like_kubectl(cluster: Path) -> None:
    done = kubectl("apply", "-n", "ml", "-f", "-", stdin=_job("ok", ["sh", "-c", "echo hello"]))
    assert (done.returncode, done.stdout) == (0, "job.batch/ok created\n")
    assert kubectl("wait", "-n", "ml", "--for=condition=complete", "--timeout=30s", "job/ok").stdout == (
        "job.batch/ok condition met\n"
    )
    assert kubectl("logs", "-n", "ml", "job/ok").stdout == "hello\n"
    again = kubectl("apply", "-n", "ml", "-f", "-", stdin=_job("ok", ["sh", "-c", "echo other"]))
    assert again.returncode == 1
    assert "field is immutable" in again.stderr

    kubectl("apply", "-n", "ml", "-f", "-", stdin=_job("stuck", ["sleep", "60"]))
    waited = kubectl("wait", "-n", "ml", "--for=condition=complete", "--timeout=0.2s", "job/stuck")
    assert (waited.returncode, waited.stderr) == (
        1,
        "error: timed out waiting for the condition on jobs/stuck\n",
    )
    assert kubectl("delete", "-n", "ml", "job", "stuck").stdout == 'job.batch "stuck" deleted\n'
    gone = kubectl("get", "-n", "ml", "job", "stuck", "-o", "json")
    assert (gone.returncode, gone.stderr) == (
        1,
        'Error from server (NotFound): jobs.batch "stuck" not found\n',
    )
    assert kubectl("delete", "-n", "ml", "job", "stuck", "--ignore-not-found=true").returncode == 0

    wrong_ns = json.loads(_job("x", ["true"]))
    wrong_ns["metadata"]["namespace"] = "prod"
    refused = kubectl("apply", "-n", "ml", "-f", "-", stdin=json.dumps(wrong_ns))
    assert refused.returncode == 1
    assert "does not match the namespace" in refused.stderr
    not_a_job = kubectl(
        "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v9", "kind": "Pod", "metadata": {"name": "p"}})
    )
    assert not_a_job.returncode == 1
    assert 'no matches for kind "Pod" in version "v9"' in not_a_job.stderr


# --- the runner against the fake -------------------------------------------------------------------------


def _cluster_settings(tmp_path: Path, **extra: str) -> KubernetesExecutor:
    """A workspace whose steps run as Jobs in namespace ml, its driftloop.toml in the ConfigMap there."""
    (tmp_path / "driftloop.toml").write_text(_runner_toml(**extra))
    settings = load_settings(cwd=tmp_path)
    config = f'home = "{settings.home}"\n' + (tmp_path / "driftloop.toml").read_text()
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "driftloop-config"}}
    applied = kubectl(
        "apply", "-n", "ml", "-f", "-", stdin=json.dumps({**configmap, "data": {"driftloop.toml": config}})
    )
    assert applied.stdout == "configmap/driftloop-config created\n", applied.stderr
    executor = executor_for(settings)
    assert isinstance(executor, KubernetesExecutor)
    return executor


def test_a_failing_step_is_noticed_when_its_job_fails_not_at_the_timeout(
    tmp_path: Path, cluster: Path
) -> None:
    executor = _cluster_settings(tmp_path)
    log = tmp_path / "logs" / "no-such-run" / "ingest.log"  # its directory does not exist yet
    started = time.monotonic()
    code = executor.run("ingest", "no-such-run", log, timeout_s=600)
    assert code == 1  # the step's own exit code, read from its pod
    assert time.monotonic() - started < 60
    text = log.read_text()
    assert "failed: BackoffLimitExceeded" in text
    assert "error: " in text  # the step's one-line error, fetched from the pod's log
    assert "no-such-run" in text


def test_a_stuck_step_fails_at_its_deadline(
    tmp_path: Path, cluster: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hanging = tmp_path / "hanging-image"
    hanging.mkdir()
    (hanging / "driftloop").write_text('#!/bin/sh\necho "started as $DRIFTLOOP_MARK"\nexec sleep 600\n')
    (hanging / "driftloop").chmod(0o755)
    monkeypatch.setenv("PATH", f"{hanging}{os.pathsep}{os.environ['PATH']}")
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dl-env"}}
    secret["data"] = {"DRIFTLOOP_MARK": base64.b64encode(b"the secret's").decode()}
    assert kubectl("apply", "-n", "ml", "-f", "-", stdin=json.dumps(secret)).returncode == 0
    executor = _cluster_settings(tmp_path, env_secret='"dl-env"')
    log = tmp_path / "logs" / "r" / "train.log"
    started = time.monotonic()
    assert executor.run("train", "r", log, timeout_s=1) == 124
    assert time.monotonic() - started < 30
    text = log.read_text()
    assert "failed: DeadlineExceeded" in text
    assert "started as the secret's" in text  # envFrom reached the step; its log is fetched after a timeout


def test_a_job_the_cluster_never_reports_on_is_deleted_at_the_timeout(tmp_path: Path, cluster: Path) -> None:
    # An API server that accepts the Job and then stops answering.
    calls = tmp_path / "calls"
    broken = tmp_path / "kubectl"
    broken.write_text(
        f'#!/bin/sh\necho "$@" >> "{calls}"\n'
        'case "$*" in\n'
        '  *apply*) cat > /dev/null; echo "job.batch/x created" ;;\n'
        '  *delete*) echo "job.batch x deleted" ;;\n'
        '  *) echo "The connection to the server 10.0.0.1:6443 was refused" >&2; exit 1 ;;\n'
        "esac\n"
    )
    broken.chmod(0o755)
    executor = _cluster_settings(tmp_path, kubectl=f'"{broken}"', deadline_grace_s="0.3")
    log = tmp_path / "step.log"
    assert executor.run("train", "r", log, timeout_s=0.2) == 124
    assert log.read_text().count("was refused") == 1  # the same poll error once, not every poll
    assert "delete job driftloop-r-train-" in calls.read_text()


def test_no_kubectl_is_a_failed_step(tmp_path: Path) -> None:
    cfg = KubernetesRunnerSettings(type="kubernetes", image="i", kubectl=str(tmp_path / "no-kubectl"))
    log = tmp_path / "logs" / "r" / "ingest.log"
    assert KubernetesExecutor(cfg, load_settings(cwd=tmp_path)).run("ingest", "r", log, 10) == 127
    assert "not found" in log.read_text()


class _BrokenExecutor:
    def run(self, step: str, run_id: str, log: Path, timeout_s: float) -> int:
        raise FileNotFoundError(log)


def test_an_executor_that_raises_fails_the_run_instead_of_leaving_it_running(env: Env) -> None:
    env.simulate(days=1, rows=50)
    runner = Runner(env.settings, env.db, env.store, training_pipeline(), _BrokenExecutor())
    run_id = runner.create(params())
    with pytest.raises(PipelineFailedError, match="_BrokenExecutor failed: FileNotFoundError"):
        runner.execute(run_id)
    run = records.get_run(env.db, run_id)
    assert run.status == RunStatus.FAILED
    assert run.steps[0].status == StepStatus.FAILED
    assert "Traceback" in (env.settings.home / "logs" / run_id / "ingest.log").read_text()


def test_the_runner_runs_a_step_as_a_job_to_success(env: Env, cluster: Path) -> None:
    env.simulate(days=1, rows=200)
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "driftloop-config"}}
    config = f'home = "{env.settings.home}"\n[database]\nurl = "{env.settings.database_url}"\n'
    kubectl(
        "apply", "-n", "ml", "-f", "-", stdin=json.dumps({**configmap, "data": {"driftloop.toml": config}})
    )
    cfg = KubernetesRunnerSettings.model_validate(tomllib.loads(_runner_toml())["pipeline"]["runner"])
    runner = Runner(
        env.settings, env.db, env.store, training_pipeline(), KubernetesExecutor(cfg, env.settings)
    )
    view = runner.run(params(until="ingest"))
    assert view.status == RunStatus.SUCCEEDED
    assert view.step("ingest").status == StepStatus.SUCCEEDED
    (job,) = (cluster / "ml" / "job").iterdir()
    assert json.loads((job / "status.json").read_text())["succeeded"] == 1
    log = (env.settings.home / "logs" / view.id / "ingest.log").read_text()
    assert f"job.batch/{job.name} created" in log


# Seven Jobs, each a fresh driftloop process (no prewarmed fork server in a pod), and a training: over
# a minute on a loaded 2-core machine.
@pytest.mark.slow
def test_a_whole_pipeline_runs_as_jobs(
    plant_copy: Callable[..., Plant], cluster: Path, tmp_path: Path
) -> None:
    plant = plant_copy(_runner_toml())
    toml = (plant.directory / "driftloop.toml").read_text()
    # The cluster's config: the same file, with the state where the steps' pods can reach it (a
    # cluster's names PostgreSQL and S3 instead).
    config = f'home = "{plant.directory / ".driftloop"}"\n{toml}'
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "driftloop-config", "namespace": "ml"},
    }
    assert (
        kubectl(
            "apply",
            "-n",
            "ml",
            "-f",
            "-",
            stdin=json.dumps({**configmap, "data": {"driftloop.toml": config}}),
        ).returncode
        == 0
    )
    env = {"FAKE_KUBECTL_STATE": str(cluster), "PATH": os.environ["PATH"]}
    done = plant.run("pipeline", "run", "--as-of", "2026-01-10", "--no-cache", extra_env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"model={plant.name}/2" in done.stdout
    jobs = sorted((cluster / "ml" / "job").iterdir())
    steps = [
        json.loads((j / "manifest.json").read_text())["metadata"]["labels"]["driftloop/step"] for j in jobs
    ]
    assert sorted(steps) == sorted(s.name for s in training_pipeline().steps)
    for job in jobs:
        status = json.loads((job / "status.json").read_text())
        assert status["succeeded"] == 1, job.name
