from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from driftloop.data.transform import TransformParams, apply, apply_records, feature_frame, fit
from driftloop.errors import ConfigError, DataError
from driftloop.settings import PLANT_COLUMNS, ColumnSpec

DERIVED = ("power_w", "temp_diff_k", "strain_min_nm")


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


def test_fit_learns_scaling_and_categories() -> None:
    frame = _plant()
    params = fit(frame, PLANT_COLUMNS, DERIVED)
    assert params.categorical == {"product_variant": ["H", "L", "M"]}
    assert params.derived == list(DERIVED)
    assert params.mean["torque_nm"] == pytest.approx(frame["torque_nm"].mean())
    assert params.feature_names[-3:] == ["f_product_variant=H", "f_product_variant=L", "f_product_variant=M"]
    matrix = apply(frame, params)
    assert matrix.dtype == np.float32
    assert matrix.shape == (len(frame), len(params.feature_names))
    # Standardised on the fitting data: mean 0, sd 1 for every numeric and derived column.
    numeric = matrix[:, : len(params.numeric) + len(params.derived)]
    assert np.allclose(numeric.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(numeric.std(axis=0), 1, atol=1e-4)


def test_derived_features_follow_the_physics() -> None:
    frame = _plant(3)
    params = fit(frame, PLANT_COLUMNS, DERIVED)
    out = feature_frame(frame, params)
    power = frame.torque_nm * frame.rotational_speed_rpm * 2 * math.pi / 60
    expected = ((power - params.mean["power_w"]) / params.std["power_w"]).astype(np.float32)
    assert np.array_equal(out["f_power_w"].to_numpy(), expected.to_numpy())


def test_params_round_trip_through_json_exactly() -> None:
    frame = _plant()
    params = fit(frame, PLANT_COLUMNS, DERIVED)
    again = TransformParams.from_json(params.to_json())
    assert again == params
    assert np.array_equal(apply(frame, again), apply(frame, params))


def test_single_rows_transform_exactly_like_batches() -> None:
    # What the service does per request must equal what the pipeline did for the whole table.
    frame = _plant(50)
    params = fit(frame, PLANT_COLUMNS, DERIVED)
    batch = apply(frame, params)
    rows = np.vstack([apply(frame.iloc[[i]], params) for i in range(len(frame))])
    assert np.array_equal(batch, rows)


def test_records_transform_exactly_like_the_pipelines_frames() -> None:
    # The service transforms JSON records without a DataFrame; it must give the very same features.
    frame = _plant(200, seed=3)
    params = fit(frame, PLANT_COLUMNS, DERIVED)
    frame.loc[5, "torque_nm"] = None
    frame.loc[7, "product_variant"] = "unseen"
    frame["tool_wear_min"] = frame["tool_wear_min"].astype(int).astype(object)  # ints, as JSON sends them
    records = frame.to_dict("records")
    records[5]["torque_nm"] = None
    expected = apply(frame, params)
    assert np.array_equal(apply_records(records, params), expected)
    assert np.array_equal(np.vstack([apply_records([r], params) for r in records]), expected)
    assert expected[7, -3:].tolist() == [0.0, 0.0, 0.0]


def test_unseen_category_encodes_as_zeros_and_nulls_take_the_fill() -> None:
    columns = (
        ColumnSpec(name="id", type="string", role="id"),
        ColumnSpec(name="c", type="category"),
        ColumnSpec(name="x", type="float", nullable=True),
    )
    params = fit(pd.DataFrame({"c": ["a", "b"], "x": [1.0, 3.0]}), columns, ())
    out = feature_frame(pd.DataFrame({"c": ["z"], "x": [None]}), params)
    assert out[["f_c=a", "f_c=b"]].to_numpy().tolist() == [[0.0, 0.0]]
    assert out["f_x"].iloc[0] == 0.0  # the median (2.0) standardised


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown derived feature"):
        fit(_plant(), PLANT_COLUMNS, ("warp_factor",))
    with pytest.raises(DataError, match="zero rows"):
        fit(_plant().iloc[:0], PLANT_COLUMNS, DERIVED)
