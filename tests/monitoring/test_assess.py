"""assess(): each simulator scenario is caught by the right signal, and the decision rules themselves."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from driftloop.capture.parquet import parquet_objects
from driftloop.capture.records import normalize
from driftloop.core.profile import build_profile
from driftloop.errors import DataError
from driftloop.monitoring.assess import Assessment, assess
from driftloop.monitoring.labels import read_labels
from driftloop.monitoring.window import CaptureChunk, iter_captures
from driftloop.settings import PLANT_COLUMNS, ColumnSpec, MonitoringSettings
from tests.monitoring.conftest import PLANT_MONITORING, SENSORS, WINDOW

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.monitoring.conftest import Day, Scenario

    Plant = Callable[..., Scenario]


def _drifted(result: Assessment) -> set[str]:
    return {f.name for f in result.features if f.drifted}


def _assess_window(scenario: Scenario, *, labels: bool = True, **kwargs: Any) -> Assessment:
    profile, evaluation = scenario.reference_profile()
    return assess(
        profile,
        [scenario.window_chunk()],
        schema=PLANT_COLUMNS,
        cfg=PLANT_MONITORING,
        labels=scenario.labels if labels else None,
        evaluation=evaluation,
        **kwargs,
    )


# Severities in each sensor's units: a shift of about a fifth of a standard deviation or more
# (the temperatures, which wander by half a standard deviation a day, need more; see conftest).
@pytest.mark.parametrize(
    ("sensor", "severity"),
    [("torque_nm", 2.0), ("rotational_speed_rpm", 60.0), ("tool_wear_min", 20.0), ("air_temperature_k", 5.0)],
)
def test_sensor_offset_drifts_that_sensor_only(plant: Plant, sensor: str, severity: float) -> None:
    # Without labels: a biased sensor also costs the model accuracy (a DECAY once labels arrive).
    result = _assess_window(plant(3, f"sensor-offset:sensor={sensor},severity={severity}"), labels=False)
    assert _drifted(result) == {sensor}
    assert result.decision in ("WARN", "DRIFT")
    assert any(r.startswith(f"feature drift: {sensor} (wasserstein") for r in result.reasons)
    assert result.quality["alarms"] == []


def test_mix_shift_drifts_product_variant(plant: Plant) -> None:
    result = _assess_window(plant(4, "mix-shift"), labels=False)
    assert _drifted(result) == {"product_variant"}
    variant = next(f for f in result.features if f.name == "product_variant")
    assert variant.method == "jensenshannon"
    assert variant.score > variant.threshold
    assert result.decision == "WARN"  # one feature of six: not the dataset


def test_ambient_drifts_air_temperature(plant: Plant) -> None:
    result = _assess_window(plant(5, "ambient:severity=5,ramp_days=0"), labels=False)
    # Air and process temperature rise together (the scenario's default 5 K); nothing else moves.
    assert "air_temperature_k" in _drifted(result)
    assert _drifted(result) <= {"air_temperature_k", "process_temperature_k"}
    air = next(f for f in result.features if f.name == "air_temperature_k")
    assert air.score > 2.0  # 5 K over a 2 K standard deviation
    assert result.decision in ("WARN", "DRIFT")


def _serve(scenario: Scenario, model_name: str) -> None:
    """Capture the window day as the service does: each row's raw fields as the JSON it was sent."""
    day = scenario.window
    scores = scenario.model.score(day)
    rows = day.frame.to_dict("records")
    records = []
    for i, (row, score) in enumerate(zip(rows, scores.tolist(), strict=True)):
        inputs = {**row, **{name: float(day.columns[name][i]) for name in SENSORS}}
        records.append(
            normalize(
                {
                    "kind": "prediction",
                    "prediction_id": f"p{i:06d}",
                    "ts": row["timestamp"],
                    "model_name": model_name,
                    "model_version": 3,
                    "inputs": inputs,
                    "outputs": {"score": score},
                    "score": score,
                    "latency_ms": 1.0,
                    "fallback": False,
                    "endpoint": "/v1/predict",
                }
            )
        )
    for segment in range(3):  # three shipped WAL segments
        part = records[segment::3]
        for key, data in parquet_objects(part, f"test-seg-{segment:020d}"):
            scenario.store.write_bytes(key, data)


