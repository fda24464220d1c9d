"""Calibrated thresholds in the monitor, minimum sample sizes, and the scenario ground truth.

The plant runs here are built as training builds the profile: the hold-out (last 20 % of the reference
rows) summarised, calibrated on the days before it (decision 0060); no model is needed to judge the
features.
"""

from __future__ import annotations

import dataclasses
import io
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

from driftloop.core.profile import build_profile
from driftloop.core.relations import calibrate_reference
from driftloop.monitoring.assess import assess
from driftloop.monitoring.relations import attribute
from driftloop.monitoring.report import render_html, summarize
from driftloop.monitoring.stats import FeatureDrift, pick_test
from driftloop.monitoring.window import CaptureChunk
from driftloop.settings import FeatureDriftTest, MonitoringSettings, Settings
from driftloop.simulate import SimulationRequest, changed_columns, parse_drift, simulate
from driftloop.simulate.plant import SENSORS
from driftloop.storage import open_store

if TYPE_CHECKING:
    from pathlib import Path

START = date(2026, 1, 1)
REFERENCE_DAYS = 8
ONSET = START + timedelta(days=REFERENCE_DAYS)
FEATURES = (*SENSORS, "product_variant")
SCHEMA = [c for c in Settings().data.columns if c.name in FEATURES]
DEFAULTS = MonitoringSettings()


def _frame(data: bytes) -> pd.DataFrame:
    frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_filter=False)
    for name in SENSORS:
        frame[name] = pd.to_numeric(frame[name].replace("", None), errors="coerce")
    return frame


def _columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {name: frame[name].to_numpy(np.float64) for name in SENSORS} | {
        "product_variant": frame["product_variant"].replace("", None).to_numpy(object)
    }


def _run(root: Path, drift: str | None, seed: int = 3) -> tuple[dict[str, Any], pd.DataFrame]:
    """(the reference profile, the first held-out day) of a seeded plant run."""
    store = open_store(str(root))
    request = SimulationRequest(
        dataset="plant",
        start=START,
        days=REFERENCE_DAYS + 1,
        rows_per_day=2500,
        machines=20,
        seed=seed,
        label_delay=timedelta(hours=6),
        drifts=(parse_drift(drift, ONSET),) if drift else (),
    )
    days = [_frame(store.read_bytes(k)) for k in simulate(request, store).raw_keys]
    table = pd.concat(days[:REFERENCE_DAYS], ignore_index=True)
    cut = round(len(table) * 0.8)
    reference = _columns(table.iloc[cut:])
    profile = build_profile(reference, numeric=SENSORS, categorical=("product_variant",))
    before = table.iloc[:cut]
    profile = calibrate_reference(
        profile, reference, _columns(before), before["timestamp"].to_numpy(), min_rows=200
    )
    return profile, days[-1]


def _assess(profile: dict[str, Any], day: pd.DataFrame, cfg: MonitoringSettings = DEFAULTS) -> Any:
    chunk = CaptureChunk.from_columns(_columns(day), np.full(len(day), np.nan))
    return assess(profile, [chunk], schema=SCHEMA, cfg=cfg)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], pd.DataFrame]:
    return _run(tmp_path_factory.mktemp("clean"), None)


def test_the_offset_sensor_is_flagged_and_the_wandering_temperatures_are_not(
    clean: tuple[dict[str, Any], pd.DataFrame], tmp_path: Path
) -> None:
    profile, day = clean
    calm = _assess(profile, day)
    assert calm.dataset.drifted_features == (), calm.reasons
    air = next(f for f in calm.features if f.name == "air_temperature_k")
    assert air.threshold_source == "calibrated"
    assert air.threshold > DEFAULTS.numeric_threshold

    # The demo's 3 K: the size of the weather's own daily wander, so the air temperature alone scores
    # like a warm day; the process temperature did not follow, and their relation says so.
    drift = "sensor-offset:severity=3,sensor=air_temperature_k"
    _, offset_day = _run(tmp_path, drift)
    result = _assess(profile, offset_day)
    assert set(result.dataset.drifted_features) == set(changed_columns(parse_drift(drift, ONSET)))
    assert [r.name for r in result.relations if r.drifted] == ["process_temperature_k − air_temperature_k"]
    assert any(
        r.startswith("relation drift: process_temperature_k − air_temperature_k") for r in result.reasons
    )
    assert any("air_temperature_k (" in r and "higher is worse" in r for r in result.reasons)


