"""``driftloop serve``: the prediction service alone (``driftloop up`` starts it with the rest)."""

from __future__ import annotations

import os
import signal
from typing import Any

import typer

from driftloop.cli._exposure import warn_if_exposed
from driftloop.cli._state import state
from driftloop.errors import UsageError


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Interface \\[serving.host]."),
    port: int | None = typer.Option(None, "--port", help="Port \\[serving.port]."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Worker processes, each with its own capture WAL \\[serving.workers]."
    ),
    log_level: str | None = typer.Option(
        None,
        "--log-level",
        help="Log level of driftloop and uvicorn: critical, error, warning, info, debug, trace "
        "\\[driftloop: logging.level; uvicorn: warning].",
    ),
    model: str | None = typer.Option(
        None, "--model", help="Registered model to serve \\[registry.model_name]."
    ),
) -> None:
    """Serve the production model as a JSON prediction service (hot swap, fallback, capture)."""
    import uvicorn

    from driftloop.logs import configure_logging
    from driftloop.serving.server import CONFIG_ENV, build_app
    from driftloop.serving.worker_metrics import worker_metrics_dir

    st = state(ctx)
    settings = st.settings
    if log_level is not None:
        if log_level.lower() not in _LEVELS:
            raise UsageError(f"invalid --log-level {log_level!r}: choose one of {', '.join(_LEVELS)}")
        level = "debug" if log_level.lower() == "trace" else log_level.lower()  # trace is uvicorn's
        os.environ["DRIFTLOOP_LOGGING__LEVEL"] = level  # worker processes read the environment
        settings = settings.model_copy(
            update={"logging": settings.logging.model_copy(update={"level": level})}
        )
    configure_logging(settings.logging.level)
    server_level = log_level or "warning"
    if model:
        settings = settings.model_copy(
            update={"registry": settings.registry.model_copy(update={"model_name": model})}
        )
        os.environ["DRIFTLOOP_REGISTRY__MODEL_NAME"] = model  # worker processes read the environment
    bind_host, bind_port = host or settings.serving.host, port or settings.serving.port
    n = workers or settings.serving.workers
    warn_if_exposed(st, bind_host, "driftloop serve listens")
    st.err.print(
        f"driftloop serve: {settings.registry.model_name}@{settings.serving.alias} on "
        f"http://{bind_host}:{bind_port} with {n} worker(s) (docs at /docs)"
    )
    # Access lines are info-level: formatting them for a logger that drops them costs ~3 % of a request.
    access_log = server_level.lower() in ("info", "debug", "trace")
    common: dict[str, Any] = {
        "host": bind_host,
        "port": bind_port,
        "log_level": server_level,
        "access_log": access_log,
        "loop": "uvloop",
    }
    if n == 1:
        app = build_app(settings)
        # uvicorn shuts down gracefully on SIGTERM (in-flight requests answered, the lifespan closes the
        # capture store), then restores the handler it found and raises the signal again, which with the
        # default handler kills the process (exit -15). Finding this one, it returns: serve exits 0.
        signal.signal(signal.SIGTERM, _terminated)
        uvicorn.run(app, **common)
        return
    # Several processes: each worker builds its own app from the same configuration file.
    if settings.config_file is not None:
        os.environ[CONFIG_ENV] = str(settings.config_file)
    # uvicorn's supervisor stops the workers on SIGTERM (each shuts down gracefully) and returns: exit 0.
    # The workers write their metrics to one fresh directory, so any of them answers /metrics for all.
    with worker_metrics_dir():
        uvicorn.run("driftloop.serving.server:app_from_env", factory=True, workers=n, **common)


_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM once uvicorn has shut down: nothing left to do but return and exit 0."""
