"""The stage blocks driftloop writes into MLflow descriptions (decision 0064): what they say, and that a
person's own text above them survives every rewrite."""

from __future__ import annotations

from driftloop.core.models import Stage
from driftloop.registry.descriptions import MARKER, model_description, version_description


def test_the_model_description_lists_who_holds_each_alias_and_stage() -> None:
    stages = {1: Stage.ARCHIVED, 2: Stage.PRODUCTION, 3: Stage.STAGING, 4: Stage.NONE}
    text = model_description("", {"production": 2, "staging": 3}, stages)
    assert text.startswith(MARKER)
    assert "| `production` | 2 | Production |" in text
    assert "| `staging` | 3 | Staging |" in text
    assert text.index("`production`") < text.index("`staging`")
    assert "Archived: 1." in text
    assert "| 4 |" not in text  # a version with no stage and no alias is not listed
    assert 'MLflow shows "Stage (deprecated): None"' in text


def test_a_persons_text_is_kept_and_the_block_replaced_not_repeated() -> None:
    first = model_description("Predicts machine failures.\n", {"production": 1}, {1: Stage.PRODUCTION})
    second = model_description(first, {"production": 2}, {1: Stage.ARCHIVED, 2: Stage.PRODUCTION})
    assert second.startswith("Predicts machine failures.\n\n" + MARKER)
    assert second.count(MARKER) == 1
    assert "| `production` | 2 | Production |" in second
    assert "| `production` | 1 |" not in second
    assert model_description(second, {"production": 2}, {1: Stage.ARCHIVED, 2: Stage.PRODUCTION}) == second


def test_no_alias_held_is_said_plainly() -> None:
    text = model_description("", {}, {1: Stage.NONE})
    assert "No version holds `staging` or `production`." in text


def test_a_version_line_is_written_once_it_holds_a_stage_and_corrected_after() -> None:
    assert version_description("trained on the new sensors", Stage.NONE, []) is None
    staged = version_description("trained on the new sensors", Stage.STAGING, ["staging"])
    assert staged is not None
    assert staged.startswith("trained on the new sensors\n\n" + MARKER)
    assert "**driftloop.stage: Staging** (alias `staging`)" in staged
    withdrawn = version_description(staged, Stage.NONE, [])
    assert withdrawn is not None  # it held a stage: the line is corrected, not left saying Staging
    assert "**driftloop.stage: None**" in withdrawn
    assert withdrawn.count(MARKER) == 1
