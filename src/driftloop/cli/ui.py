"""``driftloop ui``: the dashboard alone (``driftloop up`` starts it with the rest; docs/dashboard.md)."""

from __future__ import annotations

import signal

import typer

from driftloop.cli._exposure import port_in_use, warn_if_exposed
from driftloop.cli._state import state
from driftloop.errors import ConflictError, UsageError

__all__ = ["DEFAULT_PORT", "ui"]

DEFAULT_PORT = 8090


def ui(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(DEFAULT_PORT, "--port", min=1, max=65535, help="Port to bind."),
    service_url: str | None = typer.Option(
        None,
        "--service-url",
        help="The prediction service whose /metrics the traffic page reads \\[http://serving.host:serving.port].",
    ),
) -> None:
    """Serve the dashboard: models, live traffic, drift, decisions, triggers, retrainings, shadow, guards."""
    import uvicorn

    from driftloop.dashboard import build_app, service_url_for
    from driftloop.logs import configure_logging

    st = state(ctx)
    settings = st.settings
    if service_url is not None and not service_url.startswith(("http://", "https://")):
        raise UsageError(f"invalid --service-url {service_url!r}: give an http:// or https:// URL")
    if port_in_use(host, port):
        raise ConflictError(f"port {port} on {host} is already in use; choose another with --port")
    warn_if_exposed(st, host, "driftloop ui shows the registry, its audit and the service's metrics")
    configure_logging(settings.logging.level)
    app = build_app(settings, service_url=service_url)
    url = service_url or service_url_for(settings)
    shown = f"[{host}]" if ":" in host else host
    st.err.print(f"driftloop ui: http://{shown}:{port} (model {settings.registry.model_name}, service {url})")
    # uvicorn re-raises SIGTERM after a graceful shutdown, which would end us with -15; exit 0 instead.
    signal.signal(signal.SIGTERM, _terminated)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM once uvicorn has shut down: nothing left to do but return and exit 0."""
