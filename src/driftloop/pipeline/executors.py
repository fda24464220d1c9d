"""Where a step runs. Every executor runs the same step command::

    driftloop pipeline step NAME --run RUN

in isolation — a subprocess (default), a container, a Kubernetes Job, or a Ray task
(:mod:`driftloop.pipeline.ray_executor`) — and reports its exit code.
Step processes find the run, its inputs and the store through the shared configuration and the
metadata database, so nothing passes through memory between steps.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any, Protocol

from driftloop.errors import ConfigError
from driftloop.pipeline import _kubernetes
from driftloop.runtime.processes import die_with_parent

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from driftloop.settings import ContainerRunnerSettings, KubernetesRunnerSettings, Settings

__all__ = [
    "FORWARDED_ENV",
    "ContainerExecutor",
    "Executor",
    "KubernetesExecutor",
    "LocalExecutor",
    "executor_for",
    "step_argv",
]

# Environment a step needs: driftloop configuration and cloud credentials, nothing else.
FORWARDED_ENV = _FORWARD = re.compile(r"^(DRIFTLOOP_|AWS_|MLFLOW_)")


def step_argv(step: str, run_id: str, config: Path | None) -> list[str]:
    """The step command line, as a container or a Job runs it."""
    head = ["driftloop"] + (["--config", str(config)] if config else [])
    return [*head, "pipeline", "step", step, "--run", run_id]


def _with_config(step: str, run_id: str, config: str) -> list[str]:
    """The step command with ``--config`` at a path of the container's filesystem, not this machine's."""
    return ["driftloop", "--config", config, *step_argv(step, run_id, None)[1:]]


class Executor(Protocol):
    """Runs one step command to completion, its output going to ``log``; returns the exit code."""

    def run(self, step: str, run_id: str, log: Path, timeout_s: float) -> int: ...


class LocalExecutor:
    """Each step in its own OS process on this machine: the isolation the seed gets from a docker
    instance, without docker.

    With ``prewarm`` (the default) step processes are forked from a server process that has already
    imported driftloop's heavy dependencies (pandas, pyarrow, SQLAlchemy, DVC), so a step starts in
    milliseconds instead of a second; the child still runs the step command's argv through the CLI
    entry point, with this process's environment and working directory, in fresh memory. Without it,
    each step is ``python -m driftloop pipeline step …`` exactly as a container would run it.
    """

    def __init__(self, config: Path | None, *, prewarm: bool = True) -> None:
        self._config = config
        self._prewarm = prewarm

    def command(self, step: str, run_id: str) -> list[str]:
        argv = step_argv(step, run_id, self._config)
        return [sys.executable, "-m", "driftloop", *argv[1:]]

    def run(self, step: str, run_id: str, log: Path, timeout_s: float) -> int:
        if not self._prewarm:
            return _run_logged(self.command(step, run_id), log, timeout_s, env=dict(os.environ))
        from driftloop.pipeline import _forkserver

        return _forkserver.run(self._config, run_id, step, log, timeout_s)


class ContainerExecutor:
    """``docker run`` (or ``podman run``) of the configured image with the same step command.

    The step sees the same files at the same paths: the working directory (also its working directory,
    so relative paths and the git checkout resolve as on the host), ``home``, a local storage root and
    the configuration file are mounted where they are. It runs as the caller's uid:gid by default
    (``user``), since the image's own user owns none of those directories. Each container is named
    after its run and step and removed when it ends; a step over its time limit has its container
    removed by force, not just the engine client killed (the container would run on without it).
    """

    def __init__(
        self,
        cfg: ContainerRunnerSettings,
        settings: Settings,
        environ: dict[str, str] | None = None,
        *,
        cwd: Path | None = None,
    ) -> None:
        self._cfg = cfg
        self._settings = settings
        self._environ = dict(os.environ if environ is None else environ)
        self._cwd = cwd

    def container_name(self, step: str, run_id: str) -> str:
        """Unique per attempt (a retried step must not collide with a container still being removed)."""
        stem = re.sub(r"[^a-zA-Z0-9_.-]", "-", f"driftloop-{run_id}-{step}")
        return f"{stem[:100]}-{os.urandom(3).hex()}"

    def command(self, step: str, run_id: str, name: str | None = None) -> list[str]:
        s, cfg = self._settings, self._cfg
        cwd = str(self._cwd or os.getcwd())
        cmd = [cfg.executable, "run", "--rm", "--network", cfg.network, f"--pull={cfg.pull}"]
        # A step is not a service: the image's healthcheck (serve's /ready) has nothing to probe.
        cmd += ["--name", name or self.container_name(step, run_id), "--no-healthcheck"]
        if cfg.user != "image":
            user = f"{os.getuid()}:{os.getgid()}" if cfg.user == "caller" else cfg.user
            # A uid the image does not know has no home directory; tools that cache (MLflow, DVC) need one.
            cmd += ["--user", user, "-e", "HOME=/tmp"]
        mounts = [cwd, str(s.home)]
        if not s.storage_root.startswith("s3://") and s.storage_root != str(s.home):
            mounts.append(s.storage_root)
        for path in dict.fromkeys(mounts):  # same path inside: URIs and recorded paths mean the same
            cmd += ["-v", f"{path}:{path}"]
        config = s.config_file
        if config is not None:
            cmd += ["-v", f"{config}:{config}:ro"]
        cmd += ["-w", cwd]
        for key in sorted(self._environ):
            if _FORWARD.match(key) and not key.startswith("DRIFTLOOP_TEST_"):
                cmd += ["-e", key]  # by name only: values never appear on a command line
        # The step command replaces the image's entry point, as a Kubernetes Job's ``command`` does, so
        # any image with driftloop on its PATH runs it (driftloop's own image has it as entry point).
        program, *args = step_argv(step, run_id, config)
        cmd += ["--entrypoint", program, *cfg.extra_args, cfg.image]
        return cmd + args

    def run(self, step: str, run_id: str, log: Path, timeout_s: float) -> int:
        name = self.container_name(step, run_id)

        def remove() -> None:
            # Best effort: the step already failed; an engine that cannot remove it must not crash the run.
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    [self._cfg.executable, "rm", "--force", name],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=self._environ,
                    timeout=60,
                    check=False,
                )

        return _run_logged(
            self.command(step, run_id, name), log, timeout_s, env=self._environ, on_timeout=remove
        )


class KubernetesExecutor:
    """A Kubernetes Job per step, applied and followed with kubectl (``driftloop.pipeline._kubernetes``):
    its ConfigMap's driftloop.toml mounted as ``--config``, killed at the step timeout, done when the Job
    is Complete or Failed."""

    def __init__(self, cfg: KubernetesRunnerSettings, settings: Settings) -> None:
        self._cfg = cfg
        self._settings = settings

    def job_name(self, step: str, run_id: str, attempt: str | None = None) -> str:
        return _kubernetes.job_name(step, run_id, attempt)

    def manifest(
        self, step: str, run_id: str, timeout_s: float | None = None, *, attempt: str | None = None
    ) -> dict[str, Any]:
        """The step's Job; ``timeout_s`` defaults to ``pipeline.step_timeout_s``."""
        labels = {"app.kubernetes.io/name": "driftloop", "driftloop/run": run_id, "driftloop/step": step}
        config = _kubernetes.config_path(self._cfg)
        return _kubernetes.job_manifest(
            self._cfg,
            self.job_name(step, run_id, attempt),
            step_argv(step, run_id, None) if config is None else _with_config(step, run_id, config),
            labels,
            self._settings.pipeline.step_timeout_s if timeout_s is None else timeout_s,
        )

    def run(self, step: str, run_id: str, log: Path, timeout_s: float) -> int:
        return _kubernetes.run_job(self._cfg, self.manifest(step, run_id, timeout_s), log, timeout_s)


