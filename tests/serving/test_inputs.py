"""The quick per-row check of input validation never accepts what the full check refuses."""

from __future__ import annotations

import random
from typing import Any

import pytest

from driftloop.serving.inputs import InvalidInput
from tests.serving.fakes import plant_model, plant_rows

CORRUPTIONS: list[Any] = [None, True, "12", float("nan"), float("inf"), -1e9, 1e9, [], {}, "L", 0, 7.5]


def _errors(spec: Any, rows: list[Any]) -> list[Any] | None:
    try:
        spec._validate_each(rows)
    except InvalidInput as exc:
        return exc.errors
    return None


@pytest.mark.parametrize("seed", range(200))
def test_fast_path_agrees_with_the_row_by_row_check(seed: int) -> None:
    spec = plant_model(1).spec
    rng = random.Random(seed)
    rows: list[Any] = plant_rows(rng.randint(1, 40), seed=seed)
    for _ in range(rng.randint(0, 3)):  # some batches stay clean
        row = rng.choice(rows)
        action = rng.random()
        if action < 0.15:
            row.pop(rng.choice(list(row)))
        elif action < 0.25:
            row["unexpected"] = 1
        elif action < 0.3:
            rows[rows.index(row)] = [1, 2]
        else:
            row[rng.choice(list(row))] = rng.choice(CORRUPTIONS)
    expected = _errors(spec, rows)
    if all(spec._row_valid(row) for row in rows):
        assert expected is None, f"the per-row check accepted {expected}"
    try:
        spec.validate(rows)
        got = None
    except InvalidInput as exc:
        got = exc.errors
    assert got == expected


def test_clean_batches_take_the_fast_path() -> None:
    spec = plant_model(1).spec
    assert all(spec._row_valid(row) for row in plant_rows(64))
    rows = plant_rows(3)
    rows[1]["torque_nm"] = None  # nullable or not, nulls go the slow way
    assert not spec._row_valid(rows[1])


@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("value", [["L"], {"L": 1}], ids=["list", "object"])
def test_an_unhashable_category_is_a_field_error_not_a_crash(n: int, value: Any) -> None:
    rows = plant_rows(n)
    rows[-1]["product_variant"] = value
    with pytest.raises(InvalidInput) as caught:
        plant_model(1).spec.validate(rows)
    assert [(e.row, e.field, e.kind) for e in caught.value.errors] == [(n - 1, "product_variant", "type")]
