"""Who holds a lease, and whether that holder can still finish: shared by every lease driftloop keeps
(a registry change, a scheduler's fire claim, a loop trigger's retraining).

A holder is named ``host:pid:nonce``. It is gone when its lease expired (anywhere), or when it was a
process on this host that no longer runs (a ``kill -9`` is noticed at once, not after the expiry).
Standard library only.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["holder_gone", "new_holder", "process_gone"]

_HOST = socket.gethostname()[:160]


def new_holder() -> str:
    """``host:pid:random``: names one holder, unique even across restarts of the same pid."""
    return f"{_HOST}:{os.getpid()}:{secrets.token_hex(4)}"


def holder_gone(holder: str, expires_at: datetime | None, now: datetime) -> bool:
    """A holder that cannot finish: its lease expired, or it was a process on this host that is gone."""
    if expires_at is not None and expires_at < now:
        return True
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != _HOST or not pid.isdigit():
        return False
    return process_gone(int(pid))


def process_gone(pid: int) -> bool:
    """Process ``pid`` of this host no longer runs (or is a zombie: dead, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed child not yet reaped by its parent still answers ``kill(pid, 0)``; it holds nothing."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
