"""The fitted transform: one definition of raw rows → features, exact through JSON in any key order."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from driftloop.core.transform import (
    INVALID,
    MIN_LEVEL_ROWS,
    NULL_LEVEL,
    OTHER_LEVEL,
    InvalidValuesError,
    Transform,
    canonical_category,
    fit,
)
from driftloop.errors import ConfigError, DataError
from driftloop.settings import PLANT_COLUMNS, ColumnSpec

DERIVED = ("power_w", "temp_diff_k", "strain_min_nm")

# Several categoricals (one integer-coded), a boolean, nulls everywhere, columns in no particular order.
MIXED = (
    ColumnSpec(name="zone", type="category", nullable=True),
    ColumnSpec(name="amount", type="float", nullable=True),
    ColumnSpec(name="plan", type="category", nullable=True),
    ColumnSpec(name="region code", type="category", nullable=True),
    ColumnSpec(name="member", type="bool", nullable=True),
    ColumnSpec(name="age", type="int", nullable=True),
    ColumnSpec(name="account", type="string", role="id"),
)


def _plant(n: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "product_variant": rng.choice(["L", "M", "H"], n),
            "air_temperature_k": rng.normal(300, 2, n),
            "process_temperature_k": rng.normal(310, 1, n),
            "rotational_speed_rpm": rng.normal(1540, 180, n).round(),
            "torque_nm": rng.normal(40, 10, n).clip(0),
            "tool_wear_min": rng.integers(0, 240, n).astype(float),
        }
    )


def _mixed(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "zone": rng.choice(["north", "south", "east", "west"], n, p=[0.3, 0.3, 0.2, 0.2]),
            "amount": rng.normal(50, 10, n),
            "plan": rng.choice(["pro", "basic", "plus"], n),
            "region code": rng.choice(["1", "2", "3", "10"], n),
            "member": rng.choice(["true", "false"], n),
            "age": rng.integers(18, 90, n).astype(float),
            "account": [f"a{i}" for i in range(n)],
        }
    )
    for column in ("zone", "amount", "plan", "member", "age"):
        frame.loc[rng.random(n) < 0.05, column] = None
    frame.loc[frame.index[3:9:2], "zone"] = "rare"  # seen, but too rarely for a column of its own
    return frame


def test_fit_learns_scaling_and_declared_levels_in_order() -> None:
    frame = _plant()
    transform = fit(frame, PLANT_COLUMNS, DERIVED, target="machine_failure")
    (variant,) = transform.categorical
    assert variant.levels == ("L", "M", "H")  # the declared order…
    assert not variant.open  # …and closed
    assert [d.name for d in transform.derived] == list(DERIVED)
    torque = next(n for n in transform.numeric if n.name == "torque_nm")
    assert torque.mean == pytest.approx(frame["torque_nm"].mean())
    assert transform.feature_names[-3:] == [
        "f_product_variant=L",
        "f_product_variant=M",
        "f_product_variant=H",
    ]
    assert {d.name: d.role for d in transform.dropped} == {
        "timestamp": "timestamp",
        "record_id": "id",
        "machine_id": "entity",
    }
    matrix = transform.encode_frame(frame)
    assert matrix.dtype == np.float32
    assert matrix.shape == (len(frame), len(transform.feature_names))
    numeric = matrix[:, : len(transform.numeric) + len(transform.derived)]
    assert np.allclose(numeric.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(numeric.std(axis=0), 1, atol=1e-4)


def test_derived_features_follow_the_physics() -> None:
    frame = _plant(3)
    transform = fit(frame, PLANT_COLUMNS, DERIVED)
    out = transform.encode_frame(frame)
    power = frame.torque_nm * frame.rotational_speed_rpm * 2 * math.pi / 60
    derived = next(d for d in transform.derived if d.name == "power_w")
    expected = ((power - derived.mean) / derived.std).astype(np.float32)
    assert np.array_equal(out[:, transform.feature_names.index("f_power_w")], expected.to_numpy())


def test_open_levels_are_sorted_rare_ones_share_other_and_nulls_get_their_own_column() -> None:
    frame = _mixed()
    transform = fit(frame, MIXED)
    zone = next(c for c in transform.categorical if c.name == "zone")
    assert zone.levels == ("east", "north", "south", "west")  # "rare" is below MIN_LEVEL_ROWS
    assert (frame["zone"] == "rare").sum() < MIN_LEVEL_ROWS
    assert zone.open
    assert zone.null_level
    assert zone.columns == ["east", "north", "south", "west", NULL_LEVEL, OTHER_LEVEL]
    member = next(c for c in transform.categorical if c.name == "member")
    assert member.boolean
    assert member.levels == ("false", "true")
    assert not member.open
    codes = next(c for c in transform.categorical if c.name == "region code")
    assert codes.levels == ("1", "10", "2", "3")
    assert not codes.null_level


def test_round_trips_through_json_exactly_whatever_the_key_order() -> None:
    # The bug this format exists for: transform.json written with sorted keys reloaded categoricals in
    # another order than the model's one-hot columns. Order lives in lists now, so no writer can lose it.
    frame = _mixed()
    transform = fit(frame, MIXED, target="y")
    for text in (transform.to_json(), json.dumps(json.loads(transform.to_json()), sort_keys=True)):
        again = Transform.from_json(text)
        assert again == transform
        assert again.feature_names == transform.feature_names
        assert np.array_equal(again.encode_frame(frame), transform.encode_frame(frame))


def test_an_edited_or_old_artifact_is_refused() -> None:
    document = json.loads(fit(_mixed(), MIXED).to_json())
    document["inputs"][0], document["inputs"][2] = document["inputs"][2], document["inputs"][0]
    with pytest.raises(DataError, match="inconsistent"):
        Transform.from_json(json.dumps(document))
    old = {"version": 1, "numeric": [], "categorical": {}, "feature_names": []}
    with pytest.raises(DataError, match=r"version 1.*retrain"):
        Transform.from_json(json.dumps(old))
    with pytest.raises(DataError, match="not a driftloop transform"):
        Transform.from_json("[1, 2]")


def test_records_encode_exactly_like_frames_in_any_column_order() -> None:
    # The service encodes JSON records without a DataFrame, MLflow's pyfunc a DataFrame: same numbers.
    frame = _mixed(300, seed=4)
    transform = fit(frame.iloc[:200], MIXED)
    shuffled = frame[list(reversed(frame.columns))]
    expected = transform.encode_frame(frame)
    assert np.array_equal(transform.encode_frame(shuffled), expected)
    records: list[dict[str, Any]] = shuffled.astype(object).where(shuffled.notna(), None).to_dict("records")
    for record in records:  # as JSON sends them: whole numbers, booleans, integer-coded categories
        if record["age"] is not None:
            record["age"] = int(record["age"])
        if record["member"] is not None:
            record["member"] = record["member"] == "true"
        record["region code"] = int(record["region code"])
    assert np.array_equal(transform.encode_records(records), expected)
    assert np.array_equal(np.vstack([transform.encode_records([r]) for r in records]), expected)


def test_unseen_levels_and_nulls_encode_as_documented() -> None:
    frame = _mixed()
    transform = fit(frame, MIXED)
    names = transform.feature_names
    row = frame.iloc[[0]].copy()
    row["zone"], row["plan"] = "atlantis", None
    out = transform.encode_frame(row)[0]
    zone = {n: out[names.index(n)] for n in names if n.startswith("f_zone=")}
    assert zone == {
        f"f_zone={c}": float(c == OTHER_LEVEL)
        for c in ("east", "north", "south", "west", NULL_LEVEL, OTHER_LEVEL)
    }
    plan = {n: out[names.index(n)] for n in names if n.startswith("f_plan=")}
    assert plan[f"f_plan={NULL_LEVEL}"] == 1.0
    assert sum(plan.values()) == 1.0
    # A null in a column that never had one in training shares <other> with the unseen levels.
    row = frame.iloc[[0]].copy()
    row["region code"] = None
    out = transform.encode_frame(row)[0]
    assert out[names.index(f"f_region code={OTHER_LEVEL}")] == 1.0
    # Numeric nulls take the fitted median.
    age = next(n for n in transform.numeric if n.name == "age")
    row["age"] = None
    assert transform.encode_frame(row)[0][names.index("f_age")] == pytest.approx(
        (age.fill - age.mean) / age.std
    )


def test_values_no_category_can_be_are_refused_with_their_place() -> None:
    transform = fit(_plant(), PLANT_COLUMNS, DERIVED)
    frame = _plant(4)
    frame["product_variant"] = frame["product_variant"].astype(object)
    frame.loc[2, "product_variant"] = "XL"  # a stranger in a closed column
    with pytest.raises(InvalidValuesError, match="product_variant row 2: 'XL'"):
        transform.encode_frame(frame)
    mixed = fit(_mixed(), MIXED)
    rows = [dict(_mixed(1).iloc[0].replace({np.nan: None})) for _ in range(2)]
    rows[1]["plan"] = ["a", "list"]
    rows[0]["member"] = "maybe"
    with pytest.raises(InvalidValuesError) as caught:
        mixed.encode_records(rows)
    assert {(name, row) for name, row, _ in caught.value.problems} == {("plan", 1), ("member", 0)}


@pytest.mark.parametrize(
    ("value", "boolean", "expected"),
    [
        (" pro ", False, "pro"),
        ("", False, None),
        (None, False, None),
        (float("nan"), False, None),
        (3, False, "3"),
        (3.0, False, "3"),
        (np.int64(7), False, "7"),
        (2.5, False, "2.5"),
        (True, False, INVALID),
        ([1], False, INVALID),
        (float("inf"), False, INVALID),
        (pd.NA, False, None),
        (True, True, "true"),
        (False, True, "false"),
        ("Yes", True, "true"),
        (" F ", True, "false"),
        (1, True, "true"),
        (0.0, True, "false"),
        ("", True, None),
        ("maybe", True, INVALID),
        (2, True, INVALID),
        (np.bool_(True), True, "true"),
    ],
)
def test_category_values_compare_as_documented(value: Any, boolean: bool, expected: Any) -> None:
    assert canonical_category(value, boolean) is expected or canonical_category(value, boolean) == expected


def test_typed_frame_is_what_an_mlflow_client_sends() -> None:
    frame = _mixed(20)
    transform = fit(frame, MIXED)
    typed = transform.typed_frame(frame)
    assert list(typed.columns) == transform.input_names
    assert typed["amount"].dtype == np.float64
    assert set(typed["member"].dropna()) <= {True, False}
    assert np.array_equal(transform.encode_frame(typed), transform.encode_frame(frame))


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown derived feature"):
        fit(_plant(), PLANT_COLUMNS, ("warp_factor",))
    with pytest.raises(DataError, match="zero rows"):
        fit(_plant().iloc[:0], PLANT_COLUMNS, DERIVED)