def test_concept_decays_without_input_drift(plant: Plant) -> None:
    """Through storage end to end: captures and the simulator's delayed labels, joined by record id."""
    scenario = plant(6, "concept:severity=1")
    _serve(scenario, "plant-failure")
    profile, evaluation = scenario.reference_profile()
    chunks = iter_captures(
        scenario.store,
        model="plant-failure",
        start=WINDOW[0],
        end=WINDOW[1],
        chunk_rows=400,
        fields=PLANT_COLUMNS,
    )
    labels = read_labels(scenario.store, *WINDOW, as_of=WINDOW[1] + timedelta(days=1), dataset="plant")
    result = assess(
        profile, chunks, schema=PLANT_COLUMNS, cfg=PLANT_MONITORING, labels=labels, evaluation=evaluation
    )
    assert result.rows == scenario.window.rows
    assert result.decision == "DECAY"
    assert _drifted(result) == set()
    assert result.prediction is not None
    assert not result.prediction.drifted
    performance = result.performance
    assert performance is not None
    assert performance["judged"]
    assert performance["labelled"] == scenario.window.rows
    assert performance["current"] < evaluation["roc_auc"] - 0.05
    assert result.reasons[0].startswith("decay: roc_auc ")
    json.dumps(result.to_json())


def test_missing_readings_raise_null_alarms(plant: Plant) -> None:
    result = _assess_window(plant(7, "missing:severity=0.1"), labels=False)
    alarmed = {alarm.split(":")[0] for alarm in result.quality["alarms"]}
    assert alarmed == set(SENSORS)
    assert all("of values are missing" in alarm for alarm in result.quality["alarms"])
    share = result.quality["features"]["torque_nm"]["null_share"]
    assert 0.07 < share < 0.13
    assert _drifted(result) == set()
    assert result.decision == "WARN"


def test_corrupt_captured_values_raise_quality_alarms_not_drift(plant: Plant) -> None:
    result = _assess_window(plant(8, "corrupt:severity=0.2"), labels=False)
    alarms = result.quality["alarms"]
    assert any(a.startswith("rotational_speed_rpm: ") and "outside [0.0, 5000.0]" in a for a in alarms)
    assert any(a.startswith("schema violations in ") for a in alarms)
    assert result.quality["features"]["product_variant"]["invalid"] > 0  # unknown variants
    assert result.quality["invalid_share"] > PLANT_MONITORING.max_invalid_share
    # Impossible readings are kept out of the drift statistics: 1,000,000 rpm would dominate them.
    assert _drifted(result) == set()
    assert result.decision != "OK"


def _valid(day: Day) -> np.ndarray:
    """Rows the service would accept (every field present, a number in range, a known variant)."""
    keep = np.ones(day.rows, dtype=np.bool_)
    for spec in PLANT_COLUMNS:
        values = day.columns.get(spec.name)
        if values is None or spec.role != "feature":
            continue
        if spec.allowed is not None:
            keep &= np.isin(values.astype(str), spec.allowed)
        else:
            keep &= np.isfinite(values) & (values >= (spec.min or 0)) & (values <= (spec.max or np.inf))
    return keep


def test_corrupt_requests_refused_by_the_service_count_as_violations(plant: Plant) -> None:
    scenario = plant(8, "corrupt:severity=0.1")
    keep = _valid(scenario.window)
    refused = int((~keep).sum())
    assert 0.03 * scenario.window.rows < refused < 0.12 * scenario.window.rows
    scenario.window = scenario.window.subset(keep)
    result = _assess_window(scenario, invalid_requests=refused)
    assert result.quality["alarms"] == [
        a for a in result.quality["alarms"] if a.startswith("schema violations")
    ]
    assert f"{refused} refused requests" in result.quality["alarms"][0]
    assert result.decision == "WARN"


