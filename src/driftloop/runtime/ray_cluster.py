"""A connection to the Ray cluster (the optional ``driftloop[ray]`` extra), imported only when used.

Ray is imported here and nowhere at module level, so driftloop runs without it; a missing extra or an
unreachable cluster is a :class:`ConfigError` naming the setting.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from driftloop.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["connected", "import_ray"]


def import_ray(feature: str) -> Any:
    """The ``ray`` module; :class:`ConfigError` saying how to install it when it is absent."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            f"{feature} needs Ray, which is not installed: pip install 'driftloop[ray]'"
        ) from None
    return ray


@contextlib.contextmanager
def connected(address: str, feature: str) -> Iterator[Any]:
    """``ray``, connected to the cluster at ``address`` for the block (as a driver; disconnected after).

    A process already connected keeps its connection and is left connected. Raises
    :class:`ConfigError` when the cluster cannot be reached.
    """
    ray = import_ray(feature)
    if ray.is_initialized():
        yield ray
        return
    try:
        # Workers' output stays in the cluster's logs: a step's own output reaches its step log, and
        # the driver's stderr is a CLI user's terminal.
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"{feature}: cannot reach the Ray cluster at ray.address = {address!r}: {exc}"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()
