"""A candidate's way from registration to production, and what happens at each gate.

Staging (the compliance checks) → the offline comparison with the champion → shadow (when configured)
→ an approval (when the policy asks) → Production and its rollback guard. A failed gate withdraws the
candidate and keeps the champion, with the reason recorded (:meth:`Gates.keep`). The decisions are the
registry's and monitoring's; this module only sequences them and records each step on the trigger.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from driftloop.core.models import Stage
from driftloop.core.triggers import TriggerState
from driftloop.errors import ApprovalRequiredError, ConflictError, DriftloopError, PolicyError
from driftloop.monitoring.live import SHADOW_EVIDENCE, shadow_comparison
from driftloop.pipeline.promotion import EVIDENCE_NAME, offline_comparison
from driftloop.scheduling.events import LoopEvent
from driftloop.storage import store_for

if TYPE_CHECKING:
    from collections.abc import Callable

    from driftloop.core.models import ModelVersion
    from driftloop.registry import Registry
    from driftloop.registry.promotion import Promoter
    from driftloop.scheduling.guard import RollbackGuard
    from driftloop.scheduling.ledger import Trigger
    from driftloop.settings import Settings
    from driftloop.tracking import Tracker

__all__ = ["ACTOR", "Gates"]

log = logging.getLogger(__name__)

ACTOR = "driftloop-loop"  # who the audit history says promoted, withdrew or rolled back


class Gates:
    """One model's gates. ``update`` changes the trigger under its lease (the loop's), ``emit`` posts a
    :class:`LoopEvent`, ``clock`` is the loop's clock (how long a candidate may wait in shadow)."""

    def __init__(
        self,
        settings: Settings,
        promoter: Promoter,
        *,
        registry: Registry,
        tracker: Tracker,
        guard: RollbackGuard,
        update: Callable[..., Trigger],
        emit: Callable[[LoopEvent], None],
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._promoter = promoter
        self._registry = registry
        self._tracker = tracker
        self._guard = guard
        self._update = update
        self._emit = emit
        self._clock = clock
        self._name = settings.registry.model_name

    def gate(self, trigger: Trigger, version: int) -> Trigger:
        """Take a registered candidate through the gates from the start (each one idempotent, so a
        resumed trigger may pass them again). A gate that cannot be judged fails: the champion stays.
        :class:`ConflictError` when the trigger's lease was lost (the new holder carries on)."""
        try:
            return self._gate(trigger, version)
        except ConflictError:  # the lease was lost: the new holder carries on, nothing is recorded here
            raise
        except DriftloopError as exc:  # a gate that cannot be judged (no labels, registry down) is failed
            return self.keep(trigger, f"a gate could not be judged: {_headline(exc)}", version)

    def _gate(self, trigger: Trigger, version: int) -> Trigger:
        settings = self._settings
        if self._stage(version) == Stage.PRODUCTION:  # promoted by a worker that died before recording it
            return self._promoted(trigger, version, [], replaced=None)
        try:
            self._promoter.promote(
                self._name, version, Stage.STAGING, actor=ACTOR, comment=f"trigger {trigger.id}"
            )
        except PolicyError as exc:
            return self.keep(trigger, f"compliance checks refused it: {_headline(exc)}", version)
        champion = self._champion()
        if champion is None:
            return self._promote(trigger, version, [])
        offline = offline_comparison(
            settings, self._tracker, self._registry, self._registry.get(self._name, version)
        )
        trigger = self._update(trigger.id, detail={EVIDENCE_NAME: offline.to_json()})
        if offline.blocking:
            return self.keep(trigger, f"offline comparison: {offline.detail}", version)
        self._emit(LoopEvent("candidate", f"offline: {offline.detail}", version))
        if settings.policy.shadow_min_labels > 0 and settings.serving.shadow:
            trigger = self._update(
                trigger.id,
                state=TriggerState.SHADOW,
                shadow_since=trigger.shadow_since or datetime.now(UTC),
                detail={"shadow_clock": trigger.detail.get("shadow_clock") or self._clock().isoformat()},
            )
            self._emit(
                LoopEvent("shadow", f"{self._name}/{version} in shadow beside v{champion.version}", version)
            )
            return trigger
        return self._promote(trigger, version, [offline])

    def judge_shadow(self, trigger: Trigger) -> Trigger:
        """A candidate in shadow, judged on the live evidence so far: promoted, kept, or left to wait."""
        now = self._clock()
        version = trigger.candidate_version
        assert version is not None, "a trigger in shadow has a candidate"
        assert trigger.shadow_since is not None, "a trigger in shadow records since when"
        settled = self._settled(trigger, version)
        if settled is not None:
            return settled
        champion = self._champion()
        if champion is None:
            return self._promote(trigger, version, [])
        threshold = _threshold(self._tracker, champion)
        shadow = shadow_comparison(
            self._settings,
            store_for(self._settings),
            challenger=version,
            champion=champion.version,
            threshold=threshold,
            since=trigger.shadow_since,
        )
        self._update(trigger.id, detail={SHADOW_EVIDENCE: shadow.to_json()})
        if shadow.evidence.get("pending"):
            waited = now - datetime.fromisoformat(trigger.detail.get("shadow_clock", now.isoformat()))
            if waited > timedelta(hours=self._settings.policy.shadow_max_hours):
                return self.keep(
                    trigger, f"shadow evidence still short after {waited}: {shadow.detail}", version
                )
            return trigger
        if shadow.blocking:
            return self.keep(trigger, f"shadow comparison: {shadow.detail}", version)
        self._emit(LoopEvent("shadow", f"shadow: {shadow.detail}", version))
        offline = offline_comparison(
            self._settings, self._tracker, self._registry, self._registry.get(self._name, version)
        )
        return self._promote(trigger, version, [offline, shadow])

    def _settled(self, trigger: Trigger, version: int) -> Trigger | None:
        """The outcome when the candidate's stage already decides it (None: still to be judged)."""
        stage = self._stage(version)
        if stage == Stage.PRODUCTION:  # promoted by a worker that died before recording it, or by hand
            return self._promoted(trigger, version, [], replaced=None)
        if stage != Stage.STAGING:  # a newer candidate took Staging, or a person moved it out
            where = "in shadow" if trigger.state == TriggerState.SHADOW else "awaiting approval"
            return self.keep(trigger, f"{self._name}/{version} left Staging while {where}", version)
        return None

    def judge_approval(self, trigger: Trigger) -> Trigger:
        """A candidate that passed every gate, awaiting ``driftloop approve``: promoted once approved (on
        fresh evidence: the champion may have changed meanwhile), withdrawn once superseded."""
        version = trigger.candidate_version
        assert version is not None, "a trigger awaiting approval has a candidate"
        settled = self._settled(trigger, version)
        if settled is not None:
            return settled
        if not self._promoter.approved(self._name, version, Stage.PRODUCTION):
            return trigger  # asked again at the next pass, without filling the audit with refusals
        self._emit(LoopEvent("approval", f"{self._name}/{version} approved; judging it once more", version))
        if trigger.shadow_since is not None:
            return self.judge_shadow(trigger)
        candidate = self._registry.get(self._name, version)
        offline = offline_comparison(self._settings, self._tracker, self._registry, candidate)
        if offline.blocking:
            return self.keep(trigger, f"offline comparison: {offline.detail}", version)
        return self._promote(trigger, version, [offline])

    def _promote(self, trigger: Trigger, version: int, evidence: list[Any]) -> Trigger:
        if not evidence:  # no champion: the comparison passes trivially, but the policy wants it on record
            candidate = self._registry.get(self._name, version)
            evidence = [offline_comparison(self._settings, self._tracker, self._registry, candidate)]
        try:
            result = self._promoter.promote(
                self._name,
                version,
                Stage.PRODUCTION,
                actor=ACTOR,
                comment=f"trigger {trigger.id}",
                evidence=evidence,
            )
        except ApprovalRequiredError as exc:  # every gate passed: it waits for a person (decision 0052)
            self._emit(LoopEvent("approval", f"awaiting approval: {exc.headline}", version))
            state = TriggerState.AWAITING_APPROVAL
            return self._update(trigger.id, state=state, detail={"waiting": exc.headline})
        except PolicyError as exc:
            return self.keep(trigger, f"promotion refused: {exc.headline}", version)
        return self._promoted(trigger, version, evidence, replaced=result.replaced)

    def _promoted(
        self, trigger: Trigger, version: int, evidence: list[Any], *, replaced: int | None
    ) -> Trigger:
        """Record a promotion that went through and start its rollback guard (once, however often a
        worker that died here is resumed)."""
        if replaced is None:  # resumed after the promotion: what it replaced is in the audit
            last = self._promoter.audit.last_promotion_to_production(self._name, version)
            replaced = last.replaced_version if last is not None else None
        self._guard.start(trigger.id, version, evidence, replaced=replaced, now=self._clock())
        trigger = self._update(trigger.id, state=TriggerState.PROMOTED)
        replacing = f", replacing v{replaced}" if replaced else ""
        self._emit(
            LoopEvent("promoted", f"{self._name}/{version} promoted to production{replacing}", version)
        )
        return trigger

    def keep(self, trigger: Trigger, why: str, version: int | None) -> Trigger:
        """A failed gate: the champion stays, the candidate (if staged) goes back to None, all recorded."""
        if version is not None:
            try:
                self._promoter.withdraw(self._name, version, actor=ACTOR, reasons=[why])
            except DriftloopError as exc:  # recorded below either way; the champion is untouched
                log.warning("could not withdraw %s/%s: %s", self._name, version, _headline(exc))
        state = TriggerState.FAILED if version is None else TriggerState.KEPT
        trigger = self._update(trigger.id, state=state, detail={"why": why})
        self._emit(LoopEvent("kept", f"champion kept: {why}", version))
        return trigger

    def _stage(self, version: int) -> Stage:
        return self._promoter.changes.stage(self._name, version)  # the audit's, not a tag anyone may set

    def _champion(self) -> ModelVersion | None:
        """The production version by the audit (an alias moved by hand is not the champion)."""
        version = self._promoter.changes.holder(self._name, Stage.PRODUCTION)
        return None if version is None else self._registry.get(self._name, version)


def _threshold(tracker: Tracker, version: ModelVersion) -> float:
    return float(tracker.get_run(version.run_id).metrics.get("threshold", 0.5)) if version.run_id else 0.5


def _headline(exc: BaseException) -> str:
    return exc.headline if isinstance(exc, DriftloopError) else str(exc)