# slow: many simulated no-drift days, each assessed (74 s under load)
@pytest.mark.slow
def test_no_drift_is_ok_with_few_false_alarms(plant: Plant) -> None:
    decisions = {seed: _assess_window(plant(100 + seed)) for seed in range(20)}
    alarms = {seed: r.reasons for seed, r in decisions.items() if r.decision != "OK"}
    assert len(alarms) <= 1, alarms  # a false-alarm rate of at most 5 %
    judged = [r.performance is not None and r.performance["judged"] for r in decisions.values()]
    assert all(judged)  # decay was tested too, not skipped for lack of labels


# The decision rules on small synthetic windows.

SCHEMA = (
    ColumnSpec(name="id", type="string", role="id"),
    ColumnSpec(name="x", type="float", min=-10.0, max=10.0),
    ColumnSpec(name="y", type="float"),
    ColumnSpec(name="c", type="category", allowed=("a", "b")),
)
CFG = MonitoringSettings(min_labels=100)


def _profile(rng: np.random.Generator, n: int = 5000) -> dict[str, Any]:
    columns = {
        "x": rng.normal(0, 1, n),
        "y": rng.normal(5, 2, n),
        "c": rng.choice(np.array(["a", "b"], dtype=object), n),
    }
    return build_profile(columns, numeric=["x", "y"], categorical=["c"], scores=rng.beta(1, 8, n))


def _chunk(
    rng: np.random.Generator, n: int, *, shift: float = 0.0, score_shift: float = 0.0, **columns: Any
) -> CaptureChunk:
    base = {
        "x": rng.normal(shift, 1, n),
        "y": rng.normal(5 + 2 * shift, 2, n),
        "c": rng.choice(np.array(["a", "b"], dtype=object), n),
    }
    scores = np.clip(rng.beta(1, 8, n) + score_shift, 0, 1)
    return CaptureChunk.from_columns(base | columns, scores, prediction_id=[f"r{i}" for i in range(n)])


def test_empty_window_is_a_data_error() -> None:
    profile = _profile(np.random.default_rng(0))
    with pytest.raises(DataError, match="no captured predictions in the window"):
        assess(profile, [], schema=SCHEMA, cfg=CFG)


def test_dataset_drift_and_streaming_in_chunks() -> None:
    rng = np.random.default_rng(1)
    profile = _profile(rng)
    result = assess(profile, [_chunk(rng, 1500, shift=1.0) for _ in range(3)], schema=SCHEMA, cfg=CFG)
    assert result.rows == 4500
    assert _drifted(result) == {"x", "y"}
    assert result.dataset.drifted
    assert result.decision == "DRIFT"
    assert result.reasons[0] == "dataset drift: 2 of 3 features drifted (share 0.67 ≥ 0.50)"


def test_prediction_drift_alone_is_drift() -> None:
    rng = np.random.default_rng(2)
    result = assess(_profile(rng), [_chunk(rng, 3000, score_shift=0.3)], schema=SCHEMA, cfg=CFG)
    assert _drifted(result) == set()
    assert result.prediction is not None
    assert result.prediction.drifted
    assert result.decision == "DRIFT"
    assert result.reasons[0].startswith("prediction drift: prediction (wasserstein ")


def test_decay_outranks_drift_and_labels_join_by_prediction_id() -> None:
    rng = np.random.default_rng(3)
    chunk = _chunk(rng, 3000, shift=1.0)
    labels = {f"r{i}": float(rng.random() < 0.2) for i in range(3000)}  # unrelated to the scores
    evaluation = {"roc_auc": 0.9, "threshold": 0.3}
    result = assess(_profile(rng), [chunk], schema=SCHEMA, cfg=CFG, labels=labels, evaluation=evaluation)
    assert result.decision == "DECAY"
    performance = result.performance
    assert performance is not None
    assert performance["labelled"] == 3000
    assert performance["metrics"]["threshold"] == 0.3
    assert abs(performance["current"] - 0.5) < 0.05
    assert performance["bar"] == pytest.approx(0.85)
    assert [r.split(":")[0] for r in result.reasons[:2]] == ["decay", "dataset drift"]


