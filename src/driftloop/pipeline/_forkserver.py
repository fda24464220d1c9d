"""Step processes forked from a pre-warmed server (multiprocessing's ``forkserver``).

The server imports the libraries every step needs once; each step is then a fresh fork that runs the
step command's body (:func:`~driftloop.pipeline.execute.run_step_command`), stdout and stderr going to
the step log. The environment and working directory are passed explicitly, because the server was
started earlier and may have others.

A step dies with the process that asked for it: the fork's parent is the server, not the scheduler, so
a scheduler killed with ``-9`` would otherwise leave its step running, reparented to PID 1, racing the
scheduler that takes its work over. Each step watches its owner through a pidfd and kills its own
process group the moment the owner is gone. (The server and its resource tracker exit by themselves when
the owner's end of their pipes closes.)
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
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
        "config": config,
        "run_id": run_id,
        "step": step,
        "log": str(log),
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "owner": os.getpid(),
    }
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
    *, config: Path | None, run_id: str, step: str, log: str, environ: dict[str, str], cwd: str, owner: int
) -> None:
    _die_with(owner)
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


def _die_with(owner: int) -> None:
    """Kill this step's process group when process ``owner`` exits (at once if it already has)."""
    os.setpgrp()  # the step and anything it starts; never the server's group

    def kill() -> None:
        os.killpg(os.getpid(), signal.SIGKILL)

    try:
        fd = os.pidfd_open(owner)
    except ProcessLookupError:
        kill()
    except OSError:  # no pidfd (an old kernel): poll
        threading.Thread(target=_poll_owner, args=(owner, kill), daemon=True).start()
        return

    def watch() -> None:
        select.select([fd], [], [])  # readable once the owner has exited
        kill()

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


def _poll_owner(owner: int, kill: Callable[[], None]) -> None:
    while True:
        time.sleep(0.5)
        with contextlib.suppress(PermissionError):
            try:
                os.kill(owner, 0)
            except ProcessLookupError:
                kill()
