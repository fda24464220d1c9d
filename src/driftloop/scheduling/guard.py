"""The rollback guard: a freshly promoted version watched on live traffic, rolled back when it fails.

Started once per promotion by the loop (:meth:`RollbackGuard.start`) and judged at every pass
(:meth:`RollbackGuard.watch`); the verdict itself is :func:`driftloop.monitoring.live.guard_verdict`.
Guards are rows in ``loop_guards`` (:class:`~driftloop.scheduling.ledger.Ledger`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from driftloop.core.models import Stage
from driftloop.monitoring.live import SHADOW_EVIDENCE, guard_verdict
from driftloop.scheduling.events import LoopEvent
from driftloop.scheduling.gates import ACTOR
from driftloop.storage import store_for

if TYPE_CHECKING:
    from collections.abc import Callable

    from driftloop.registry import Registry
    from driftloop.registry.promotion import Promoter
    from driftloop.scheduling.ledger import Ledger
    from driftloop.settings import Settings
    from driftloop.tracking import Tracker

__all__ = ["RollbackGuard"]

WATCHING = ("watching",)


class RollbackGuard:
    """One model's rollback guards; ``emit`` posts what a guard did (``rollback``, ``guard-disputed``,
    ``guard-passed``). Times (``now``) are the loop's clock: a guard watches for ``policy.guard_hours``
    on it."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        promoter: Promoter,
        *,
        registry: Registry,
        tracker: Tracker,
        emit: Callable[[LoopEvent], None],
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._promoter = promoter
        self._registry = registry
        self._tracker = tracker
        self._emit = emit
        self._name = settings.registry.model_name

    def start(
        self, trigger_id: int, version: int, evidence: list[Any], *, replaced: int | None, now: datetime
    ) -> None:
        """Watch ``version``, promoted for ``trigger_id`` in place of ``replaced`` on ``evidence``, until
        ``now`` + ``policy.guard_hours``; once: a worker resumed after the promotion starts none."""
        watching = self._ledger.guards(self._name, states=WATCHING)
        if any(g.version == version and g.trigger_id == trigger_id for g in watching):
            return
        for old in watching:  # one guard: the newest version
            self._ledger.update_guard(old.id, state="passed", verdict={"note": f"superseded by v{version}"})
        run = self._tracker.get_run(self._registry.get(self._name, version).run_id or "")
        # The bar the new version must keep clearing live: what the version it replaced achieved on the
        # same live traffic (the shadow comparison), or else its own offline evaluation.
        shadow = next((e for e in evidence if e.name == SHADOW_EVIDENCE and "champion" in e.evidence), None)
        baseline = shadow.evidence["champion"] if shadow else run.metrics.get("holdout_roc_auc", 0.0)
        self._ledger.add_guard(
            model=self._name,
            version=version,
            previous_version=replaced,
            trigger_id=trigger_id,
            baseline=float(baseline),
            threshold=float(run.metrics.get("threshold", 0.5)),
            started_at=datetime.now(UTC),
            until=now + timedelta(hours=self._settings.policy.guard_hours),
        )

    def watch(self, now: datetime) -> None:
        """Roll back a watched version whose live error rate or decay crosses the policy; a guard ends
        (passed) at its ``until`` (``now`` is the loop's clock), or when its version left production."""
        store = store_for(self._settings)
        for guard in self._ledger.guards(self._name, states=WATCHING):
            if self._promoter.changes.holder(self._name, Stage.PRODUCTION) != guard.version:
                self._ledger.update_guard(
                    guard.id, state="passed", verdict={"note": "no longer in production"}
                )
                continue
            verdict = guard_verdict(
                self._settings,
                store,
                version=guard.version,
                baseline=guard.baseline,
                threshold=guard.threshold,
                since=guard.started_at,
            )
            if verdict.rollback:
                why = "; ".join(verdict.reasons)
                result = self._promoter.rollback(self._name, actor=ACTOR, comment=f"guard: {why}")
                self._ledger.update_guard(guard.id, state="rolled-back", verdict=verdict.to_json())
                message = f"rolled back {self._name}/{guard.version} → v{result.version}: {why}"
                self._emit(LoopEvent("rollback", message, result.version))
            elif verdict.reasons and not guard.verdict.get("disputed"):  # once per guard: a person looks
                disputed = {**verdict.to_json(), "disputed": True}
                self._ledger.update_guard(guard.id, state="watching", verdict=disputed)
                message = f"{self._name}/{guard.version}: {verdict.reasons[0]}"
                self._emit(LoopEvent("guard-disputed", message))
            elif now >= guard.until:
                self._ledger.update_guard(guard.id, state="passed", verdict=verdict.to_json())
                self._emit(
                    LoopEvent("guard-passed", f"{self._name}/{guard.version} passed its guard", guard.version)
                )
