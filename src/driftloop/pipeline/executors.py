"""Where a step runs. Every executor runs the same step command::

    driftloop pipeline step NAME --run RUN

in isolation — a subprocess (default), a container, a Kubernetes Job, or a Ray task
(:mod:`driftloop.pipeline.ray_executor`) — and reports its exit code.
Step processes find the run, its inputs and the store through the shared configuration and the
metadata database, so nothing passes through memory between steps.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any, Protocol

from driftloop.errors import ConfigError
from driftloop.runtime.processes import die_with_parent

if TYPE_CHECKING:
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
    """``docker run`` (or podman) of the configured image with the same step command."""

    def __init__(
        self, cfg: ContainerRunnerSettings, settings: Settings, environ: dict[str, str] | None = None
    ) -> None:
        self._cfg = cfg
        self._settings = settings
        self._environ = dict(os.environ if environ is None else environ)

    def command(self, step: str, run_id: str) -> list[str]:
        s = self._settings
        cmd = [self._cfg.executable, "run", "--rm", "--network", self._cfg.network]
        # Embedded mode keeps state on local disk: mount it at the same path so URIs mean the same inside.
        cmd += ["-v", f"{s.home}:{s.home}"]
        if not s.storage_root.startswith("s3://") and s.storage_root != str(s.home):
            cmd += ["-v", f"{s.storage_root}:{s.storage_root}"]
        config = s.config_file
        if config is not None:
            cmd += ["-v", f"{config}:{config}:ro"]
        for key in sorted(self._environ):
            if _FORWARD.match(key) and not key.startswith("DRIFTLOOP_TEST_"):
                cmd += ["-e", key]  # by name only: values never appear on a command line
        cmd += [*self._cfg.extra_args, self._cfg.image]
        return cmd + step_argv(step, run_id, config)

    def run(self, step: str, run_id: str, log: Path, timeout_s: float) -> int:
        return _run_logged(self.command(step, run_id), log, timeout_s, env=self._environ)


class KubernetesExecutor:
    """A Kubernetes Job per step, applied and awaited with kubectl."""

    def __init__(self, cfg: KubernetesRunnerSettings, settings: Settings) -> None:
        self._cfg = cfg
        self._settings = settings

    def job_name(self, step: str, run_id: str) -> str:
        name = re.sub(r"[^a-z0-9-]", "-", f"driftloop-{run_id}-{step}".lower())
        return name[:63].rstrip("-")

    def manifest(self, step: str, run_id: str) -> dict[str, Any]:
        """The Job: one pod, no retries (the pipeline owns retry and resume), the step command."""
        cfg = self._cfg
        container: dict[str, Any] = {
            "name": "step",
            "image": cfg.image,
            "command": step_argv(step, run_id, None),
            "resources": {"requests": {"cpu": cfg.cpu, "memory": cfg.memory}},
        }
        if cfg.env_secret:
            container["envFrom"] = [{"secretRef": {"name": cfg.env_secret}}]
        pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
        if cfg.service_account:
            pod["serviceAccountName"] = cfg.service_account
        labels = {"app.kubernetes.io/name": "driftloop", "driftloop/run": run_id, "driftloop/step": step}
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": self.job_name(step, run_id), "namespace": cfg.namespace, "labels": labels},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": labels}, "spec": pod}},
        }

    def commands(self, step: str, run_id: str, timeout_s: float) -> list[list[str]]:
        k, ns, job = self._cfg.kubectl, self._cfg.namespace, self.job_name(step, run_id)
        return [
            [k, "apply", "-n", ns, "-f", "-"],
            [k, "wait", "-n", ns, "--for=condition=complete", f"--timeout={int(timeout_s)}s", f"job/{job}"],
            [k, "logs", "-n", ns, f"job/{job}"],
        ]

    def run(self, step: str, run_id: str, log: Path, timeout_s: float) -> int:
        import json

        apply, wait, logs = self.commands(step, run_id, timeout_s)
        manifest = json.dumps(self.manifest(step, run_id))
        with log.open("ab") as fh:
            first = subprocess.run(apply, input=manifest.encode(), stdout=fh, stderr=fh, check=False)
            if first.returncode != 0:
                return first.returncode
            code = subprocess.run(wait, stdout=fh, stderr=fh, check=False).returncode
            subprocess.run(logs, stdout=fh, stderr=fh, check=False)
        return code


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


def _run_logged(cmd: list[str], log: Path, timeout_s: float, env: dict[str, str]) -> int:
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
            fh.write(f"\n[driftloop] step timed out after {timeout_s:.0f}s and was killed\n".encode())
            return 124
        except FileNotFoundError:
            fh.write(f"\n[driftloop] cannot start {cmd[0]!r}: not found\n".encode())
            return 127
