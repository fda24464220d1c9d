"""The MLflow model registry behind driftloop types: versions, tags, aliases.

``Registry`` is imported on first use, so the package's light modules (the audit, the leases, the
read-only :mod:`~driftloop.registry.reader`) do not import MLflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from driftloop.registry.client import Registry

__all__ = ["Registry"]


def __getattr__(name: str) -> Any:
    if name == "Registry":
        from driftloop.registry.client import Registry

        return Registry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
