"""Promotion policy (seeds 4–6): None → Staging → Production with checks, approval, evidence, audit.

Stages live on MLflow: the aliases ``staging`` and ``production`` (unique per model by construction)
and the version tag ``driftloop.stage``. Every attempt — done or refused — is an audit entry in the
metadata database. Stage changes of one model happen under its database lock, after re-reading the
current holders, so two racing promotions leave one production version and two history entries.

Evidence for Staging → Production arrives as :class:`CheckResult` objects named in
``policy.production_evidence``: the offline comparison today, the service's shadow comparison later.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from driftloop.core.models import STAGE_TAG, Stage
from driftloop.core.promotion import CHECK_TAG_PREFIX, CheckResult
from driftloop.errors import NotFoundError, PolicyError, UsageError
from driftloop.registry.audit import AuditLog
from driftloop.registry.checks import CheckContext, run_checks
from driftloop.registry.client import Registry

if TYPE_CHECKING:
    from collections.abc import Sequence

    from driftloop.core.models import ModelVersion
    from driftloop.core.promotion import Approval, Outcome, Transition
    from driftloop.registry.audit import Locked
    from driftloop.settings import Settings
    from driftloop.storage.metadata import Database
    from driftloop.tracking import Tracker

__all__ = ["ALIASES", "Promoter", "PromotionResult"]

ALIASES = {Stage.STAGING: "staging", Stage.PRODUCTION: "production"}
# Test hook: hold the lock this long so a test can make two promotions overlap for real.
_HOLD_ENV = "DRIFTLOOP_TEST_LOCK_HOLD_S"


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
        self.audit = AuditLog(db)

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

    def promote(
        self, name: str, version: int, to: Stage, *, actor: str, comment: str = "",
        evidence: Sequence[CheckResult] = (),
    ) -> PromotionResult:  # fmt: skip
        """Move ``name/version`` to ``to``; :class:`PolicyError` (recorded) when the policy refuses."""
        if to not in ALIASES:
            raise UsageError(
                "promote to staging or production (rollback and newer versions archive the rest)"
            )
        current = self._registry.get(name, version)
        if current.stage == to:
            return PromotionResult(name, version, to, to, (), changed=False)
        if to == Stage.STAGING and current.stage == Stage.PRODUCTION:
            # Already past Staging: the state asked for holds (idempotent, as a re-run demo expects).
            return PromotionResult(name, version, current.stage, current.stage, (), changed=False)
        if to == Stage.STAGING:
            checks = tuple(self.compliance(current))
            self._publish(current, checks, "staging")
            reasons = [f"check {c.name} failed: {c.detail}" for c in checks if c.blocking]
        else:
            checks = tuple(evidence)
            reasons = self._production_reasons(current, checks)
            self._publish(current, checks, "production", tags=False)
        reasons += self._approval_reasons(name, version, to)
        attempt = _Attempt(name, version, current.stage, to, actor, comment, checks)
        if reasons:
            with self.audit.locked(name) as locked:
                attempt.record(locked, current.stage, "refused", reasons)
            raise attempt.refused(reasons)
        with self.audit.locked(name) as locked:
            _hold()
            return self._apply(locked, attempt)

    def rollback(self, name: str, *, actor: str, comment: str = "") -> PromotionResult:
        """Production back to the version the current one replaced; the current one is archived."""
        with self.audit.locked(name) as locked:
            _hold()
            champion = self._registry.by_alias(name, ALIASES[Stage.PRODUCTION])
            if champion is None:
                raise NotFoundError(f"{name} has no production version to roll back")
            made = locked.last_promotion_to_production(champion.version)
            previous = made.replaced_version if made is not None else None
            if previous is None:
                locked.record(
                    version=champion.version, action="rollback", from_stage=Stage.PRODUCTION,
                    to_stage=Stage.ARCHIVED, outcome="refused", actor=actor, comment=comment,
                    reasons=["no previous production version to return to"],
                )  # fmt: skip
                raise PolicyError(
                    f"cannot roll back {name}: {name}/{champion.version} is the first production version "
                    "(there is no previous one to return to)"
                )
            self._registry.set_alias(name, ALIASES[Stage.PRODUCTION], previous)
            self._registry.set_tags(name, previous, {STAGE_TAG: Stage.PRODUCTION.value})
            self._registry.set_tags(name, champion.version, {STAGE_TAG: Stage.ARCHIVED.value})
            reason = f"rolled back from {name}/{champion.version}"
            locked.record(
                version=previous, action="rollback", from_stage=Stage.ARCHIVED, to_stage=Stage.PRODUCTION,
                outcome="done", actor=actor, comment=comment, reasons=[reason],
                replaced_version=champion.version,
            )  # fmt: skip
            locked.record(
                version=champion.version, action="demote", from_stage=Stage.PRODUCTION,
                to_stage=Stage.ARCHIVED,
                outcome="done", actor=actor, comment=comment, reasons=[f"rollback to {name}/{previous}"],
            )  # fmt: skip
        return PromotionResult(
            name, previous, Stage.ARCHIVED, Stage.PRODUCTION, (), replaced=champion.version
        )

    def withdraw(self, name: str, version: int, *, actor: str, reasons: Sequence[str]) -> bool:
        """A staging candidate that failed a later gate goes back to None (recorded); the champion stays.

        False when ``version`` no longer holds Staging (nothing to withdraw).
        """
        with self.audit.locked(name) as locked:
            current = self._registry.get(name, version)
            if current.stage != Stage.STAGING:
                return False
            self._registry.delete_alias(name, ALIASES[Stage.STAGING])
            self._registry.set_tags(name, version, {STAGE_TAG: Stage.NONE.value})
            locked.record(
                version=version, action="demote", from_stage=Stage.STAGING, to_stage=Stage.NONE,
                outcome="done", actor=actor, comment="", reasons=list(reasons),
            )  # fmt: skip
        return True

    def history(self, name: str, version: int | None = None) -> list[Transition]:
        return self.audit.history(name, version=version)

    # -- internals -------------------------------------------------------------------------------

    def _apply(self, locked: Locked, attempt: _Attempt) -> PromotionResult:
        name, version, to = attempt.name, attempt.version, attempt.to
        # Re-read under the lock: another process may have moved things since the checks ran.
        current = self._registry.get(name, version)
        if current.stage == to:
            reason = f"{name}/{version} is already in {to.value} (a concurrent promotion got there first)"
            attempt.record(locked, attempt.seen, "refused", [reason])
            return PromotionResult(name, version, to, to, attempt.checks, changed=False)
        if to == Stage.PRODUCTION and current.stage != Stage.STAGING:
            reason = f"{name}/{version} left Staging (now {current.stage.value}) while it was being compared"
            attempt.record(locked, attempt.seen, "refused", [reason])
            raise attempt.refused([reason])
        holder = self._registry.by_alias(name, ALIASES[to])
        held = holder.version if holder else None
        compared = _compared_champion(attempt.checks)
        if to == Stage.PRODUCTION and not isinstance(compared, _Unset) and compared != held:
            reason = f"production changed during the comparison (was {compared}, now {held}): compare again"
            attempt.record(locked, attempt.seen, "refused", [reason])
            raise attempt.refused([reason])
        self._registry.set_alias(name, ALIASES[to], version)
        if to == Stage.PRODUCTION:
            self._registry.delete_alias(name, ALIASES[Stage.STAGING])
        self._registry.set_tags(name, version, {STAGE_TAG: to.value})
        replaced = held if held != version else None
        why = f"replaces {name}/{replaced}" if replaced else f"first {to.value} version"
        attempt.record(locked, current.stage, "done", [why], replaced=replaced)
        if replaced is not None:
            # A replaced production version is archived (the rollback target); a replaced staging
            # version returns to None.
            demoted = Stage.ARCHIVED if to == Stage.PRODUCTION else Stage.NONE
            self._registry.set_tags(name, replaced, {STAGE_TAG: demoted.value})
            locked.record(
                version=replaced, action="demote", from_stage=to, to_stage=demoted, outcome="done",
                actor=attempt.actor, comment=attempt.comment, reasons=[f"replaced by {name}/{version}"],
            )  # fmt: skip
        return PromotionResult(name, version, current.stage, to, attempt.checks, replaced=replaced)

    def _production_reasons(self, version: ModelVersion, evidence: Sequence[CheckResult]) -> list[str]:
        if version.stage != Stage.STAGING:
            ref = f"{version.name}/{version.version}"
            return [f"{ref} is in {version.stage.value}, not Staging: promote it to staging first"]
        reasons = []
        by_name = {e.name: e for e in evidence}
        for needed in self._policy.production_evidence:
            found = by_name.get(needed)
            if found is None:
                reasons.append(f"no {needed} evidence")
            elif found.blocking:
                reasons.append(f"{needed} failed: {found.detail}")
        # Evidence beyond what the policy requires still counts against a promotion when it fails.
        reasons += [f"{e.name} failed: {e.detail}" for e in evidence
                    if e.name not in self._policy.production_evidence and e.blocking]  # fmt: skip
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
            self._registry.set_tags(
                version.name, version.version,
                {f"{CHECK_TAG_PREFIX}{c.name}": _verdict(c) for c in checks},
            )  # fmt: skip
        if version.run_id and checks:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            report = {
                "model": version.name, "version": version.version, "stage": stage, "at": stamp,
                "passed": not any(c.blocking for c in checks), "checks": [c.to_json() for c in checks],
            }  # fmt: skip
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

    def record(
        self,
        locked: Locked,
        from_stage: Stage,
        outcome: Outcome,
        reasons: list[str],
        *,
        replaced: int | None = None,
    ) -> None:
        locked.record(
            version=self.version, action="promote", from_stage=from_stage, to_stage=self.to, outcome=outcome,
            actor=self.actor, comment=self.comment, reasons=reasons, checks=self.checks,
            replaced_version=replaced,
        )  # fmt: skip

    def refused(self, reasons: list[str]) -> PolicyError:
        return PolicyError(
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


def _hold() -> None:
    seconds = float(os.environ.get(_HOLD_ENV, "0") or 0)
    if seconds > 0:
        time.sleep(seconds)
