"""Promotion policy (seeds 4–6): None → Staging → Production with checks, approval, evidence, audit.

Stages live in driftloop's audit (the authority) and are mirrored on MLflow: the aliases ``staging``
and ``production`` and the version tag ``driftloop.stage``. Every attempt — done, refused or already
true — is an audit entry. Stage changes of one model are serialised by its lease and carried out
crash-safely (driftloop.registry.changes): two racing promotions leave one production version and
every attempt in the history; ``kill -9`` at any step leaves a change the next command completes.

Evidence for Staging → Production arrives as :class:`CheckResult` objects named in
``policy.production_evidence``: the offline comparison today, the service's shadow comparison later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from driftloop.core.models import Stage
from driftloop.core.promotion import CHECK_TAG_PREFIX, CheckResult
from driftloop.errors import ApprovalRequiredError, NotFoundError, PolicyError, UsageError
from driftloop.registry.audit import holder_of
from driftloop.registry.changes import ALIASES, Changes, alias_op, stage_op
from driftloop.registry.checks import CheckContext, run_checks
from driftloop.registry.client import Registry
from driftloop.registry.lease import Plan, audit_entry

if TYPE_CHECKING:
    from collections.abc import Sequence

    from driftloop.core.models import ModelVersion
    from driftloop.core.promotion import Approval, Outcome, Transition
    from driftloop.registry.lease import Lease
    from driftloop.settings import Settings
    from driftloop.storage.metadata import Database
    from driftloop.tracking import Tracker

__all__ = ["ALIASES", "Promoter", "PromotionResult"]


@dataclass(frozen=True)
class PromotionResult:
    name: str
    version: int
    from_stage: Stage
    to_stage: Stage
    checks: tuple[CheckResult, ...]
    replaced: int | None = None  # the version that held the stage before
    changed: bool = True  # False: it already held the stage (idempotent repeat)


class Promoter:
    """The promotion API the CLI, the scheduler and tests use."""

    def __init__(
        self, settings: Settings, db: Database, *, tracker: Tracker, registry: Registry | None = None
    ) -> None:
        self._settings = settings
        self._policy = settings.policy
        self._tracker = tracker
        self._registry = registry or Registry(settings)
        self.changes = Changes(db, self._registry)
        self.audit = self.changes.audit

    def compliance(self, version: ModelVersion) -> list[CheckResult]:
        """Run the configured checks on ``version`` (no stage change, nothing recorded)."""
        if not version.run_id:
            return [CheckResult("tracked_run", False, "the version records no training run")]
        ctx = CheckContext(version, self._tracker.get_run(version.run_id), self._tracker, self._policy)
        return run_checks(ctx, self._policy.checks, self._policy.advisory_checks)

    def approve(self, name: str, version: int, stage: Stage, *, actor: str, comment: str) -> Approval:
        if stage not in ALIASES:
            raise UsageError("approvals are for staging or production")
        self._registry.get(name, version)  # NotFoundError for a version that does not exist
        return self.audit.approve(name, version, stage, actor, comment)

    def approved(self, name: str, version: int, stage: Stage) -> bool:
        """``name/version`` may enter ``stage`` as far as approvals go: none is required, or one is
        recorded (nothing else is judged; nothing is recorded)."""
        return not self._approval_reasons(name, version, stage)

    def promote(
        self,
        name: str,
        version: int,
        to: Stage,
        *,
        actor: str,
        comment: str = "",
        evidence: Sequence[CheckResult] = (),
    ) -> PromotionResult:
        """Move ``name/version`` to ``to``; :class:`PolicyError` (recorded) when the policy refuses, its
        subclass :class:`ApprovalRequiredError` when a missing approval is the only reason."""
        if to not in ALIASES:
            raise UsageError(
                "promote to staging or production (rollback and newer versions archive the rest)"
            )
        current = self._registry.get(name, version)
        seen = self.changes.stage(name, version)  # the audit's, never the tag anyone may set
        attempt = _Attempt(name, version, seen, to, actor, comment, ())
        if seen == to or (to == Stage.STAGING and seen == Stage.PRODUCTION):
            # Already there (or, for Staging, past it): the state asked for holds — idempotent, recorded.
            self.audit.record(name, attempt.entry(seen, "unchanged", [f"already in {seen.value}"]))
            return PromotionResult(name, version, seen, seen, (), changed=False)
        if to == Stage.STAGING:
            checks = tuple(self.compliance(current))
            self._publish(current, checks, "staging")
            reasons = [f"check {c.name} failed: {c.detail}" for c in checks if c.blocking]
        else:
            checks = tuple(evidence)
            reasons = self._production_reasons(current, seen, checks)
            self._publish(current, checks, "production", tags=False)
        approvals = self._approval_reasons(name, version, to)
        attempt = _Attempt(name, version, seen, to, actor, comment, checks)
        if reasons or approvals:
            self.audit.record(name, attempt.entry(seen, "refused", reasons + approvals))
            raise attempt.refused(reasons + approvals, waits=not reasons)
        with self.changes.held(name) as lease:
            return self._apply(lease, attempt)

    def rollback(self, name: str, *, actor: str, comment: str = "") -> PromotionResult:
        """Production back to the version the current one replaced; the current one is archived."""
        with self.changes.held(name) as lease:
            champion = self.audit.holder(name, Stage.PRODUCTION)
            if champion is None:
                raise NotFoundError(f"{name} has no production version to roll back")
            made = self.audit.last_promotion_to_production(name, champion)
            previous = made.replaced_version if made is not None else None
            if previous is None:
                self.audit.record(
                    name,
                    audit_entry(
                        champion,
                        "rollback",
                        (Stage.PRODUCTION, Stage.ARCHIVED),
                        "refused",
                        actor=actor,
                        comment=comment,
                        reasons=["no previous production version to return to"],
                    ),
                )
                raise PolicyError(
                    f"cannot roll back {name}: {name}/{champion} is the first production version "
                    "(there is no previous one to return to)"
                )
            plan = Plan(
                ops=(
                    alias_op(Stage.PRODUCTION, previous),
                    stage_op(previous, Stage.PRODUCTION),
                    stage_op(champion, Stage.ARCHIVED),
                ),
                entries=(
                    audit_entry(
                        previous,
                        "rollback",
                        (Stage.ARCHIVED, Stage.PRODUCTION),
                        "done",
                        actor=actor,
                        comment=comment,
                        reasons=[f"rolled back from {name}/{champion}"],
                        replaced=champion,
                    ),
                    audit_entry(
                        champion,
                        "demote",
                        (Stage.PRODUCTION, Stage.ARCHIVED),
                        "done",
                        actor=actor,
                        comment=comment,
                        reasons=[f"rollback to {name}/{previous}"],
                    ),
                ),
            )
            self.changes.carry_out(lease, plan)
        return PromotionResult(name, previous, Stage.ARCHIVED, Stage.PRODUCTION, (), replaced=champion)

    def withdraw(self, name: str, version: int, *, actor: str, reasons: Sequence[str]) -> bool:
        """A staging candidate that failed a later gate goes back to None (recorded); the champion stays.

        False when ``version`` no longer holds Staging (nothing to withdraw).
        """
        with self.changes.held(name) as lease:
            if self.audit.stages(name).get(version) != Stage.STAGING:
                return False
            plan = Plan(
                ops=(alias_op(Stage.STAGING, None), stage_op(version, Stage.NONE)),
                entries=(
                    audit_entry(
                        version,
                        "demote",
                        (Stage.STAGING, Stage.NONE),
                        "done",
                        actor=actor,
                        comment="",
                        reasons=reasons,
                    ),
                ),
            )
            self.changes.carry_out(lease, plan)
        return True

    def recover(self) -> list[str]:
        """Finish what interrupted promotions left (every registry command and the scheduler call it on
        start); the models that had one."""
        return self.changes.recover()

    def history(self, name: str, version: int | None = None) -> list[Transition]:
        return self.audit.history(name, version=version)

    # -- internals -------------------------------------------------------------------------------

    def _apply(self, lease: Lease, attempt: _Attempt) -> PromotionResult:
        name, version, to = attempt.name, attempt.version, attempt.to
        # Re-read under the lease: another process may have moved things since the checks ran.
        stages = self.audit.stages(name)  # under the lease: anything to adopt was adopted on taking it
        now = stages.get(version, Stage.NONE)
        if now == to:
            reason = f"{name}/{version} is already in {to.value} (a concurrent promotion got there first)"
            self.audit.record(name, attempt.entry(attempt.seen, "unchanged", [reason]))
            return PromotionResult(name, version, to, to, attempt.checks, changed=False)
        refusal = None
        held = holder_of(stages, to)
        compared = _compared_champion(attempt.checks)
        if to == Stage.PRODUCTION and now != Stage.STAGING:
            refusal = f"{name}/{version} left Staging (now {now.value}) while it was being compared"
        elif to == Stage.PRODUCTION and not isinstance(compared, _Unset) and compared != held:
            refusal = f"production changed during the comparison (was {compared}, now {held}): compare again"
        if refusal is not None:
            self.audit.record(name, attempt.entry(attempt.seen, "refused", [refusal]))
            raise attempt.refused([refusal])
        replaced = held if held != version else None
        why = f"replaces {name}/{replaced}" if replaced else f"first {to.value} version"
        ops = [alias_op(to, version)]
        if to == Stage.PRODUCTION:
            ops.append(alias_op(Stage.STAGING, None))  # it was the staging version
        ops.append(stage_op(version, to))
        entries = [attempt.entry(now, "done", [why], replaced=replaced)]
        if replaced is not None:
            # A replaced production version is archived (the rollback target); a replaced staging
            # version returns to None.
            demoted = Stage.ARCHIVED if to == Stage.PRODUCTION else Stage.NONE
            ops.append(stage_op(replaced, demoted))
            entries.append(
                audit_entry(
                    replaced,
                    "demote",
                    (to, demoted),
                    "done",
                    actor=attempt.actor,
                    comment=attempt.comment,
                    reasons=[f"replaced by {name}/{version}"],
                )
            )
        self.changes.carry_out(lease, Plan(tuple(ops), tuple(entries)))
        return PromotionResult(name, version, now, to, attempt.checks, replaced=replaced)

    def _production_reasons(
        self, version: ModelVersion, stage: Stage, evidence: Sequence[CheckResult]
    ) -> list[str]:
        if stage != Stage.STAGING:
            ref = f"{version.name}/{version.version}"
            return [f"{ref} is in {stage.value}, not Staging: promote it to staging first"]
        reasons = []
        by_name = {e.name: e for e in evidence}
        for needed in self._policy.production_evidence:
            found = by_name.get(needed)
            if found is None:
                reasons.append(f"no {needed} evidence")
            elif found.blocking:
                reasons.append(f"{needed} failed: {found.detail}")
        # Evidence beyond what the policy requires still counts against a promotion when it fails.
        required = self._policy.production_evidence
        reasons += [f"{e.name} failed: {e.detail}" for e in evidence if e.name not in required and e.blocking]
        return reasons

    def _approval_reasons(self, name: str, version: int, to: Stage) -> list[str]:
        if ALIASES[to] not in self._policy.require_approval_for:
            return []
        if any(a.stage == to for a in self.audit.approvals(name, version)):
            return []
        return [
            f"{to.value} needs an approval: driftloop approve {name} {version} --to {ALIASES[to]} --by NAME"
        ]

    def _publish(
        self, version: ModelVersion, checks: Sequence[CheckResult], stage: str, *, tags: bool = True
    ) -> None:
        """Results as version tags ``driftloop.check.<name>`` and a JSON report in the version's run."""
        if tags:
            verdicts = {f"{CHECK_TAG_PREFIX}{c.name}": _verdict(c) for c in checks}
            self._registry.set_tags(version.name, version.version, verdicts)
        if version.run_id and checks:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            report = {
                "model": version.name,
                "version": version.version,
                "stage": stage,
                "at": stamp,
                "passed": not any(c.blocking for c in checks),
                "checks": [c.to_json() for c in checks],
            }
            self._tracker.log_json(version.run_id, f"promotion/{stage}-{stamp}.json", report)


