"""The trigger policy (seed 21; 002's automated trigger), as a pure function of what is known.

A monitoring decision of DRIFT or DECAY asks for a retraining. In ``manual`` mode that only notifies a
person; in ``automated`` mode it starts one, unless one is already under way or the last one started
within the cooldown: one incident starts one retraining, however many passes keep seeing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from datetime import datetime, timedelta

__all__ = ["ACTIONABLE", "TriggerAction", "decide"]

ACTIONABLE = frozenset({"DRIFT", "DECAY"})


@dataclass(frozen=True)
class TriggerAction:
    """``retrain``: start one; ``notify``: tell a person (manual mode); ``suppress``: recorded, nothing
    started; ``ignore``: nothing to act on (OK, WARN)."""

    action: Literal["retrain", "notify", "suppress", "ignore"]
    reason: str


def decide(
    decision: str, *, mode: str, busy: int | None, last_started: datetime | None, cooldown: timedelta,
    now: datetime,
) -> TriggerAction:  # fmt: skip
    """What to do about a monitoring ``decision``; ``busy`` is the id of a retraining still under way."""
    if decision not in ACTIONABLE:
        return TriggerAction("ignore", f"{decision}: nothing to act on")
    if mode == "manual":
        return TriggerAction(
            "notify", f"{decision}: manual mode, retrain with `driftloop pipeline run` when ready"
        )
    if busy is not None:
        return TriggerAction("suppress", f"{decision}: retraining {busy} is still under way")
    if last_started is not None and now - last_started < cooldown:
        began, until = (t.isoformat(timespec="seconds") for t in (last_started, last_started + cooldown))
        return TriggerAction(
            "suppress", f"{decision}: in cooldown since the retraining of {began} (until {until})"
        )
    return TriggerAction("retrain", f"{decision}: automated mode starts a retraining")
