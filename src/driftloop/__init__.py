"""driftloop: a closed-loop MLOps platform for PyTorch models.

The public Python API is deliberately small; everything else lives in subpackages whose layering is
enforced by import-linter (see ``pyproject.toml``).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from driftloop.errors import DriftloopError
from driftloop.settings import Settings, load_settings

try:
    __version__ = version("driftloop")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["DriftloopError", "Settings", "__version__", "load_settings"]
