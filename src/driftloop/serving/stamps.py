"""Prediction ids and capture timestamps, at a cost that stays small at thousands of requests a second.

``uuid4().hex`` is a ``getrandom`` system call per id and ``datetime.now(UTC).isoformat()`` builds two
objects per call; together they were ~10 % of a single-row request's time in the service.
"""

from __future__ import annotations

import os
import time
import weakref
from datetime import UTC, datetime

__all__ = ["PredictionIds", "utc_now_iso"]


class PredictionIds:
    """Random 128-bit ids as 32 hex digits (as ``uuid4().hex``), from ``os.urandom`` drawn in blocks.

    The block is discarded in a forked child, so parent and child never hand out the same ids.
    """

    def __init__(self, block: int = 256) -> None:
        self._block = block
        self._hex = ""
        self._pos = 0
        _pools.add(self)

    def _discard(self) -> None:
        self._hex, self._pos = "", 0

    def take(self, n: int) -> list[str]:
        """``n`` fresh ids."""
        need = 32 * n
        if self._pos + need > len(self._hex):
            self._hex, self._pos = os.urandom(16 * max(n, self._block)).hex(), 0
        start = self._pos
        self._pos += need
        return [self._hex[i : i + 32] for i in range(start, start + need, 32)]


_pools: weakref.WeakSet[PredictionIds] = weakref.WeakSet()


def _discard_all() -> None:
    for pool in list(_pools):
        pool._discard()


os.register_at_fork(after_in_child=_discard_all)

_second = -1
_prefix = ""


def utc_now_iso() -> str:
    """Now as ``datetime.now(UTC).isoformat(timespec="microseconds")`` writes it (what capture stores),
    formatting the date and time of day once per second."""
    global _second, _prefix  # noqa: PLW0603 — a one-entry cache of the formatted second
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    if seconds != _second:
        _prefix = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = seconds
    return f"{_prefix}.{nanos // 1000:06d}+00:00"
