"""Steps as Ray tasks: ``pipeline.runner.type = "ray"`` (the optional ``driftloop[ray]`` extra).

Each step is one Ray task on the cluster at ``ray.address``; the task runs the same step command every
executor runs (``driftloop pipeline step NAME --run RUN``) as a child process on whichever node Ray
places it, with the run's configuration, the forwarded environment (``DRIFTLOOP_…``, ``AWS_…``,
``MLFLOW_…``) and the run's working directory. Its output comes back to the step log, its exit code is
the step's. A step not finished within the step timeout has its task cancelled (the worker is killed,
and the step process dies with it) and reports 124, as the local runner does.

As with containers and Kubernetes Jobs, steps on other nodes share state only through the metadata
database, the object store and MLflow: a real cluster needs PostgreSQL, S3 and an MLflow server, not
the embedded SQLite and local directories (docs/ray.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from driftloop.pipeline.executors import FORWARDED_ENV, step_argv
from driftloop.runtime.processes import die_with_parent
from driftloop.runtime.ray_cluster import connected

if TYPE_CHECKING:
    from pathlib import Path

    from driftloop.settings import RayRunnerSettings, Settings

__all__ = ["NODE_LINE", "RayExecutor", "run_step_command"]

TIMEOUT_EXIT = 124
NODE_LINE = "[driftloop] ran as a Ray task on node "


def run_step_command(argv: list[str], env: dict[str, str], cwd: str, timeout_s: float) -> tuple[int, bytes]:
    """Runs on a Ray worker: ``python -m driftloop ARGV`` with the worker's Python; (exit code, output),
    the output ending with the line that names the Ray node it ran on.

    The child dies with the worker (a cancelled task kills the worker). ``cwd`` is used when the node has
    it (a shared filesystem, or one machine); else the worker's own directory.
    """
    import ray

    node = f"\n{NODE_LINE}{ray.get_runtime_context().get_node_id()}\n".encode()
    command = [sys.executable, "-m", "driftloop", *argv]
    where = cwd if os.path.isdir(cwd) else None
    try:
        done = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=where,
            timeout=timeout_s,
            check=False,
            preexec_fn=die_with_parent(signal.SIGKILL),  # lock-free: see die_with_parent
        )
    except subprocess.TimeoutExpired as exc:
        note = f"\n[driftloop] step timed out after {timeout_s:.0f}s and was killed\n".encode()
        return TIMEOUT_EXIT, (exc.output or b"") + note + node
    return done.returncode, done.stdout + node


class RayExecutor:
    """Each step as a Ray task running the step command (see the module docstring)."""

    def __init__(
        self, cfg: RayRunnerSettings, settings: Settings, environ: dict[str, str] | None = None
    ) -> None:
        self._cfg = cfg
        self._settings = settings
        source = os.environ if environ is None else environ
        self._env = {
            k: v for k, v in source.items() if FORWARDED_ENV.match(k) and not k.startswith("DRIFTLOOP_TEST_")
        }

    def command(self, step: str, run_id: str) -> list[str]:
        return step_argv(step, run_id, self._settings.config_file)

    def run(self, step: str, run_id: str, log: Path, timeout_s: float) -> int:
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = self.command(step, run_id)[1:]
        with connected(self._settings.ray.address, 'pipeline.runner.type = "ray"') as ray:
            task = ray.remote(num_cpus=self._cfg.num_cpus, max_retries=0)(run_step_command)
            ref = task.remote(argv, self._env, os.getcwd(), timeout_s)
            # The task's own timeout covers the step once it runs; this one also covers the wait for a
            # free CPU on the cluster.
            ready, _ = ray.wait([ref], timeout=timeout_s)
            with log.open("ab") as fh:
                if not ready:
                    ray.cancel(ref, force=True)
                    note = f"step timed out after {timeout_s:.0f}s; its Ray task was cancelled"
                    fh.write(f"\n[driftloop] {note}\n".encode())
                    return TIMEOUT_EXIT
                try:
                    code, output = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    fh.write(f"\n[driftloop] the step's Ray task failed: {exc}\n".encode())
                    return 1
                fh.write(output)
        return int(code)
