"""What an in-process driftloop command leaves behind in the test process, and how to undo it."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


def _process_owned(key: str) -> bool:
    """Environment variables an in-process driftloop command may export (see mlflow_state_kept)."""
    return "MLFLOW" in key or key.startswith(("DRIFTLOOP_", "AWS_"))


# What the session started with: a module- or session-scoped fixture that runs a command in-process
# exports its MLflow URIs before any test's own bookkeeping starts, so "as the test found it" is not clean.
SESSION_ENV = {k: v for k, v in os.environ.items() if _process_owned(k)}


@contextlib.contextmanager
def mlflow_state_kept(restore: dict[str, str] | None = None) -> Iterator[None]:
    """Undo what an in-process driftloop command leaves in the process: MLflow's URIs and environment.

    ``mlflow.set_tracking_uri``/``set_registry_uri`` (which driftloop calls) also export
    ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI``, and a later ``MlflowClient(url)`` in the same
    process resolves its *registry* from them: without this, a test after an in-process command reads
    another test's registry. ``serve --model``/``--log-level`` export ``DRIFTLOOP_*`` for its worker
    processes; the tracker exports ``AWS_*`` credentials for boto3. ``restore``: the variables to leave
    behind (default: those found on entry).
    """
    import mlflow

    saved = {k: v for k, v in os.environ.items() if _process_owned(k)} if restore is None else restore
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None resets it (MLflow's own code path)
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
        for key in [k for k in os.environ if _process_owned(k)]:
            del os.environ[key]
        os.environ.update(saved)