def test_lower_is_better_decay_metric() -> None:
    rng = np.random.default_rng(4)
    chunk = _chunk(rng, 2000)
    labels = {f"r{i}": float(rng.random() < 0.5) for i in range(2000)}  # far more failures than scored
    cfg = MonitoringSettings(min_labels=100, decay_metric="brier", decay_margin=0.02)
    result = assess(_profile(rng), [chunk], schema=SCHEMA, cfg=cfg, labels=labels, evaluation={"brier": 0.05})
    assert result.decision == "DECAY"
    assert "is above 0.070" in result.reasons[0]


@pytest.mark.parametrize(
    ("labelled", "rate", "why"),
    [
        (50, 0.3, "fewer than monitoring.min_labels = 100"),
        (500, 0.0, "all 500 labelled predictions are of one class"),
    ],
)
def test_decay_not_judged_without_enough_labels(labelled: int, rate: float, why: str) -> None:
    rng = np.random.default_rng(5)
    labels = {f"r{i}": float(rng.random() < rate) for i in range(labelled)}
    result = assess(
        _profile(rng),
        [_chunk(rng, 2000)],
        schema=SCHEMA,
        cfg=CFG,
        labels=labels,
        evaluation={"roc_auc": 0.99},
    )
    assert result.performance is not None
    assert not result.performance["judged"]
    assert why in result.performance["why"]
    assert result.decision == "OK"


def test_labels_join_by_the_id_column_when_the_prediction_id_is_unknown() -> None:
    rng = np.random.default_rng(6)
    ids = np.array([f"rec-{i}" for i in range(1000)], dtype=object)
    chunk = _chunk(rng, 1000, id=ids)
    labels = {f"rec-{i}": 1.0 for i in range(0, 1000, 2)} | {f"rec-{i}": 0.0 for i in range(1, 1000, 2)}
    labels |= {"r1": 1.0}  # the prediction id wins over the record id
    result = assess(_profile(rng), [chunk], schema=SCHEMA, cfg=CFG, labels=labels, evaluation={})
    performance = result.performance
    assert performance is not None
    assert performance["labelled"] == 1000
    assert performance["positives"] == 501
    assert performance["why"] == "roc_auc is not available for the model's evaluation"


def test_quality_counts_nulls_ranges_invalid_values_and_refused_requests() -> None:
    rng = np.random.default_rng(7)
    n = 2000
    x = rng.normal(0, 1, n)
    x[:100] = 50.0  # out of range (5 %)
    x[100:300] = np.nan  # missing (10 %)
    c = rng.choice(np.array(["a", "b"], dtype=object), n)
    c[:30] = "z"  # not allowed
    chunk = _chunk(rng, n, x=x, c=c)
    chunk = CaptureChunk(**{**chunk.__dict__, "invalid": {"y": 10}, "malformed": 5})
    result = assess(_profile(rng), [chunk], schema=SCHEMA, cfg=CFG, invalid_requests=15)
    q = result.quality
    assert q["features"]["x"]["out_of_range"] == 100
    assert q["features"]["x"]["nulls"] == 200
    assert q["features"]["c"]["invalid"] == 30
    assert q["invalid_values"] == 30 + 10 + 5
    assert q["invalid_share"] == pytest.approx((45 + 15) / (n + 15))
    alarms = q["alarms"]
    assert alarms[0] == "x: 10.0% of values are missing (200 of 2000; the limit is 5.0%)"
    assert alarms[1].startswith("x: 5.0% of values are outside [-10.0, 10.0] (100 of 2000")
    assert alarms[2].startswith("schema violations in 3.0% of records")
    assert result.decision == "WARN"
    x_result = next(f for f in result.features if f.name == "x")
    assert (x_result.nulls, x_result.invalid, x_result.current_n) == (200, 100, 1700)
    assert not x_result.drifted  # the 50s are not part of the distribution


