"""Promotion domain types, free of MLflow and of the database: checks, evidence, transitions, approvals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from datetime import datetime

    from driftloop.core.models import Stage

__all__ = ["CHECK_TAG_PREFIX", "Approval", "CheckResult", "Transition"]

CHECK_TAG_PREFIX = "driftloop.check."


@dataclass(frozen=True)
class CheckResult:
    """One named piece of evidence about a version: a compliance check or a comparison.

    ``detail`` is one human line (why it passed or failed); ``evidence`` holds the numbers behind it.
    ``required`` False means advisory: recorded, but a failure does not refuse the promotion.
    """

    name: str
    passed: bool
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)
    required: bool = True

    @property
    def blocking(self) -> bool:
        return self.required and not self.passed

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "required": self.required,
            "detail": self.detail,
            "evidence": self.evidence,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckResult:
        return cls(
            name=str(data["name"]),
            passed=bool(data["passed"]),
            detail=str(data.get("detail", "")),
            evidence=dict(data.get("evidence") or {}),
            required=bool(data.get("required", True)),
        )


Action = Literal["promote", "demote", "rollback", "adopt", "out_of_band", "revert"]
Outcome = Literal["done", "refused", "unchanged", "detected"]


@dataclass(frozen=True)
class Transition:
    """One audit entry: an attempted or completed stage change of a model version."""

    id: int
    model: str
    version: int
    action: Action
    from_stage: Stage
    to_stage: Stage
    outcome: Outcome
    actor: str
    at: datetime
    comment: str = ""
    reasons: tuple[str, ...] = ()
    checks: tuple[CheckResult, ...] = ()
    replaced_version: int | None = None  # the production version this one replaced (rollback target)


@dataclass(frozen=True)
class Approval:
    model: str
    version: int
    stage: Stage
    actor: str
    comment: str
    at: datetime
