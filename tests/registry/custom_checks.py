"""Custom compliance checks, as a team would write them (``policy.checks = ["pkg.mod:fn"]``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftloop.core.promotion import CheckResult

if TYPE_CHECKING:
    from driftloop.registry.checks import CheckContext


def has_owner(ctx: CheckContext) -> CheckResult:
    owner = ctx.run.tags.get("owner")
    return CheckResult("has_owner", owner is not None, f"owner {owner}" if owner else "no owner tag")


def explodes(ctx: CheckContext) -> CheckResult:
    raise RuntimeError("boom")
