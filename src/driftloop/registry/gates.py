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
from typing import TYPE_CHECKING

from driftloop.core.models import Stage
from driftloop.registry.audit import holder_of
from driftloop.registry.changes import ALIASES, alias_op, stage_op
from driftloop.registry.lease import Plan, audit_entry

if TYPE_CHECKING:
    from collections.abc import Callable

    from driftloop.registry.changes import Changes

__all__ = ["GATE_ACTOR", "StageGate"]

log = logging.getLogger(__name__)

GATE_ACTOR = "driftloop-gate"


class StageGate:
    """Resolves ``name``'s ``stage`` to the audited version, handling out-of-band alias moves."""

    def __init__(
        self,
        changes: Changes,
        name: str,
        stage: Stage,
        *,
        revert: bool = True,
        alert: Callable[[str], None] | None = None,
    ) -> None:
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
            stages = changes.audit.stages(name)
            audited, actual = holder_of(stages, stage), self._actual()
            if actual == audited:
                return audited  # a stage change completed in between
            where = f"v{actual}" if actual is not None else "nowhere (deleted)"
            message = (
                f"{name}: the {self._alias} alias was moved to {where} outside driftloop; the audited "
                f"{stage.value} version is {f'v{audited}' if audited is not None else 'none'}"
            )
            # The entries name the version the alias was moved to (or, deleted, the audited one).
            version = actual if actual is not None else audited
            assert version is not None  # they differ, so one of them is a version
            move = (stages.get(version, Stage.NONE), stage)
            last = changes.audit.last(name)
            known = last is not None and (last.action, last.version, last.to_stage) == (
                "out_of_band",
                version,
                stage,
            )
            entries = []
            if not known:
                entries.append(
                    audit_entry(version, "out_of_band", move, "detected", actor=GATE_ACTOR, reasons=[message])
                )
            if self._revert:
                ops = [alias_op(stage, audited)]
                if actual is not None:
                    ops.append(stage_op(actual, stages.get(actual, Stage.NONE)))
                if audited is not None:
                    ops.append(stage_op(audited, stage))
                back = f"v{audited}" if audited is not None else "no version"
                why = f"{self._alias} alias back on {back} (policy.revert_out_of_band)"
                entries.append(audit_entry(version, "revert", move, "done", actor=GATE_ACTOR, reasons=[why]))
                changes.carry_out(lease, Plan(tuple(ops), tuple(entries)))
            elif entries:
                changes.audit.record(name, entries[0])
        if not known:
            log.error("%s%s", message, "; reverted" if self._revert else "; still serving the audited one")
            if self._alert is not None:
                self._alert(message)
        return audited