def test_feature_absent_from_the_window_is_untested_and_alarms() -> None:
    rng = np.random.default_rng(8)
    chunk = _chunk(rng, 1500)
    del chunk.columns["y"]
    result = assess(_profile(rng), [chunk], schema=SCHEMA, cfg=CFG)
    assert result.untested == ("y",)
    assert [f.name for f in result.features] == ["x", "c"]
    assert "y: no valid value in the window, its drift cannot be tested" in result.reasons
    assert result.decision == "WARN"


def test_ok_and_json_twin() -> None:
    rng = np.random.default_rng(9)
    ts = np.datetime64("2026-02-01T00:00:00", "us") + np.arange(1500) * np.timedelta64(1, "s")
    chunk = CaptureChunk.from_columns(_chunk(rng, 1500).columns, rng.beta(1, 8, 1500), ts=ts)
    result = assess(_profile(rng), [chunk], schema=SCHEMA, cfg=CFG)
    assert result.decision == "OK"
    assert result.reasons == (
        "no drift, decay or data-quality alarm in 1500 predictions (3 features tested)",
    )
    doc = json.loads(json.dumps(result.to_json()))
    assert doc["decision"] == "OK"
    assert doc["start"] == "2026-02-01T00:00:00+00:00"
    assert doc["end"] == "2026-02-01T00:24:59+00:00"
    assert [f["name"] for f in doc["features"]] == ["x", "y", "c"]
    assert "results" not in doc["dataset"]
    assert doc["performance"] is None


def _labels_the_scores_predict(rng: np.random.Generator, chunk: CaptureChunk) -> dict[str, float]:
    """Labels drawn from the scores themselves: a model whose performance holds (ROC AUC ≈ 0.7–0.8)."""
    return {
        str(pid): float(rng.random() < s) for pid, s in zip(chunk.prediction_id, chunk.score, strict=True)
    }


@pytest.mark.parametrize("shift", [{"shift": 1.0}, {"score_shift": 0.3}], ids=["dataset", "prediction"])
def test_drift_with_performance_holding_on_enough_labels_is_a_warning(shift: dict[str, float]) -> None:
    rng = np.random.default_rng(7)
    chunk = _chunk(rng, 3000, **shift)
    labels = _labels_the_scores_predict(rng, chunk)
    performance = assess(_profile(rng), [chunk], schema=SCHEMA, cfg=CFG, labels=labels, evaluation={})
    reference = {"roc_auc": 0.0, "threshold": 0.3}  # any model clears a bar of zero: it holds
    held = assess(_profile(rng), [chunk], schema=SCHEMA, cfg=CFG, labels=labels, evaluation=reference)
    assert held.performance is not None
    assert held.performance["judged"]
    assert not held.performance["decayed"]
    assert held.dataset.drifted or (held.prediction is not None and held.prediction.drifted)
    assert held.decision == "WARN"
    assert held.reasons[0].startswith("performance holds: roc_auc ")
    assert "drift alone is WARN, not a retraining" in held.reasons[0]
    # The same window without evidence either way (no labels; decay not judged) is still DRIFT.
    assert assess(_profile(rng), [chunk], schema=SCHEMA, cfg=CFG).decision == "DRIFT"
    assert performance.decision == "DRIFT"  # labels, but no evaluation to judge them against
    # Configurable: a team that retrains on drift regardless says so.
    eager = CFG.model_copy(update={"drift_when_performance_holds": "DRIFT"})
    assert (
        assess(_profile(rng), [chunk], schema=SCHEMA, cfg=eager, labels=labels, evaluation=reference).decision
        == "DRIFT"
    )


def test_drift_with_decay_is_still_decay_whatever_the_setting() -> None:
    rng = np.random.default_rng(8)
    chunk = _chunk(rng, 3000, shift=1.0)
    labels = {f"r{i}": float(rng.random() < 0.2) for i in range(3000)}  # unrelated to the scores
    result = assess(
        _profile(rng), [chunk], schema=SCHEMA, cfg=CFG, labels=labels, evaluation={"roc_auc": 0.9}
    )
    assert result.decision == "DECAY"
    assert not any(r.startswith("performance holds") for r in result.reasons)
