"""The OpenAPI row schema and the service's validation agree on what a row may be (decision 0065)."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from driftloop.core.transform import CategoricalInput, DroppedColumn, NumericInput, Transform
from driftloop.serving.inputs import InputSpec, InvalidInput
from driftloop.serving.row_schema import row_schema

TRANSFORM = Transform(
    inputs=(
        NumericInput("load", fill=1.0, mean=1.0, std=1.0, nullable=True, min=0.0, max=10.0),
        NumericInput("cycles", fill=0.0, mean=5.0, std=2.0, nullable=False, integer=True),
        CategoricalInput("site", levels=("north", "south"), nullable=False, open=True),
        CategoricalInput("grade", levels=("A", "B"), nullable=False, open=False),
        CategoricalInput("cooled", levels=("false", "true"), nullable=True, kind="boolean"),
    ),
    dropped=(DroppedColumn("id", "id", "an identifier"),),
)
GOOD: dict[str, Any] = {"load": 2.5, "cycles": 3, "site": "east", "grade": "A", "cooled": True}


@pytest.mark.parametrize(
    ("row", "valid"),
    [
        (GOOD, True),
        ({**GOOD, "load": None, "cooled": None}, True),  # nullable
        ({**GOOD, "id": "m-1"}, True),  # a dropped column is accepted and ignored
        ({**GOOD, "load": 11.0}, False),  # above the bound
        ({**GOOD, "cycles": 2.5}, False),  # not whole
        ({**GOOD, "cycles": None}, False),  # not nullable
        ({**GOOD, "grade": "C"}, False),  # a closed category
        ({**GOOD, "load": True}, False),  # a boolean is not a number
        ({**GOOD, "colour": "red"}, False),  # unknown
        ({k: v for k, v in GOOD.items() if k != "site"}, False),  # missing
    ],
)
def test_the_schema_accepts_what_the_service_accepts(row: dict[str, Any], valid: bool) -> None:
    schema = row_schema(TRANSFORM, "m/1")
    Draft202012Validator.check_schema(schema)
    assert Draft202012Validator(schema).is_valid(row) is valid
    try:
        InputSpec.build(TRANSFORM).validate([row])
    except InvalidInput:
        accepted = False
    else:
        accepted = True
    assert accepted is valid


def test_observed_levels_of_an_open_category_are_not_published() -> None:
    schema = row_schema(TRANSFORM, "m/1")
    assert "north" not in str(schema)
    assert schema["properties"]["grade"] == {"type": "string", "enum": ["A", "B"]}