@dataclass(frozen=True)
class _Attempt:
    """One promotion attempt: what is asked, by whom, with which evidence."""

    name: str
    version: int
    seen: Stage  # the stage the version had when the attempt started
    to: Stage
    actor: str
    comment: str
    checks: tuple[CheckResult, ...]

    def entry(
        self, from_stage: Stage, outcome: Outcome, reasons: list[str], *, replaced: int | None = None
    ) -> dict[str, Any]:
        return audit_entry(
            self.version,
            "promote",
            (from_stage, self.to),
            outcome,
            actor=self.actor,
            comment=self.comment,
            reasons=reasons,
            checks=self.checks,
            replaced=replaced,
        )

    def refused(self, reasons: list[str], *, waits: bool = False) -> PolicyError:
        """The error to raise; ``waits``: only approvals are missing (:class:`ApprovalRequiredError`)."""
        kind = ApprovalRequiredError if waits else PolicyError
        return kind(
            f"promotion of {self.name}/{self.version} to {self.to.value} refused: {'; '.join(reasons)}"
        )


def _verdict(check: CheckResult) -> str:
    return ("passed" if check.passed else f"failed: {check.detail}")[:250]


class _Unset:
    pass


_UNSET = _Unset()


def _compared_champion(evidence: Sequence[CheckResult]) -> int | _Unset | None:
    """The production version the comparison evidence was computed against (if it says)."""
    for item in evidence:
        if "champion_version" in item.evidence:
            value = item.evidence["champion_version"]
            return int(value) if value is not None else None
    return _UNSET
