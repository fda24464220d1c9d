"""The closed loop: monitoring decision → trigger → retraining → gates → shadow → promotion → guard.

This module only sequences what the layers below decide: the trigger rule (:mod:`driftloop.core.
triggers`), the pipeline (:mod:`driftloop.pipeline`), the compliance checks, approvals and comparison
(:mod:`driftloop.registry.promotion`, :mod:`driftloop.pipeline.promotion`), the live evidence and the
guard's verdict (:mod:`driftloop.monitoring.live`). Every step is recorded in the :class:`Ledger`, so a
scheduler restart picks up a candidate waiting in shadow where it was, and any failed gate keeps the
champion with the reason written down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from driftloop.core.models import Stage
from driftloop.core.triggers import decide
from driftloop.errors import DriftloopError, PolicyError
from driftloop.logs import notify
from driftloop.monitoring.live import SHADOW_EVIDENCE, guard_verdict, shadow_comparison
from driftloop.monitoring.run import monitor_once
from driftloop.pipeline.executors import executor_for
from driftloop.pipeline.params import RunParams
from driftloop.pipeline.promotion import EVIDENCE_NAME, offline_comparison
from driftloop.pipeline.runner import PipelineFailedError, Runner
from driftloop.pipeline.training import training_pipeline
from driftloop.registry import Registry
from driftloop.registry.promotion import ALIASES, Promoter
from driftloop.scheduling.ledger import ACTIVE, Ledger, Trigger
from driftloop.storage import store_for
from driftloop.tracking import Tracker

if TYPE_CHECKING:
    from collections.abc import Callable

    from driftloop.core.models import ModelVersion
    from driftloop.monitoring.run import MonitorResult
    from driftloop.pipeline.runner import StepEvent
    from driftloop.settings import Settings
    from driftloop.storage.metadata import Database

__all__ = ["ACTOR", "Loop", "LoopEvent"]

log = logging.getLogger(__name__)

ACTOR = "driftloop-loop"  # who the audit history says promoted, withdrew or rolled back


@dataclass(frozen=True)
class LoopEvent:
    """Something the loop did, for the log, the webhook and the demo's timeline."""

    kind: str  # trigger | retraining | candidate | shadow | promoted | kept | rollback | guard-passed
    message: str
    version: int | None = None
    detail: dict[str, Any] | None = None


