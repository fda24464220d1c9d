"""Gates that hold: what the service follows is the audit's stage holder, never a bare MLflow alias.

Anyone with write access to MLflow can move the ``production`` alias (the REST API, the UI) and skip
driftloop's checks, approvals and comparison. :class:`StageGate` is how the service (and anything else
that follows a stage) resolves it: the version the audit says holds the stage. An alias that points
elsewhere is an **out-of-band change**: recorded in the audit once, alerted, and — by policy
(``policy.revert_out_of_band``, default on) — put back, with the versions' stage tags, on the audited
version. It is checked on every poll and on every registry webhook.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from driftloop.core.models import Stage
from driftloop.registry.changes import ALIASES, alias_op, stage_op
from driftloop.registry.lease import Plan

if TYPE_CHECKING:
    from collections.abc import Callable

    from driftloop.registry.changes import Changes

__all__ = ["GATE_ACTOR", "StageGate"]

log = logging.getLogger(__name__)

GATE_ACTOR = "driftloop-gate"


class StageGate:
    """Resolves ``name``'s ``stage`` to the audited version, handling out-of-band alias moves."""

    def __init__(
        self, changes: Changes, name: str, stage: Stage, *, revert: bool = True,
        alert: Callable[[str], None] | None = None,
    ) -> None:  # fmt: skip
        self._changes = changes
        self._name = name
        self._stage = stage
        self._alias = ALIASES[stage]
        self._revert = revert
        self._alert = alert

    def resolve(self) -> int | None:
        """The version to follow: the audit's holder of the stage (None: none holds it)."""
        audited = self._changes.holder(self._name, self._stage)
        if self._actual() == audited:
            return audited
        return self._out_of_band()

    def _actual(self) -> int | None:
        found = self._changes.registry.by_alias(self._name, self._alias)
        return found.version if found is not None else None

    def _out_of_band(self) -> int | None:
        name, stage, changes = self._name, self._stage, self._changes
        with changes.held(name) as lease:  # waits out a promotion in flight (its alias moves first)
            audited, actual = changes.audit.holder(name, stage), self._actual()
            if actual == audited:
                return audited  # a stage change completed in between
            where = f"v{actual}" if actual is not None else "nowhere (deleted)"
            message = (
                f"{name}: the {self._alias} alias was moved to {where} outside driftloop; the audited "
                f"{stage.value} version is {f'v{audited}' if audited is not None else 'none'}"
            )
            last = changes.audit.last(name)
            known = (
                last is not None and last.action == "out_of_band" and last.to_stage == stage
                and last.version == (actual if actual is not None else audited)
            )  # fmt: skip
            entries = [] if known else [self._entry(actual, audited, "out_of_band", "detected", message)]
            if self._revert:
                stages = changes.audit.stages(name)
                ops = [alias_op(stage, audited)]
                if actual is not None:
                    ops.append(stage_op(actual, stages.get(actual, Stage.NONE)))
                if audited is not None:
                    ops.append(stage_op(audited, stage))
                back = f"v{audited}" if audited is not None else "no version"
                why = f"{self._alias} alias back on {back} (policy.revert_out_of_band)"
                entries.append(self._entry(actual, audited, "revert", "done", why))
                changes.carry_out(lease, Plan(tuple(ops), tuple(entries)))
            elif entries:
                changes.audit.record(name, entries[0])
        if not known:
            log.error("%s%s", message, "; reverted" if self._revert else "; still serving the audited one")
            if self._alert is not None:
                self._alert(message)
        return audited

    def _entry(
        self, actual: int | None, audited: int | None, action: str, outcome: str, why: str
    ) -> dict[str, Any]:
        version = actual if actual is not None else audited
        return {
            "version": version if version is not None else 0, "action": action,
            "from_stage": self._changes.audit.stages(self._name).get(version or 0, Stage.NONE).value,
            "to_stage": self._stage.value, "outcome": outcome, "actor": GATE_ACTOR, "reasons": [why],
        }  # fmt: skip
