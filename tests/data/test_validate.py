from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from driftloop.data.validate import REASONS_COLUMN, validate
from driftloop.settings import PLANT_COLUMNS, ColumnSpec

GOOD = {
    "timestamp": "2026-01-01T00:00:01.000Z",
    "record_id": "r1",
    "machine_id": "M001",
    "product_variant": "L",
    "air_temperature_k": "300.1",
    "process_temperature_k": "310.2",
    "rotational_speed_rpm": "1500",
    "torque_nm": "40.5",
    "tool_wear_min": "12",
}


def _frame(*overrides: dict[str, object]) -> pd.DataFrame:
    rows = []
    for i, override in enumerate(overrides):
        row: dict[str, object] = {**GOOD, "record_id": f"r{i}"}
        row.update(override)
        rows.append(row)
    return pd.DataFrame(rows, dtype=object)


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"torque_nm": "abc"}, "torque_nm: not a number"),
        ({"torque_nm": "-3"}, "torque_nm: below 0"),
        ({"rotational_speed_rpm": "1000000"}, "rotational_speed_rpm: above 5000"),
        ({"rotational_speed_rpm": "1500.5"}, "rotational_speed_rpm: not an integer"),
        ({"air_temperature_k": None}, "air_temperature_k: missing"),
        ({"air_temperature_k": "  "}, "air_temperature_k: missing"),
        ({"air_temperature_k": "nan"}, "air_temperature_k: not a number"),
        ({"air_temperature_k": "inf"}, "air_temperature_k: not a number"),
        ({"product_variant": "X"}, "product_variant: not one of L/M/H"),
        ({"timestamp": "yesterday"}, "timestamp: not a timestamp"),
        ({"machine_id": None}, "machine_id: missing"),
    ],
)
def test_each_problem_is_rejected_with_its_reason(override: dict[str, object], reason: str) -> None:
    result = validate(_frame({}, override), PLANT_COLUMNS)
    assert len(result.valid) == 1
    assert result.rejected[REASONS_COLUMN].tolist() == [reason]
    assert result.reasons == {reason: 1}


def test_several_reasons_on_one_row_are_all_kept() -> None:
    result = validate(_frame({"torque_nm": "-1", "product_variant": "Q"}), PLANT_COLUMNS)
    assert result.rejected[REASONS_COLUMN].tolist() == [
        "product_variant: not one of L/M/H; torque_nm: below 0"
    ]


def test_duplicate_ids_keep_the_first() -> None:
    frame = _frame({}, {})
    frame.loc[1, "record_id"] = frame.loc[0, "record_id"]
    result = validate(frame, PLANT_COLUMNS)
    assert len(result.valid) == 1
    assert result.reasons == {"record_id: duplicate": 1}


def test_no_row_is_lost_and_valid_rows_are_typed() -> None:
    rng = np.random.default_rng(0)
    overrides = [{"torque_nm": "bad"} if rng.random() < 0.3 else {} for _ in range(200)]
    frame = _frame(*overrides)
    result = validate(frame, PLANT_COLUMNS)
    assert len(result.valid) + len(result.rejected) == len(frame)
    assert set(result.valid["record_id"]).isdisjoint(set(result.rejected["record_id"]))
    assert result.valid["torque_nm"].dtype == np.float64
    assert str(result.valid["timestamp"].dtype).startswith("datetime64")
    assert result.bad_share == pytest.approx(len(result.rejected) / 200)


def test_labels_must_be_zero_or_one_but_may_be_unknown() -> None:
    frame = _frame({}, {}, {})
    labels = pa.array(["1", None, "7"])
    result = validate(frame, PLANT_COLUMNS, label=("machine_failure", labels))
    assert result.reasons == {"machine_failure: not 0 or 1": 1}
    assert result.valid["machine_failure"].tolist()[0] == 1
    assert np.isnan(result.valid["machine_failure"].tolist()[1])


def test_nullable_columns_accept_blanks() -> None:
    columns = (
        ColumnSpec(name="id", type="string", role="id"),
        ColumnSpec(name="x", type="float", nullable=True, min=0),
    )
    frame = pd.DataFrame({"id": ["a", "b", "c"], "x": [None, "", "-1"]}, dtype=object)
    result = validate(frame, columns)
    assert result.reasons == {"x: below 0": 1}
    assert len(result.valid) == 2
