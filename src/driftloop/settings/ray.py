"""The Ray cluster driftloop scales out on (the optional ``driftloop[ray]`` extra; docs/ray.md)."""

from __future__ import annotations

from driftloop.settings._section import Section

__all__ = ["RaySettings"]


class RaySettings(Section):
    """Where the Ray cluster is. Used by ``pipeline.runner.type = "ray"``, ``training.ray_workers`` and
    ``monitoring.engine = "ray"``; nothing connects to Ray unless one of them asks for it."""

    # The cluster's GCS address (``host:port``, the head's ``ray start --port``), or ``auto``: the
    # RAY_ADDRESS variable, else the cluster last started on this machine.
    address: str = "auto"
