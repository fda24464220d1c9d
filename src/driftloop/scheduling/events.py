"""What the loop tells the log, the webhook and the demo's timeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["LoopEvent"]


@dataclass(frozen=True)
class LoopEvent:
    """Something the loop did."""

    # trigger | retraining | candidate | approval | shadow | promoted | kept | rollback | guard-* | resumed
    kind: str
    message: str
    version: int | None = None
    detail: dict[str, Any] | None = None
