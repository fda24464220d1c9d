"""Calibrated drift thresholds: chunks of the reference period, their clean scores, the threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop.core.calibration import MIN_CHUNKS, calibrate, calibrated_threshold, time_chunks
from driftloop.core.profile import build_profile
from driftloop.core.relations import calibrate_reference, relation_name


def test_chunks_are_days_when_enough_days_hold_enough_rows() -> None:
    stamps = pd.date_range("2026-01-01", periods=1500, freq="288s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    unit, chunks = time_chunks(len(stamps), stamps.to_numpy(), min_rows=200)
    assert unit == "day"
    assert [len(c) for c in chunks] == [300] * 5
    assert np.array_equal(np.concatenate(chunks), np.arange(1500))


def test_small_days_fall_back_to_equal_chunks_and_too_few_rows_to_none() -> None:
    hourly = pd.date_range("2024-01-01", periods=1500, freq="h").strftime("%Y-%m-%d").to_numpy()
    unit, chunks = time_chunks(1500, hourly, min_rows=200)  # 24 rows a day: no day qualifies
    assert unit == "chunk"
    assert len(chunks) == 7
    assert min(len(c) for c in chunks) >= 200
    assert time_chunks(1500, None, min_rows=100)[1].__len__() == 8
    assert time_chunks(599, None, min_rows=200) == ("", [])


def _wandering(days: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    """A feature whose daily mean wanders by a standard deviation: the plant's temperatures, coarsely."""
    return np.concatenate([rng.normal(rng.normal(0, 1), 1, rows) for _ in range(days)])


def test_a_wandering_feature_gets_a_threshold_above_one_that_holds_still() -> None:
    rng = np.random.default_rng(0)
    days, rows = 8, 1000
    columns = {
        "wanders": _wandering(days, rows, rng),
        "still": rng.normal(0, 1, days * rows),
        "kind": rng.choice(["a", "b", "c"], days * rows).astype(object),
    }
    reference = {k: v[-rows * 2 :] for k, v in columns.items()}
    before = {k: v[: -rows * 2] for k, v in columns.items()}
    stamps = np.repeat(pd.date_range("2026-01-01", periods=days - 2, freq="D").to_numpy(), rows)
    profile = build_profile(reference, numeric=["wanders", "still"], categorical=["kind"])
    calibrated = calibrate_reference(profile, reference, before, stamps, min_rows=200)
    features = calibrated["features"]
    assert calibrated["calibration"] == {"unit": "day", "chunks": days - 2}
    assert features["wanders"]["calibration"]["rows"] == [rows] * (days - 2)
    wanders = calibrated_threshold(features["wanders"], "wasserstein", 1.25)
    still = calibrated_threshold(features["still"], "wasserstein", 1.25)
    kind = calibrated_threshold(features["kind"], "jensenshannon", 1.25)
    assert wanders is not None
    assert still is not None
    assert kind is not None
    assert wanders > 0.5
    assert still < 0.1
    assert kind < 0.1
    assert calibrated_threshold(features["kind"], "wasserstein", 1.25) is None  # not a categorical method
    assert "calibration" not in profile["features"]["wanders"]  # the profile given is left as it was


def test_profiles_from_before_calibration_have_no_calibrated_threshold() -> None:
    profile = build_profile({"x": np.arange(10.0)}, numeric=["x"], categorical=[])
    assert calibrated_threshold(profile["features"]["x"], "wasserstein", 1.25) is None
    two = [{"x": np.arange(5.0)}] * (MIN_CHUNKS - 1)
    assert calibrate(profile, {"x": np.arange(10.0)}, two, unit="day") == profile


@pytest.mark.parametrize("share", [0.0, 0.3])
def test_nulls_booleans_and_new_categories_in_chunks_are_scored_on_present_values(share: float) -> None:
    rng = np.random.default_rng(1)
    n = 4000
    flag = rng.choice(["True", "False"], n).astype(object)
    amount = rng.gamma(2, 12, n)
    flag[rng.random(n) < share] = None
    amount[rng.random(n) < share] = np.nan
    region = rng.choice([f"r{i}" for i in range(10)], n).astype(object)
    region[2700:2800] = "new-region"  # a level the reference never saw, in the last of 8 chunks
    columns = {"flag": flag, "amount": amount, "region": region}
    reference = {k: v[-1000:] for k, v in columns.items()}
    before = {k: v[:-1000] for k, v in columns.items()}
    profile = build_profile(reference, numeric=["amount"], categorical=["flag", "region"])
    calibrated = calibrate_reference(profile, reference, before, None, min_rows=200)
    features = calibrated["features"]
    assert calibrated["calibration"]["unit"] == "chunk"
    for name in ("flag", "amount", "region"):
        scores = features[name]["calibration"]["scores"]
        assert all(np.isfinite(v) for values in scores.values() for v in values), name
    present = features["flag"]["calibration"]["rows"]
    assert sum(present) == int(pd.Series(before["flag"]).notna().sum())
    # The chunk holding the new level scores highest for region.
    region_js = features["region"]["calibration"]["scores"]["jensenshannon"]
    assert int(np.argmax(region_js)) == len(region_js) - 1


def test_features_that_wander_together_get_a_calibrated_relation() -> None:
    rng = np.random.default_rng(2)
    days, rows = 8, 1000
    weather = np.repeat(rng.normal(0, 1, days), rows) + rng.normal(0, 1, days * rows)
    columns = {
        "air": 300 + 2 * weather,
        "process": 310 + 2 * weather + rng.normal(0, 1, days * rows),
        "torque": rng.normal(40, 10, days * rows),
    }
    reference = {k: v[-rows * 2 :] for k, v in columns.items()}
    before = {k: v[: -rows * 2] for k, v in columns.items()}
    profile = build_profile(reference, numeric=["air", "process", "torque"], categorical=[])
    calibrated = calibrate_reference(profile, reference, before, None, min_rows=200)
    assert list(calibrated["relations"]) == [relation_name("air", "process")]
    relation = calibrated["relations"]["process − air"]
    assert relation["of"] == ["air", "process"]
    # The difference does not wander: its threshold stays near the configured one, the members' do not.
    assert calibrated_threshold(relation, "wasserstein", 1.5) < 0.3
    assert calibrated_threshold(calibrated["features"]["air"], "wasserstein", 1.5) > 0.5
