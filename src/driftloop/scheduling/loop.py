"""The closed loop: monitoring decision → trigger → retraining → gates → shadow → promotion → guard.

This module only sequences what the layers below decide: the trigger rule and the trigger's states
(:mod:`driftloop.core.triggers`), the pipeline (:mod:`driftloop.pipeline`), the gates — compliance
checks, comparison, shadow, approval (:mod:`driftloop.scheduling.gates`) — and the rollback guard
(:mod:`driftloop.scheduling.guard`). Every step is recorded in the :class:`Ledger`, so a scheduler
restart picks up a candidate waiting in shadow or for an approval where it was, and any failed gate
keeps the champion with the reason written down.

Work on a trigger runs under the trigger's lease (:meth:`Ledger.holding`); when its worker dies, the next
:meth:`Loop.advance` takes the trigger over and resumes it where the records say it was, with one run and
at most one candidate per trigger (docs/decisions/0043-trigger-leases.md).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from driftloop.capture import compact
from driftloop.core.runs import RunStatus
from driftloop.core.triggers import ACTIVE, PENDING, TriggerAction, TriggerState, decide
from driftloop.errors import ConflictError, DriftloopError, NotFoundError
from driftloop.logs import notify
from driftloop.monitoring.labels import labels_known_since
from driftloop.monitoring.run import monitor_once
from driftloop.pipeline import records
from driftloop.pipeline.executors import executor_for
from driftloop.pipeline.params import RunParams
from driftloop.pipeline.runner import PipelineFailedError, Runner
from driftloop.pipeline.training import training_pipeline
from driftloop.registry import Registry
from driftloop.registry.promotion import Promoter
from driftloop.runtime.holders import new_holder
from driftloop.scheduling.events import LoopEvent
from driftloop.scheduling.gates import ACTOR, Gates
from driftloop.scheduling.guard import RollbackGuard
from driftloop.scheduling.ledger import Ledger, Trigger
from driftloop.storage import store_for
from driftloop.tracking import Tracker

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from driftloop.core.models import ModelVersion
    from driftloop.monitoring.run import MonitorResult
    from driftloop.pipeline.records import RunView
    from driftloop.pipeline.runner import StepEvent
    from driftloop.settings import Settings
    from driftloop.storage.metadata import Database

__all__ = ["ACTOR", "Loop", "LoopEvent"]

log = logging.getLogger(__name__)


class Loop:
    """One model's loop over ``settings`` and the metadata database ``db``.

    ``clock`` is the loop's clock for policy times — cooldown, retraining delay, how long a candidate
    may wait in shadow, how long a guard watches — and for what it records; the demo's is simulated.
    Windows over captured traffic are always wall time, since that is what the service stamps.
    ``on_event`` sees every :class:`LoopEvent` (they are also logged and sent to the webhook).
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        on_event: Callable[[LoopEvent], None] | None = None,
        on_step: Callable[[StepEvent], None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
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
        guard = RollbackGuard(
            settings,
            self.ledger,
            self.promoter,
            registry=self.registry,
            tracker=self.tracker,
            emit=self._emit,
        )
        self.guard = guard
        self.gates = Gates(
            settings,
            self.promoter,
            registry=self.registry,
            tracker=self.tracker,
            guard=guard,
            update=self._update,
            emit=self._emit,
            clock=self._now,
        )
        self.holder = new_holder()  # this worker, in the leases of the triggers it works on
        self._lease = timedelta(seconds=settings.schedule.trigger_lease_s)
        self._held: set[int] = set()

    # -- monitoring and triggers -----------------------------------------------------------------

    def monitor(
        self,
        *,
        start: datetime,
        end: datetime,
        as_of: datetime | None = None,
        end_day: date | None = None,
        period: tuple[datetime, datetime] | None = None,
    ) -> MonitorResult:
        """One monitoring pass over captures in ``[start, end)`` (labels known by wall-clock now), then
        the trigger policy on its decision; a retraining it starts reads data up to ``end_day`` with
        labels known by ``as_of``. ``period``: the time the traffic describes (see monitor_once)."""
        # Monitoring reads Parquet only (decision 0050); the loop may write, so what a stopped service
        # shipped without compacting (close() does not compact) is in Parquet before the window is read.
        compact(store_for(self.settings))
        result = monitor_once(self.settings, start=start, end=end, period=period)
        decision = result.assessment.decision
        reason = "; ".join(result.assessment.reasons[:2]) or decision
        self.on_decision(decision, reason, decision_id=result.decision.id, as_of=as_of, end_day=end_day)
        return result

    def on_decision(
        self,
        decision: str,
        reason: str,
        *,
        decision_id: int | None = None,
        as_of: datetime | None = None,
        end_day: date | None = None,
    ) -> Trigger | None:
        """Apply the trigger policy to a monitoring decision; None when there is nothing to act on.

        A retraining starts now, or — so the new regime has labelled data to learn from — once
        ``schedule.retrain_min_labels`` labels of the drifted period (from ``end_day``, the day the
        drift was seen; default today) are known, at the latest after ``schedule.retrain_delay_hours`` on
        the loop's clock (the trigger waits, and :meth:`advance` starts it).
        """
        now = self.clock()
        busy = self._busy()
        schedule = self.settings.schedule
        action = decide(
            decision,
            mode=schedule.mode,
            busy=busy.id if busy else None,
            last_started=self.ledger.last_retraining_started(self.name),
            cooldown=timedelta(minutes=schedule.cooldown_minutes),
            now=now,
        )
        if action.action == "ignore":
            return None
        since = end_day or now.date()
        delayed = action.action == "retrain" and schedule.retrain_delay_hours > 0
        if delayed and schedule.retrain_min_labels > 0:
            delayed = not self._labels_arrived(since, as_of or now)
        state = {
            "retrain": TriggerState.WAITING if delayed else TriggerState.TRAINING,
            "notify": TriggerState.NOTIFIED,
            "suppress": TriggerState.SUPPRESSED,
        }[action.action]
        now_retraining = action.action == "retrain" and not delayed
        trigger, action = self._record(
            decision,
            reason,
            action,
            state=state,
            decision_id=decision_id,
            now=now,
            since=since,
            claimed=now_retraining,
        )
        now_retraining = now_retraining and trigger.state == TriggerState.TRAINING
        detail = {"trigger": trigger.id, "reason": reason, "action": action.action}
        self._emit(LoopEvent("trigger", f"trigger {trigger.id} ({decision}): {action.reason}", None, detail))
        if now_retraining:
            return self.retrain(trigger, as_of=as_of, end_day=end_day)
        return trigger

    def _record(
        self,
        decision: str,
        reason: str,
        action: TriggerAction,
        *,
        state: TriggerState,
        decision_id: int | None,
        now: datetime,
        since: date,
        claimed: bool,
    ) -> tuple[Trigger, TriggerAction]:
        """The trigger's row. One that would be a second retraining under way — another worker started
        one at the same moment, and the database's unique index refused this one — is recorded as
        suppressed instead."""
        add = functools.partial(
            self.ledger.add_trigger,
            model=self.name,
            kind=decision.lower(),
            mode=self.settings.schedule.mode,
            decision_id=decision_id,
            now=now,
        )
        try:
            trigger = add(
                reason=f"{reason} — {action.reason}",
                state=state,
                lease=self._lease,
                holder=self.holder if claimed else None,
                detail={"since_day": since.isoformat()},
            )
        except ConflictError:
            action = TriggerAction("suppress", f"{decision}: another retraining started at the same moment")
            trigger = add(reason=f"{reason} — {action.reason}", state=TriggerState.SUPPRESSED)
        return trigger, action

    def trigger(
        self, kind: str, reason: str, *, as_of: datetime | None = None, end_day: date | None = None
    ) -> Trigger:
        """A scheduled or manual retraining: recorded, then run now (no cooldown: someone asked).
        :class:`ConflictError` while another retraining of the model is under way (one at a time)."""
        busy = self._busy()
        if busy is not None:
            raise ConflictError(
                f"retraining {busy.id} of {self.name} is under way ({busy.state}); one at a time: "
                "see driftloop loop history"
            )
        trigger = self.ledger.add_trigger(
            model=self.name,
            kind=kind,
            reason=reason,
            mode=self.settings.schedule.mode,
            state=TriggerState.TRAINING,
            now=self.clock(),
            holder=self.holder,
            lease=self._lease,
        )
        self._emit(LoopEvent("trigger", f"trigger {trigger.id} ({kind}): {reason}"))
        return self.retrain(trigger, as_of=as_of, end_day=end_day)

    # -- retraining and the gates ----------------------------------------------------------------

    def retrain(
        self, trigger: Trigger, *, as_of: datetime | None = None, end_day: date | None = None
    ) -> Trigger:
        """Pipeline on the recent window → a new version → compliance checks (Staging) → offline
        comparison → shadow (or straight to the production decision when no shadow is configured).

        Runs under the trigger's lease; a trigger another live worker holds is returned as it is."""
        with self._working(trigger) as held:
            if held is None:
                log.info("trigger %s is being worked on by %s; left to it", trigger.id, trigger.holder)
                return trigger
            return self._retrain(held, as_of=as_of, end_day=end_day)

    def _retrain(self, trigger: Trigger, *, as_of: datetime | None, end_day: date | None) -> Trigger:
        settings = self.settings
        as_of = as_of or self.clock()
        end = end_day or (as_of - timedelta(days=1)).date()
        start = end - timedelta(days=settings.schedule.retrain_days - 1)
        params = RunParams(dataset=settings.data.dataset, start=start, end=end, as_of=as_of)
        # The run's id is on the trigger before the run exists: a worker killed in between leaves a
        # trigger whose run is missing (made afresh on takeover), never a run no trigger knows.
        run_id = records.new_run_id()
        trigger = self._update(trigger.id, state=TriggerState.TRAINING, pipeline_run=run_id)
        runner = self._runner()
        runner.create(params, trigger=f"{trigger.kind}:{trigger.id}", run_id=run_id)
        self._emit(LoopEvent("retraining", f"retraining on {start} → {end} (pipeline run {run_id})"))
        return self._run_pipeline(trigger, runner, run_id, resume=False)

    def _runner(self) -> Runner:
        settings = self.settings
        return Runner(
            settings,
            self.db,
            store_for(settings),
            training_pipeline(),
            executor_for(settings),
            on_event=self._on_step,
        )

    def _run_pipeline(self, trigger: Trigger, runner: Runner, run_id: str, *, resume: bool) -> Trigger:
        try:
            view = runner.resume(run_id) if resume else runner.execute(run_id)
        except (PipelineFailedError, DriftloopError) as exc:
            return self.gates.keep(trigger, f"the retraining pipeline failed: {_headline(exc)}", None)
        return self._registered(trigger, view)

    def _registered(self, trigger: Trigger, view: RunView) -> Trigger:
        """The trigger learns the run's candidate, which then goes through the gates."""
        ref = str(view.step("register").summary.get("model", ""))
        version = int(ref.rsplit("/", 1)[1])
        trigger = self._update(trigger.id, candidate_version=version)
        self._emit(LoopEvent("candidate", f"{self.name}/{version} registered", version))
        return self.gates.gate(trigger, version)

    def advance(self, *, as_of: datetime | None = None, end_day: date | None = None) -> list[Trigger]:
        """Start retrainings whose delay is over, take over work whose worker died, judge every candidate
        in shadow or awaiting approval, then every guard; returns the triggers that moved.

        A trigger another live worker holds is left to it."""
        now = self.clock()
        moved = []
        for trigger in self.ledger.triggers(self.name, states=PENDING):
            if trigger.state == TriggerState.WAITING and not self._ready(trigger, now, as_of or now):
                continue
            with self._working(trigger) as held:
                if held is None:
                    continue
                try:
                    after = self._advance(held, trigger.holder, as_of=as_of, end_day=end_day)
                except DriftloopError as exc:  # judged again at the next pass
                    log.warning("could not advance trigger %s: %s", trigger.id, _headline(exc))
                    continue
            if after.state != trigger.state or after.candidate_version != trigger.candidate_version:
                moved.append(after)
        self.watch_guards()
        return moved

    def _ready(self, trigger: Trigger, now: datetime, as_of: datetime) -> bool:
        """A waiting retraining may start: its delay is over, or the drifted period's labels are in."""
        schedule = self.settings.schedule
        if now >= trigger.created_at + timedelta(hours=schedule.retrain_delay_hours):
            return True
        since = trigger.detail.get("since_day")
        if schedule.retrain_min_labels <= 0 or not since:
            return False
        return self._labels_arrived(date.fromisoformat(since), as_of)

    def _labels_arrived(self, since: date, as_of: datetime) -> bool:
        """At least ``schedule.retrain_min_labels`` labels of the days from ``since`` are known by
        ``as_of`` (label files and feedback)."""
        known = labels_known_since(self.settings, since, as_of)
        wanted = self.settings.schedule.retrain_min_labels
        log.info("trigger: %d labels since %s known by %s (%d wanted)", known, since, as_of, wanted)
        return known >= wanted

    def _advance(
        self, trigger: Trigger, was: str | None, *, as_of: datetime | None, end_day: date | None
    ) -> Trigger:
        """One step for a held pending trigger; ``was``: the worker that held it before (died), if any."""
        if trigger.state == TriggerState.AWAITING_APPROVAL:  # judging it again is all a takeover does
            return self.gates.judge_approval(trigger)
        if trigger.state == TriggerState.WAITING and not was:
            return self._retrain(trigger, as_of=as_of, end_day=end_day)
        if trigger.state == TriggerState.TRAINING or was:
            # Not held by a live worker, yet not finished: its worker died (or an older driftloop left it).
            takeovers = int(trigger.detail.get("takeovers", 0)) + 1
            trigger = self._update(trigger.id, detail={"takeovers": takeovers, "taken_over_from": was or ""})
            if takeovers > self.settings.schedule.max_takeovers:
                return self._abandon(trigger, takeovers)
            candidate = trigger.candidate_version
            where = f"{trigger.state} with candidate v{candidate}" if candidate else trigger.state
            message = f"trigger {trigger.id}: its worker {was or '(unknown)'} died in {where}; resumed here"
            self._emit(LoopEvent("resumed", message, candidate))
            return self._resume(trigger, as_of=as_of, end_day=end_day)
        return self.gates.judge_shadow(trigger)

    def _resume(self, trigger: Trigger, *, as_of: datetime | None, end_day: date | None) -> Trigger:
        """Carry an interrupted trigger on from where its records say it was."""
        if trigger.state == TriggerState.SHADOW:
            return self.gates.judge_shadow(trigger)
        if trigger.candidate_version is not None:  # registered and learnt: the gates are idempotent
            return self.gates.gate(trigger, trigger.candidate_version)
        run = self._run_of(trigger)
        if run is None:  # never started, or killed between naming the run and creating it
            return self._retrain(trigger, as_of=as_of, end_day=end_day)
        if run.status == RunStatus.SUCCEEDED:  # killed after the run, before the trigger learnt of it
            return self._registered(trigger, run)
        self._emit(LoopEvent("retraining", f"resuming pipeline run {run.id} from its unfinished steps"))
        return self._run_pipeline(trigger, self._runner(), run.id, resume=True)

    def _run_of(self, trigger: Trigger) -> RunView | None:
        if trigger.state == TriggerState.WAITING or trigger.pipeline_run is None:
            return None
        try:
            return records.get_run(self.db, trigger.pipeline_run)
        except NotFoundError:
            return None

    def _abandon(self, trigger: Trigger, takeovers: int) -> Trigger:
        """Interrupted too often: the run is marked failed, the candidate (if any) withdrawn."""
        limit = self.settings.schedule.max_takeovers
        why = f"abandoned: its worker died {takeovers} times (schedule.max_takeovers = {limit})"
        run = self._run_of(trigger)
        if run is not None and run.status != RunStatus.SUCCEEDED:
            records.abandon_run(self.db, run.id, why)
        return self.gates.keep(trigger, why, trigger.candidate_version)

    # -- leases and stages -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _working(self, trigger: Trigger) -> Iterator[Trigger | None]:
        """:meth:`Ledger.holding` for this worker, re-entrant (None: another live worker holds it); an
        exception leaves the trigger for the next pass to resume."""
        if trigger.id in self._held:  # already ours, further up this call
            yield trigger
            return
        with self.ledger.holding(trigger, self.holder, self._lease) as held:
            if held is None:
                yield None
                return
            if trigger.holder and trigger.holder != self.holder:
                log.warning(
                    "trigger %s: taking over from %s, which died holding it", trigger.id, trigger.holder
                )
            self._held.add(held.id)
            try:
                yield held
            finally:
                self._held.discard(held.id)

    def _busy(self) -> Trigger | None:
        """The retraining under way, if any (one at a time)."""
        return next(iter(self.ledger.triggers(self.name, states=ACTIVE)), None)

    def _update(self, trigger_id: int, **changes: Any) -> Trigger:
        """Change a trigger this worker holds (:class:`ConflictError` once its lease was lost)."""
        return self.ledger.update_trigger(trigger_id, holder=self.holder, **changes)

    def watch_guards(self) -> None:
        """Judge every rollback guard (:meth:`RollbackGuard.watch`) on the loop's clock."""
        self.guard.watch(self.clock())

    def _now(self) -> datetime:
        return self.clock()  # looked up at each call: the demo and the tests replace the clock

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
