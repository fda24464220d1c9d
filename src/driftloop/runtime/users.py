"""The operating-system user a command runs as: who audit rows and MLflow runs name when no driftloop
identity applies. Standard library only."""

from __future__ import annotations

import getpass

__all__ = ["os_user"]


def os_user() -> str:
    """The operating-system user, or ``unknown`` (a container may have no passwd entry)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
