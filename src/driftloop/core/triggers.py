"""The trigger policy (seed 21; 002's automated trigger), as a pure function of what is known, and the
states a trigger goes through.

A monitoring decision of DRIFT or DECAY asks for a retraining. In ``manual`` mode that only notifies a
person; in ``automated`` mode it starts one, unless one is already under way or the last one started
within the cooldown: one incident starts one retraining, however many passes keep seeing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from datetime import datetime, timedelta

__all__ = [
    "ACTIONABLE",
    "ACTIVE",
    "INITIAL",
    "PENDING",
    "TRANSITIONS",
    "IllegalTransitionError",
    "TriggerAction",
    "TriggerState",
    "check_transition",
    "decide",
]

ACTIONABLE = frozenset({"DRIFT", "DECAY"})


class TriggerState(StrEnum):
    """Where a trigger is; the values are what the database stores and the CLI prints."""

    WAITING = "waiting"  # a retraining asked for, waiting for the drifted period's labels
    TRAINING = "training"  # its pipeline runs, then the candidate goes through the gates
    SHADOW = "shadow"  # its candidate is scored beside production on live traffic
    AWAITING_APPROVAL = "awaiting_approval"  # every gate passed; production waits for `driftloop approve`
    PROMOTED = "promoted"
    KEPT = "kept"  # a gate refused the candidate (withdrawn): the champion stays
    FAILED = "failed"  # no candidate: the pipeline failed or the trigger was abandoned
    NOTIFIED = "notified"  # manual mode: a person was told
    SUPPRESSED = "suppressed"  # recorded, nothing started (one under way, or cooldown)


# A retraining under way: no second one starts (the database's partial unique index says the same).
ACTIVE = (TriggerState.WAITING, TriggerState.TRAINING, TriggerState.SHADOW)
# Still the loop's to move on at each pass. A candidate awaiting approval does not hold the slot: a
# newer retraining may supersede it (decision 0052).
PENDING = (*ACTIVE, TriggerState.AWAITING_APPROVAL)
# The states a trigger is recorded in.
INITIAL = frozenset(
    {TriggerState.WAITING, TriggerState.TRAINING, TriggerState.NOTIFIED, TriggerState.SUPPRESSED}
)

_ENDED = frozenset({TriggerState.PROMOTED, TriggerState.KEPT})
# Which state may follow which; a state not listed is final.
TRANSITIONS: dict[TriggerState, frozenset[TriggerState]] = {
    TriggerState.WAITING: frozenset({TriggerState.TRAINING, TriggerState.FAILED}),
    TriggerState.TRAINING: frozenset(
        {TriggerState.SHADOW, TriggerState.AWAITING_APPROVAL, TriggerState.FAILED, *_ENDED}
    ),
    TriggerState.SHADOW: frozenset({TriggerState.AWAITING_APPROVAL, *_ENDED}),
    TriggerState.AWAITING_APPROVAL: _ENDED,
}


class IllegalTransitionError(RuntimeError):
    """A trigger asked to move where its state table does not lead: a bug in the loop, not an error
    a user can act on (so not a :class:`~driftloop.errors.DriftloopError`)."""


def check_transition(trigger_id: int, current: str, new: str) -> None:
    """Raise :class:`IllegalTransitionError` unless ``current`` may move to ``new`` (staying is fine)."""
    was, to = TriggerState(current), TriggerState(new)
    if to != was and to not in TRANSITIONS.get(was, frozenset()):
        raise IllegalTransitionError(f"trigger {trigger_id} cannot move from {was} to {to}")


@dataclass(frozen=True)
class TriggerAction:
    """``retrain``: start one; ``notify``: tell a person (manual mode); ``suppress``: recorded, nothing
    started; ``ignore``: nothing to act on (OK, WARN)."""

    action: Literal["retrain", "notify", "suppress", "ignore"]
    reason: str


def decide(
    decision: str,
    *,
    mode: str,
    busy: int | None,
    last_started: datetime | None,
    cooldown: timedelta,
    now: datetime,
) -> TriggerAction:
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
