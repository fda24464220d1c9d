"""Step processes forked from a pre-warmed server (multiprocessing's ``forkserver``).

The server imports the libraries every step needs once; each step is then a fresh fork that runs the
step command's body (:func:`~driftloop.pipeline.execute.run_step_command`), stdout and stderr going to
the step log. The environment and working directory are passed explicitly, because the server was
started earlier and may have others.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multiprocessing.context import ForkServerContext
    from pathlib import Path

__all__ = ["run"]

_PRELOAD = ["driftloop.pipeline.execute", "driftloop.pipeline.training", "dvc.repo", "dvc_s3", "boto3"]
_context: ForkServerContext | None = None


def run(config: Path | None, run_id: str, step: str, log: Path, timeout_s: float) -> int:
    """Run one step in a forked process; return its exit code (124 on timeout)."""
    global _context  # noqa: PLW0603 - one server per process, started on first use
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(_PRELOAD)
    log.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {
        "config": config, "run_id": run_id, "step": step, "log": str(log),
        "environ": dict(os.environ), "cwd": os.getcwd(),
    }  # fmt: skip
    proc = _context.Process(target=_child, kwargs=kwargs, daemon=True)
    proc.start()
    proc.join(timeout_s)
    if proc.is_alive():
        proc.kill()
        proc.join()
        with open(log, "ab") as fh:
            fh.write(f"\n[driftloop] step timed out after {timeout_s:.0f}s and was killed\n".encode())
        return 124
    return proc.exitcode if proc.exitcode is not None else 1


def _child(
    *, config: Path | None, run_id: str, step: str, log: str, environ: dict[str, str], cwd: str
) -> None:
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    from driftloop.pipeline.execute import run_step_command

    sys.exit(run_step_command(config, run_id, step))