class Loop:
    """One model's loop over ``settings`` and the metadata database ``db``.

    ``clock`` is the loop's clock for policy times — cooldown, retraining delay, how long a candidate
    may wait in shadow, how long a guard watches — and for what it records; the demo's is simulated.
    Windows over captured traffic are always wall time, since that is what the service stamps.
    ``on_event`` sees every :class:`LoopEvent` (they are also logged and sent to the webhook).
    """

    def __init__(
        self, settings: Settings, db: Database, *, on_event: Callable[[LoopEvent], None] | None = None,
        on_step: Callable[[StepEvent], None] | None = None, clock: Callable[[], datetime] | None = None,
    ) -> None:  # fmt: skip
        self.clock = clock or (lambda: datetime.now(UTC))
        self.settings = settings
        self.db = db
        self.ledger = Ledger(db)
        self.name = settings.registry.model_name
        self.tracker = Tracker(settings)
        self.registry = Registry(settings)
        self.promoter = Promoter(settings, db, tracker=self.tracker, registry=self.registry)
        try:  # a promotion killed half-way is finished before the loop decides anything
            self.promoter.recover()
        except DriftloopError as exc:
            log.warning("cannot finish interrupted promotions yet: %s", exc)
        self._on_event = on_event
        self._on_step = on_step

    # -- monitoring and triggers -----------------------------------------------------------------

    def monitor(
        self, *, start: datetime, end: datetime, as_of: datetime | None = None, end_day: date | None = None
    ) -> MonitorResult:
        """One monitoring pass over captures in ``[start, end)`` (labels known by wall-clock now), then
        the trigger policy on its decision; a retraining it starts reads data up to ``end_day`` with
        labels known by ``as_of``."""
        result = monitor_once(self.settings, start=start, end=end)
        decision = result.assessment.decision
        reason = "; ".join(result.assessment.reasons[:2]) or decision
        self.on_decision(decision, reason, decision_id=result.decision.id, as_of=as_of, end_day=end_day)
        return result

    def on_decision(
        self, decision: str, reason: str, *, decision_id: int | None = None, as_of: datetime | None = None,
        end_day: date | None = None,
    ) -> Trigger | None:  # fmt: skip
        """Apply the trigger policy to a monitoring decision; None when there is nothing to act on.

        A retraining starts now, or after ``schedule.retrain_delay_hours`` on the loop's clock (the
        trigger waits, and :meth:`advance` starts it), so the new regime has labelled data to learn from.
        """
        now = self.clock()
        busy = next(iter(self.ledger.triggers(self.name, states=ACTIVE)), None)
        schedule = self.settings.schedule
        action = decide(
            decision, mode=schedule.mode, busy=busy.id if busy else None,
            last_started=self.ledger.last_retraining_started(self.name),
            cooldown=timedelta(minutes=schedule.cooldown_minutes), now=now,
        )  # fmt: skip
        if action.action == "ignore":
            return None
        delayed = action.action == "retrain" and schedule.retrain_delay_hours > 0
        state = {"retrain": "waiting" if delayed else "training", "notify": "notified",
                 "suppress": "suppressed"}[action.action]  # fmt: skip
        trigger = self.ledger.add_trigger(
            model=self.name, kind=decision.lower(), reason=f"{reason} — {action.reason}", mode=schedule.mode,
            state=state, decision_id=decision_id, now=now,
        )  # fmt: skip
        self._emit(LoopEvent("trigger", f"trigger {trigger.id} ({decision}): {action.reason}", None,
                             {"trigger": trigger.id, "reason": reason, "action": action.action}))  # fmt: skip
        if action.action == "retrain" and not delayed:
            return self.retrain(trigger, as_of=as_of, end_day=end_day)
        return trigger

    def trigger(
        self, kind: str, reason: str, *, as_of: datetime | None = None, end_day: date | None = None
    ) -> Trigger:
        """A scheduled or manual retraining: recorded, then run now (no cooldown: someone asked)."""
        trigger = self.ledger.add_trigger(
            model=self.name, kind=kind, reason=reason, mode=self.settings.schedule.mode, state="training",
            now=self.clock(),
        )  # fmt: skip
        self._emit(LoopEvent("trigger", f"trigger {trigger.id} ({kind}): {reason}"))
        return self.retrain(trigger, as_of=as_of, end_day=end_day)

    # -- retraining and the gates ----------------------------------------------------------------

    def retrain(
        self, trigger: Trigger, *, as_of: datetime | None = None, end_day: date | None = None
    ) -> Trigger:
        """Pipeline on the recent window → a new version → compliance checks (Staging) → offline
        comparison → shadow (or straight to the production decision when no shadow is configured)."""
        settings = self.settings
        trigger = self.ledger.update_trigger(trigger.id, state="training")
        as_of = as_of or self.clock()
        end = end_day or (as_of - timedelta(days=1)).date()
        start = end - timedelta(days=settings.schedule.retrain_days - 1)
        params = RunParams(dataset=settings.data.dataset, start=start, end=end, as_of=as_of)
        runner = Runner(settings, self.db, store_for(settings), training_pipeline(), executor_for(settings),
                        on_event=self._on_step)  # fmt: skip
        run_id = runner.create(params, trigger=f"{trigger.kind}:{trigger.id}")
        trigger = self.ledger.update_trigger(trigger.id, pipeline_run=run_id)
        self._emit(LoopEvent("retraining", f"retraining on {start} → {end} (pipeline run {run_id})"))
        try:
            view = runner.execute(run_id)
        except (PipelineFailedError, DriftloopError) as exc:
            return self._keep(trigger, f"the retraining pipeline failed: {_headline(exc)}", None)
        ref = str(view.step("register").summary.get("model", ""))
        version = int(ref.rsplit("/", 1)[1])
        trigger = self.ledger.update_trigger(trigger.id, candidate_version=version)
        self._emit(LoopEvent("candidate", f"{self.name}/{version} registered", version))
        try:
            return self._gate(trigger, version)
        except DriftloopError as exc:  # a gate that cannot be judged (no labels, registry down) is failed
            return self._keep(trigger, f"a gate could not be judged: {_headline(exc)}", version)

    def _gate(self, trigger: Trigger, version: int) -> Trigger:
        settings = self.settings
        try:
            self.promoter.promote(self.name, version, Stage.STAGING, actor=ACTOR,
                                  comment=f"trigger {trigger.id}")  # fmt: skip
        except PolicyError as exc:
            return self._keep(trigger, f"compliance checks refused it: {_headline(exc)}", version)
        champion = self.registry.by_alias(self.name, ALIASES[Stage.PRODUCTION])
        if champion is None:
            return self._promote(trigger, version, [])
        offline = offline_comparison(
            settings, self.tracker, self.registry, self.registry.get(self.name, version)
        )
        trigger = self.ledger.update_trigger(trigger.id, detail={EVIDENCE_NAME: offline.to_json()})
        if offline.blocking:
            return self._keep(trigger, f"offline comparison: {offline.detail}", version)
        self._emit(LoopEvent("candidate", f"offline: {offline.detail}", version))
        if settings.policy.shadow_min_labels > 0 and settings.serving.shadow:
            trigger = self.ledger.update_trigger(
                trigger.id, state="shadow", shadow_since=datetime.now(UTC),
                detail={"shadow_clock": self.clock().isoformat()},
            )  # fmt: skip
            self._emit(LoopEvent("shadow", f"{self.name}/{version} in shadow beside v{champion.version}",
                                 version))  # fmt: skip
            return trigger
        return self._promote(trigger, version, [offline])

    def advance(self, *, as_of: datetime | None = None, end_day: date | None = None) -> list[Trigger]:
        """Start retrainings whose delay is over, judge every candidate in shadow, then every guard;
        returns the triggers that moved."""
        now = self.clock()
        moved = []
        delay = timedelta(hours=self.settings.schedule.retrain_delay_hours)
        for trigger in self.ledger.triggers(self.name, states=("waiting",)):
            if now >= trigger.created_at + delay:
                moved.append(self.retrain(trigger, as_of=as_of, end_day=end_day))
        for trigger in self.ledger.triggers(self.name, states=("training",)):
            # A retraining whose process died (kill -9, a reboot) would block every later one.
            limit = timedelta(seconds=self.settings.pipeline.step_timeout_s * len(training_pipeline().steps))
            if datetime.now(UTC) - trigger.updated_at > limit:
                moved.append(self._keep(trigger, f"abandoned: no progress for over {limit}", None))
        for trigger in self.ledger.triggers(self.name, states=("shadow",)):
            try:
                after = self._judge_shadow(trigger, now)
            except DriftloopError as exc:  # judged again at the next pass
                log.warning("could not judge trigger %s in shadow: %s", trigger.id, _headline(exc))
                continue
            if after.state != trigger.state:
                moved.append(after)
        self.watch_guards()
        return moved

    def _judge_shadow(self, trigger: Trigger, now: datetime) -> Trigger:
        version = trigger.candidate_version
        assert version is not None, "a trigger in shadow has a candidate"
        assert trigger.shadow_since is not None, "a trigger in shadow records since when"
        candidate = self.registry.get(self.name, version)
        if candidate.stage != Stage.STAGING:
            return self._keep(trigger, f"{self.name}/{version} left Staging while in shadow", version)
        champion = self.registry.by_alias(self.name, ALIASES[Stage.PRODUCTION])
        if champion is None:
            return self._promote(trigger, version, [])
        threshold = _threshold(self.tracker, champion)
        shadow = shadow_comparison(
            self.settings, store_for(self.settings), challenger=version, champion=champion.version,
            threshold=threshold, since=trigger.shadow_since,
        )  # fmt: skip
        self.ledger.update_trigger(trigger.id, detail={SHADOW_EVIDENCE: shadow.to_json()})
        if shadow.evidence.get("pending"):
            waited = now - datetime.fromisoformat(trigger.detail.get("shadow_clock", now.isoformat()))
            if waited > timedelta(hours=self.settings.policy.shadow_max_hours):
                return self._keep(
                    trigger, f"shadow evidence still short after {waited}: {shadow.detail}", version
                )
            return trigger
        if shadow.blocking:
            return self._keep(trigger, f"shadow comparison: {shadow.detail}", version)
        self._emit(LoopEvent("shadow", f"shadow: {shadow.detail}", version))
        offline = offline_comparison(self.settings, self.tracker, self.registry, candidate)
        return self._promote(trigger, version, [offline, shadow])

    def _promote(self, trigger: Trigger, version: int, evidence: list[Any]) -> Trigger:
        if not evidence:  # no champion: the comparison passes trivially, but the policy wants it on record
            candidate = self.registry.get(self.name, version)
            evidence = [offline_comparison(self.settings, self.tracker, self.registry, candidate)]
        try:
            result = self.promoter.promote(
                self.name, version, Stage.PRODUCTION, actor=ACTOR, comment=f"trigger {trigger.id}",
                evidence=evidence,
            )  # fmt: skip
        except PolicyError as exc:
            if "needs an approval" in str(exc):  # waits in shadow; the next pass promotes once approved
                self._emit(LoopEvent("candidate", f"waiting for approval: {_headline(exc)}", version))
                return self.ledger.update_trigger(trigger.id, detail={"waiting": _headline(exc)})
            return self._keep(trigger, f"promotion refused: {_headline(exc)}", version)
        trigger = self.ledger.update_trigger(trigger.id, state="promoted")
        run = self.tracker.get_run(self.registry.get(self.name, version).run_id or "")
        now = self.clock()
        # The bar the new version must keep clearing live: what the version it replaced achieved on the
        # same live traffic (the shadow comparison), or else its own offline evaluation.
        shadow = next((e for e in evidence if e.name == SHADOW_EVIDENCE and "champion" in e.evidence), None)
        baseline = (
            float(shadow.evidence["champion"]) if shadow else float(run.metrics.get("holdout_roc_auc", 0.0))
        )
        for old in self.ledger.guards(self.name, states=("watching",)):  # one guard: the newest version
            self.ledger.update_guard(old.id, state="passed", verdict={"note": f"superseded by v{version}"})
        self.ledger.add_guard(
            model=self.name, version=version, previous_version=result.replaced, trigger_id=trigger.id,
            baseline=baseline,
            threshold=float(run.metrics.get("threshold", 0.5)),
            started_at=datetime.now(UTC), until=now + timedelta(hours=self.settings.policy.guard_hours),
        )  # fmt: skip
        replaced = f", replacing v{result.replaced}" if result.replaced else ""
        self._emit(LoopEvent("promoted", f"{self.name}/{version} promoted to production{replaced}", version))
        return trigger

    def _keep(self, trigger: Trigger, why: str, version: int | None) -> Trigger:
        """A failed gate: the champion stays, the candidate (if staged) goes back to None, all recorded."""
        if version is not None:
            try:
                self.promoter.withdraw(self.name, version, actor=ACTOR, reasons=[why])
            except DriftloopError as exc:  # recorded below either way; the champion is untouched
                log.warning("could not withdraw %s/%s: %s", self.name, version, _headline(exc))
        state = "failed" if version is None else "kept"
        trigger = self.ledger.update_trigger(trigger.id, state=state, detail={"why": why})
        self._emit(LoopEvent("kept", f"champion kept: {why}", version))
        return trigger

    # -- the rollback guard ----------------------------------------------------------------------

    def watch_guards(self) -> None:
        """Roll back a freshly promoted version whose live error rate or decay crosses the policy; a
        guard ends (passed) at its ``until`` on the loop's clock."""
        now = self.clock()
        store = store_for(self.settings)
        for guard in self.ledger.guards(self.name, states=("watching",)):
            champion = self.registry.by_alias(self.name, ALIASES[Stage.PRODUCTION])
            if champion is None or champion.version != guard.version:
                self.ledger.update_guard(
                    guard.id, state="passed", verdict={"note": "no longer in production"}
                )
                continue
            verdict = guard_verdict(
                self.settings, store, version=guard.version, baseline=guard.baseline,
                threshold=guard.threshold, since=guard.started_at,
            )  # fmt: skip
            if verdict.rollback:
                why = "; ".join(verdict.reasons)
                result = self.promoter.rollback(self.name, actor=ACTOR, comment=f"guard: {why}")
                self.ledger.update_guard(guard.id, state="rolled-back", verdict=verdict.to_json())
                self._emit(LoopEvent("rollback", f"rolled back {self.name}/{guard.version} → "
                                     f"v{result.version}: {why}", result.version))  # fmt: skip
            elif now >= guard.until:
                self.ledger.update_guard(guard.id, state="passed", verdict=verdict.to_json())
                self._emit(LoopEvent("guard-passed", f"{self.name}/{guard.version} passed its guard",
                                     guard.version))  # fmt: skip

    # -- notifications ---------------------------------------------------------------------------

    def _emit(self, event: LoopEvent) -> None:
        log.log(
            logging.WARNING if event.kind in ("kept", "rollback") else logging.INFO, "loop: %s", event.message
        )
        payload = {"model": self.name, "kind": event.kind, "message": event.message, "version": event.version}
        notify(self.settings.schedule.notify_webhook, payload)
        if self._on_event is not None:
            self._on_event(event)


def _threshold(tracker: Tracker, version: ModelVersion) -> float:
    return float(tracker.get_run(version.run_id).metrics.get("threshold", 0.5)) if version.run_id else 0.5


def _headline(exc: BaseException) -> str:
    return exc.headline if isinstance(exc, DriftloopError) else str(exc)
