"""Retrying transient storage failures with exponential backoff."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, TypeVar

from driftloop.errors import StorageUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["retry_transient"]

T = TypeVar("T")
_log = logging.getLogger(__name__)


def retry_transient(
    fn: Callable[[], T],
    *,
    attempts: int = 4,
    base_delay_s: float = 0.5,
    max_delay_s: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``; on :class:`StorageUnavailableError` wait 0.5 s, 1 s, 2 s … and try again.

    Any other error, or the last transient one, propagates unchanged.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except StorageUnavailableError as exc:
            if attempt == attempts:
                raise
            delay = min(base_delay_s * 2 ** (attempt - 1), max_delay_s)
            _log.warning(
                "transient storage error (attempt %d/%d), retrying in %.1fs: %s",
                attempt,
                attempts,
                delay,
                exc,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