def executor_for(settings: Settings) -> Executor:
    runner = settings.pipeline.runner
    if runner.type == "local":
        return LocalExecutor(settings.config_file, prewarm=runner.prewarm)
    if runner.type == "container":
        return ContainerExecutor(runner, settings)
    if runner.type == "kubernetes":
        return KubernetesExecutor(runner, settings)
    if runner.type == "ray":
        # Imported here: Ray is an optional extra (driftloop[ray]).
        from driftloop.pipeline.ray_executor import RayExecutor

        return RayExecutor(runner, settings)
    raise ConfigError(
        f"unknown pipeline.runner.type {runner.type!r}"
    )  # pragma: no cover - pydantic refuses it


def _run_logged(
    cmd: list[str],
    log: Path,
    timeout_s: float,
    env: dict[str, str],
    on_timeout: Callable[[], None] | None = None,
) -> int:
    """Run ``cmd`` with its output appended to ``log``; 124 when killed at ``timeout_s`` (after
    ``on_timeout``, which stops what the killed process leaves behind), 127 when it cannot start."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        try:
            return subprocess.run(
                cmd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=timeout_s,
                check=False,
                preexec_fn=die_with_parent(signal.SIGKILL),  # lock-free: see die_with_parent
            ).returncode
        except subprocess.TimeoutExpired:
            if on_timeout is not None:
                on_timeout()
            fh.write(f"\n[driftloop] step timed out after {timeout_s:.0f}s and was killed\n".encode())
            return 124
        except FileNotFoundError:
            fh.write(f"\n[driftloop] cannot start {cmd[0]!r}: not found\n".encode())
            return 127