def test_a_relation_drift_goes_to_the_member_farther_from_its_reference() -> None:
    def drift(name: str, score: float, threshold: float, *, drifted: bool = False) -> FeatureDrift:
        return FeatureDrift(name, "numeric", "wasserstein", score, threshold, drifted, "distance", 100, 100)

    air, process = drift("air", 1.2, 1.6), drift("process", 0.3, 1.4)
    relation = drift("process − air", 3.0, 0.4, drifted=True)
    members = {"process − air": ("air", "process")}
    attributed = attribute([air, process], [relation], members)
    assert [(f.name, f.drifted, f.via) for f in attributed] == [
        ("air", True, "process − air"),
        ("process", False, None),
    ]
    calm = dataclasses.replace(relation, drifted=False)
    assert attribute([air, process], [calm], members) == (air, process)
    # A member that drifted on its own already explains the relation: nothing is added.
    loud = dataclasses.replace(process, score=2.0, drifted=True)
    assert attribute([air, loud], [relation], members) == (air, loud)


def test_explicit_overrides_win_over_calibration(clean: tuple[dict[str, Any], pd.DataFrame]) -> None:
    profile, day = clean
    strict = MonitoringSettings(features={"air_temperature_k": FeatureDriftTest(method="psi", threshold=9.0)})
    air = next(f for f in _assess(profile, day, strict).features if f.name == "air_temperature_k")
    assert (air.method, air.threshold, air.threshold_source) == ("psi", 9.0, "override")
    reference = profile["features"]["air_temperature_k"]
    assert pick_test("numeric", 5000, strict, "air_temperature_k", reference).source == "override"
    off = MonitoringSettings(calibrated_thresholds=False)
    assert pick_test("numeric", 5000, off, "air_temperature_k", reference).threshold == 0.1


def test_a_profile_without_calibration_falls_back_to_the_configured_thresholds(
    clean: tuple[dict[str, Any], pd.DataFrame],
) -> None:
    profile, day = clean
    old = {**profile, "features": {k: {**v} for k, v in profile["features"].items()}}
    for entry in old["features"].values():
        entry.pop("calibration")
    result = _assess(old, day)
    assert {f.threshold_source for f in result.features} == {"configured"}
    assert {f.threshold for f in result.features} == {0.1}


def test_wandering_features_keep_their_distance_on_small_windows(
    clean: tuple[dict[str, Any], pd.DataFrame],
) -> None:
    profile, _ = clean
    reference = profile["features"]
    wanders = pick_test("numeric", 300, DEFAULTS, "air_temperature_k", reference["air_temperature_k"])
    still = pick_test("numeric", 300, DEFAULTS, "torque_nm", reference["torque_nm"])
    assert (wanders.method, wanders.source) == ("wasserstein", "calibrated")
    assert (still.method, still.threshold) == ("ks", DEFAULTS.p_value)


def test_one_prediction_is_insufficient_data_not_a_verdict(
    clean: tuple[dict[str, Any], pd.DataFrame],
) -> None:
    profile, day = clean
    result = _assess(profile, day.iloc[:1])
    assert result.decision == "INSUFFICIENT"
    assert result.reasons[0].startswith("insufficient data: 1 prediction in the window, fewer than")
    assert result.features == ()
    assert result.dataset.drifted_features == ()
    assert set(result.insufficient) == set(FEATURES)
    enough = _assess(profile, day.iloc[:250])
    assert enough.decision != "INSUFFICIENT"
    assert len(enough.features) == len(FEATURES)


def test_reports_say_which_way_is_worse_and_keep_the_summary_keys(
    clean: tuple[dict[str, Any], pd.DataFrame],
) -> None:
    profile, day = clean
    result = _assess(profile, day)
    summary = summarize(result)
    for key in ("rows", "drift_share", "drifted_features", "feature_scores", "prediction_score", "alarms"):
        assert key in summary
    assert summary["feature_directions"]["torque_nm"] == "higher is worse"
    assert summary["feature_thresholds"]["air_temperature_k"] > 0.1
    assert summary["feature_threshold_sources"]["air_temperature_k"] == "calibrated"
    small = _assess(profile, day.iloc[:500])
    by_p_value = [f for f in small.features if f.statistic == "p_value"]
    assert {f.direction for f in by_p_value} == {"lower is worse"}
    # 0.05 is the chance that a clean window flags any of them: split among the p-value tests.
    assert len(by_p_value) == 4  # the temperatures wander: their calibrated distance decides
    assert {f.threshold for f in by_p_value} == {DEFAULTS.p_value / 4}
    page = render_html(result)
    assert "higher is worse" in page
    assert "calibrated from the reference" in page
    assert 'class="feature-trend-chart"' in page
