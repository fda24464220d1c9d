"""Container and Kubernetes runners are tested through what they would run (no engine here)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest

from driftloop.pipeline.executors import (
    ContainerExecutor,
    KubernetesExecutor,
    LocalExecutor,
    executor_for,
    step_argv,
)
from driftloop.settings import ContainerRunnerSettings, KubernetesRunnerSettings, load_settings

if TYPE_CHECKING:
    from pathlib import Path


def test_every_runner_runs_the_same_step_command(tmp_path: Path) -> None:
    config = tmp_path / "driftloop.toml"
    config.write_text('[pipeline.runner]\ntype = "container"\nimage = "driftloop:1"\n')
    settings = load_settings(cwd=tmp_path)
    base = step_argv("validate", "run-1", config)
    assert base == ["driftloop", "--config", str(config), "pipeline", "step", "validate", "--run", "run-1"]

    local = LocalExecutor(config).command("validate", "run-1")
    assert local[:3] == [sys.executable, "-m", "driftloop"]
    assert local[3:] == base[1:]

    assert isinstance(settings.pipeline.runner, ContainerRunnerSettings)
    container = ContainerExecutor(settings.pipeline.runner, settings, environ={}).command("validate", "run-1")
    assert container[container.index("--entrypoint") + 1] == base[0]
    assert container[-len(base) :] == ["driftloop:1", *base[1:]]
    k8s_settings = KubernetesRunnerSettings(type="kubernetes", image="driftloop:1")
    manifest = KubernetesExecutor(k8s_settings, settings).manifest("validate", "run-1")
    command = manifest["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[0] == "driftloop"
    assert (
        command[-5:] == base[-5:]
    )  # after --config: the ConfigMap's file (tests/pipeline/test_kubernetes.py)


def test_container_command_mounts_state_and_forwards_env_by_name_only(tmp_path: Path) -> None:
    config = tmp_path / "driftloop.toml"
    config.write_text(
        '[pipeline.runner]\ntype = "container"\nimage = "reg/driftloop:1"\nexecutable = "podman"\n'
    )
    settings = load_settings(cwd=tmp_path)
    assert isinstance(settings.pipeline.runner, ContainerRunnerSettings)
    environ = {"DRIFTLOOP_DATA__DATASET": "plant", "AWS_SECRET_ACCESS_KEY": "hunter2", "HOME": "/root"}
    cmd = ContainerExecutor(settings.pipeline.runner, settings, environ=environ).command("ingest", "r")
    assert cmd[:5] == ["podman", "run", "--rm", "--network", "host"]
    assert f"{settings.home}:{settings.home}" in cmd
    assert f"{config}:{config}:ro" in cmd
    assert "AWS_SECRET_ACCESS_KEY" in cmd
    assert "DRIFTLOOP_DATA__DATASET" in cmd
    assert "HOME" not in cmd
    assert not any("hunter2" in part for part in cmd)
    assert cmd[cmd.index("--entrypoint") + 1] == "driftloop"
    assert cmd[cmd.index("reg/driftloop:1") + 1 :] == step_argv("ingest", "r", config)[1:]
    assert "--no-healthcheck" in cmd  # a step is not a service


def test_runner_is_chosen_by_configuration(tmp_path: Path) -> None:
    assert isinstance(executor_for(load_settings(cwd=tmp_path)), LocalExecutor)
    (tmp_path / "driftloop.toml").write_text('[pipeline.runner]\ntype = "kubernetes"\nimage = "i"\n')
    assert isinstance(executor_for(load_settings(cwd=tmp_path)), KubernetesExecutor)


def test_unknown_runner_type_names_the_key(tmp_path: Path) -> None:
    from driftloop.errors import ConfigError

    (tmp_path / "driftloop.toml").write_text('[pipeline.runner]\ntype = "slurm"\n')
    with pytest.raises(ConfigError, match=r"pipeline\.runner"):
        load_settings(cwd=tmp_path)


def test_missing_container_engine_is_a_failed_step_not_a_crash(tmp_path: Path) -> None:
    config = tmp_path / "driftloop.toml"
    config.write_text('[pipeline.runner]\ntype = "container"\nimage = "i"\nexecutable = "no-such-docker"\n')
    settings = load_settings(cwd=tmp_path)
    assert isinstance(settings.pipeline.runner, ContainerRunnerSettings)
    log = tmp_path / "step.log"
    code = ContainerExecutor(settings.pipeline.runner, settings, environ={}).run("ingest", "r", log, 10)
    assert code == 127
    assert "cannot start 'no-such-docker'" in log.read_text()


def test_prewarmed_steps_see_the_callers_current_environment_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from driftloop.pipeline import _forkserver

    first = tmp_path / "first.log"
    assert _forkserver.run(None, "no-such-run", "ingest", first, 60) == 1  # starts the server
    assert "error: " in first.read_text()
    # The server was started before these changes; the step must still see them: its database is
    # <cwd>/<DRIFTLOOP_HOME>/driftloop.db, and reaching it proves both arrived.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("DRIFTLOOP_HOME", "state")
    log = tmp_path / "second.log"
    assert _forkserver.run(None, "no-such-run", "ingest", log, 60) == 1
    assert (elsewhere / "state" / "driftloop.db").exists()
    assert len(log.read_text().strip().splitlines()) == 1  # one readable line, no traceback


def test_a_step_over_its_time_limit_is_killed(tmp_path: Path) -> None:
    from driftloop.pipeline.executors import _run_logged

    log = tmp_path / "slow.log"
    assert _run_logged(["sleep", "30"], log, 0.5, env={}) == 124
    assert "timed out" in log.read_text()


def _container(
    tmp_path: Path, extra: str = "", executable: str = "podman", environ: dict[str, str] | None = None
) -> ContainerExecutor:
    config = tmp_path / "driftloop.toml"
    runner = f'[pipeline.runner]\ntype = "container"\nimage = "i:1"\nexecutable = "{executable}"\n'
    config.write_text(runner + extra)
    settings = load_settings(cwd=tmp_path)
    assert isinstance(settings.pipeline.runner, ContainerRunnerSettings)
    return ContainerExecutor(settings.pipeline.runner, settings, environ=environ or {}, cwd=tmp_path)


def _option(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_container_step_runs_as_the_caller_in_the_callers_directory(tmp_path: Path) -> None:
    import os

    cmd = _container(tmp_path).command("ingest", "r")
    assert _option(cmd, "--user") == f"{os.getuid()}:{os.getgid()}"
    assert "HOME=/tmp" in cmd  # a uid the image does not know still gets a writable home
    assert f"{tmp_path}:{tmp_path}" in cmd  # relative paths and the git checkout resolve as on the host
    assert _option(cmd, "-w") == str(tmp_path)
    assert "--pull=missing" in cmd

    image_user = _container(tmp_path, 'user = "image"\npull = "never"\n').command("ingest", "r")
    assert "--user" not in image_user
    assert "HOME=/tmp" not in image_user
    assert "--pull=never" in image_user
    explicit = _container(tmp_path, 'user = "1234:5678"\n').command("ingest", "r")
    assert _option(explicit, "--user") == "1234:5678"


def test_each_container_has_its_own_readable_name(tmp_path: Path) -> None:
    executor = _container(tmp_path)
    first = _option(executor.command("train", "20260101-000000-AB/C"), "--name")
    second = _option(executor.command("train", "20260101-000000-AB/C"), "--name")
    assert first.startswith("driftloop-20260101-000000-AB-C-train-")
    assert first != second  # a retried step never collides with a container still being removed


def test_a_container_over_its_time_limit_is_removed_not_just_its_client_killed(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    engine = tmp_path / "fake-engine"
    # The real engine's contract: `run` blocks while the container runs; `rm --force NAME` removes it.
    engine.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n[ "$1" = run ] && exec sleep 30\nexit 0\n')
    engine.chmod(0o755)
    executor = _container(tmp_path, executable=str(engine), environ={"PATH": "/usr/bin:/bin"})
    log = tmp_path / "step.log"
    assert executor.run("train", "r1", log, 1.0) == 124
    run, remove = calls.read_text().splitlines()
    name = _option(run.split(), "--name")
    assert remove.split() == ["rm", "--force", name]
    assert "timed out" in log.read_text()
