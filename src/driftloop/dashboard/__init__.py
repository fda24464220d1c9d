"""The dashboard (``driftloop ui``, started by ``driftloop up``): read-only pages over the registry, the
service's metrics, the monitoring decisions and the loop's ledger (docs/dashboard.md)."""

from driftloop.dashboard.app import build_app, service_url_for

__all__ = ["build_app", "service_url_for"]
