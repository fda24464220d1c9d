"""Human durations such as ``24h``, ``90m``, ``2d`` or ``1w`` (used by every ``--window``-like option)."""

from __future__ import annotations

import re
from datetime import timedelta

from driftloop.errors import UsageError

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """Parse ``"24h"``, ``"1d12h"``, ``"0"``; raise :class:`UsageError` naming the bad text otherwise."""
    cleaned = text.strip().lower().replace(" ", "")
    if cleaned == "0":
        return timedelta(0)
    pos, seconds = 0, 0.0
    for match in _PART.finditer(cleaned):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(cleaned):
        raise UsageError(
            f"invalid duration {text!r}: use a number with a unit s, m, h, d or w (e.g. 24h, 90m, 2d)"
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact rendering in whole units, e.g. ``timedelta(hours=36)`` → ``"1d12h"``."""
    total = int(value.total_seconds())
    if total == 0:
        return "0"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
