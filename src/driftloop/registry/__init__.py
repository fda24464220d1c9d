"""The MLflow model registry behind driftloop types: versions, tags, aliases."""

from driftloop.registry.client import Registry

__all__ = ["Registry"]
