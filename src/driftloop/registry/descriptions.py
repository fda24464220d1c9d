"""What MLflow's UI says of a model's stages, written into descriptions (decision 0064).

driftloop's stages are the aliases ``staging`` / ``production`` and the version tag ``driftloop.stage``,
never MLflow's deprecated stage field, so MLflow's UI shows "Stage (deprecated): None" on every version
and offers no way to hide it. After every stage change, the registered model's description gets a
table of which version holds which alias and stage, and each version that holds (or held) a stage a
line saying which. These blocks start with :data:`MARKER`; whatever a person wrote above the marker is
kept, anything below it is driftloop's and is rewritten. Pure text: ``Registry.describe_stages`` does
the reading and writing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftloop.core.models import Stage

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["MARKER", "model_description", "version_description"]

MARKER = "##### Stages (kept by driftloop)"
_WHY = (
    "driftloop's stages are the aliases and the `driftloop.stage` version tag; MLflow's deprecated "
    'stage field is never set, so MLflow shows "Stage (deprecated): None" on every version.'
)
_ORDER = (Stage.PRODUCTION, Stage.STAGING, Stage.ARCHIVED, Stage.NONE)


def _own(description: str) -> str:
    """The part of ``description`` a person wrote: everything above the marker."""
    return description.split(MARKER, 1)[0].rstrip()


def _join(own: str, block: str) -> str:
    return f"{own}\n\n{block}" if own else block


def model_description(description: str, aliases: Mapping[str, int], stages: Mapping[int, Stage]) -> str:
    """``description`` with its driftloop block rewritten from ``aliases`` (alias → version) and
    ``stages`` (each version's ``driftloop.stage``): one row per alias, then per archived version."""
    by_version: dict[int, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(version, []).append(alias)
    rows = []
    for version, stage in sorted(stages.items(), key=lambda kv: (_ORDER.index(kv[1]), -kv[0])):
        held = ", ".join(f"`{a}`" for a in sorted(by_version.pop(version, [])))
        if held or stage in (Stage.PRODUCTION, Stage.STAGING):
            rows.append(f"| {held or '-'} | {version} | {stage.value} |")
    for version, names in sorted(by_version.items()):  # an alias on a version with no stage tag
        rows.append(f"| {', '.join(f'`{a}`' for a in sorted(names))} | {version} | - |")
    archived = sorted((v for v, s in stages.items() if s is Stage.ARCHIVED), reverse=True)
    lines = [MARKER, ""]
    if rows:
        lines += ["| alias | version | driftloop.stage |", "| --- | --- | --- |", *rows, ""]
    else:
        lines += ["No version holds `staging` or `production`.", ""]
    if archived:
        lines += [f"Archived: {', '.join(str(v) for v in archived)}.", ""]
    lines.append(_WHY)
    return _join(_own(description), "\n".join(lines))


def version_description(description: str, stage: Stage, aliases: list[str]) -> str | None:
    """``description`` with its driftloop line rewritten for ``stage`` and ``aliases``; None when the
    version never held a stage (no line to write or to correct)."""
    if stage is Stage.NONE and not aliases and MARKER not in description:
        return None
    held = f" (alias {', '.join(f'`{a}`' for a in sorted(aliases))})" if aliases else ""
    block = f"{MARKER}\n\n**driftloop.stage: {stage.value}**{held}. {_WHY}"
    return _join(_own(description), block)
