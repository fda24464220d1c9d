"""Each drift scenario changes what it claims, from its start date on, and nothing else.

Every drifted run is compared with the same request without drift: 4 days × 3,000 rows with the drift
starting on the third day, so days 0-1 must be byte-identical and days 2-3 show the effect.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from tests.simulate.support import (
    NON_SENSORS,
    SENSORS,
    START,
    Run,
    numbers,
    request,
    run,
    strict_reject,
)

if TYPE_CHECKING:
    from pathlib import Path

DAYS, ROWS = 4, 3000
DRIFT_DAY = 2
DRIFT_START = (START + timedelta(days=DRIFT_DAY)).isoformat()
SETUP = {"days": DAYS, "rows_per_day": ROWS, "machines": 10, "seed": 5}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run(tmp_path_factory.mktemp("base"), request(**SETUP))


def drifted(tmp_path: Path, *drifts: str) -> Run:
    return run(tmp_path, request(*drifts, **SETUP))


def split(base: Run, other: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw rows of the drifted days: (base, other), aligned row by row; earlier days must be identical."""
    for day in range(DRIFT_DAY):
        key = base.summary.raw_keys[day]
        assert other.store.read_bytes(key) == base.store.read_bytes(key), f"day {day} changed"
    before = pd.concat([base.raw(day) for day in range(DRIFT_DAY, DAYS)], ignore_index=True)
    after = pd.concat([other.raw(day) for day in range(DRIFT_DAY, DAYS)], ignore_index=True)
    assert list(before["record_id"]) == list(after["record_id"])
    return before, after


def assert_same_labels(base: Run, other: Run) -> None:
    assert other.summary.label_keys == base.summary.label_keys
    for key in base.summary.label_keys:
        assert other.store.read_bytes(key) == base.store.read_bytes(key), key


def assert_identical(before: pd.DataFrame, after: pd.DataFrame, columns: tuple[str, ...]) -> None:
    for column in columns:
        assert before[column].equals(after[column]), column


@pytest.mark.parametrize(
    ("sensor", "severity"),
    [
        ("torque_nm", 2.5),
        ("air_temperature_k", -3.0),
        ("process_temperature_k", 0.7),
        ("rotational_speed_rpm", 40.0),
        ("tool_wear_min", 7.0),
    ],
)
def test_sensor_offset_shifts_one_sensor_by_exactly_the_severity(
    base: Run, tmp_path: Path, sensor: str, severity: float
) -> None:
    other = drifted(tmp_path, f"sensor-offset:start={DRIFT_START},severity={severity},sensor={sensor}")
    before, after = split(base, other)
    shift = numbers(after, sensor) - numbers(before, sensor)
    assert np.allclose(shift, severity, rtol=0, atol=1e-9)
    assert_identical(before, after, tuple(c for c in (*NON_SENSORS, *SENSORS) if c != sensor))
    assert_same_labels(base, other)


def test_sensor_offset_finer_than_the_resolution_shifts_the_mean(base: Run, tmp_path: Path) -> None:
    other = drifted(tmp_path, f"sensor-offset:start={DRIFT_START},severity=0.04")
    before, after = split(base, other)
    shift = (numbers(after, "air_temperature_k") - numbers(before, "air_temperature_k")).round(6)
    assert set(shift) <= {0.0, 0.1}
    assert shift.mean() == pytest.approx(0.04, abs=0.015)


def test_sensor_noise_widens_the_spread_not_the_mean(base: Run, tmp_path: Path) -> None:
    other = drifted(tmp_path, f"sensor-noise:start={DRIFT_START},severity=2,sensor=torque_nm")
    before, after = split(base, other)
    clean, noisy = numbers(before, "torque_nm"), numbers(after, "torque_nm")
    extra = noisy - clean
    # Extra noise sd = 2 × torque's natural 10 Nm; total sd ≈ √(10² + 20²).
    assert extra.std() == pytest.approx(20, rel=0.1)
    assert abs(extra.mean()) < 1.5
    assert noisy.std() > 2 * clean.std()
    assert_identical(before, after, (*NON_SENSORS, *(s for s in SENSORS if s != "torque_nm")))
    assert_same_labels(base, other)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [(1.0, {"L": 0.2, "M": 0.3, "H": 0.5}), (0.5, {"L": 0.35, "M": 0.3, "H": 0.35})],
)
def test_mix_shift_moves_variant_shares_toward_the_target(
    base: Run, tmp_path: Path, severity: float, expected: dict[str, float]
) -> None:
    other = drifted(tmp_path, f"mix-shift:start={DRIFT_START},severity={severity}")
    before, after = split(base, other)
    shares = after["product_variant"].value_counts(normalize=True).to_dict()
    assert shares == pytest.approx(expected, abs=0.03)
    assert before["product_variant"].value_counts(normalize=True)["L"] == pytest.approx(0.5, abs=0.03)
    # Temperatures, speed and torque do not depend on the variant; tool wear does.
    assert_identical(before, after, ("timestamp", "record_id", "machine_id", *SENSORS[:4]))
    assert not before["tool_wear_min"].equals(after["tool_wear_min"])


def test_ambient_step_raises_both_temperatures_together(base: Run, tmp_path: Path) -> None:
    other = drifted(tmp_path, f"ambient:start={DRIFT_START},severity=5,ramp_days=0")
    before, after = split(base, other)
    for column in ("air_temperature_k", "process_temperature_k"):
        assert np.allclose(numbers(after, column) - numbers(before, column), 5.0, rtol=0, atol=1e-9)
    assert_identical(before, after, (*NON_SENSORS, *SENSORS[2:]))
    # The difference drives heat-dissipation failures; it is unchanged, so every label is too.
    assert_same_labels(base, other)


def test_ambient_ramps_in_linearly(base: Run, tmp_path: Path) -> None:
    other = drifted(tmp_path, f"ambient:start={START.isoformat()},severity=4,ramp_days=4")
    rises = []
    for day in range(DAYS):
        clean, warm = base.raw(day), other.raw(day)
        rise = (numbers(warm, "air_temperature_k") - numbers(clean, "air_temperature_k")).round(6)
        assert np.allclose(
            rise, numbers(warm, "process_temperature_k") - numbers(clean, "process_temperature_k")
        )
        assert rise.is_monotonic_increasing
        rises.append(rise.mean())
    # Mean rise on day k of a 4-day ramp to 4 K is ≈ k + 0.5 K.
    assert rises == pytest.approx([0.5, 1.5, 2.5, 3.5], abs=0.1)


def test_concept_drift_raises_failures_with_identical_inputs(base: Run, tmp_path: Path) -> None:
    other = drifted(tmp_path, f"concept:start={DRIFT_START},severity=1")
    assert other.summary.raw_keys == base.summary.raw_keys
    for key in base.summary.raw_keys:
        assert other.store.read_bytes(key) == base.store.read_bytes(key), key
    old, new = base.labels(), other.labels()
    assert list(old["record_id"]) == list(new["record_id"])
    affected = old["timestamp"] >= DRIFT_START
    assert_identical(old[~affected], new[~affected], tuple(old.columns))
    assert_identical(old, new, ("record_id", "timestamp", "available_at", "hdf", "pwf", "rnf"))
    for mode in ("osf", "twf", "machine_failure"):
        was, now = numbers(old, mode) == 1, numbers(new, mode) == 1
        assert not (was & ~now).any(), f"a {mode} failure disappeared"
    base_rate = numbers(old[affected], "machine_failure").mean()
    new_rate = numbers(new[affected], "machine_failure").mean()
    assert new_rate > 1.3 * base_rate
    assert numbers(new[affected], "osf").sum() > 2 * numbers(old[affected], "osf").sum()
    # More worn-out tools fail instead of being replaced (0.27 → 0.64 of them at severity 1).
    assert numbers(new[affected], "twf").sum() > 1.5 * numbers(old[affected], "twf").sum()
    assert other.summary.failures["machine_failure"] > base.summary.failures["machine_failure"]


def test_missing_blanks_whole_readings_at_the_severity_share(base: Run, tmp_path: Path) -> None:
    other = drifted(tmp_path, f"missing:start={DRIFT_START},severity=0.1")
    before, after = split(base, other)
    blank = after[list(SENSORS)] == ""
    dropped = blank.all(axis=1)
    assert (blank.any(axis=1) == dropped).all(), "sensor=all drops the whole reading"
    assert dropped.mean() == pytest.approx(0.1, abs=0.015)
    assert other.summary.quarantine_hint == {"missing": int(dropped.sum())}
    assert_identical(before[~dropped], after[~dropped], tuple(before.columns))
    assert_identical(before, after, NON_SENSORS)
    assert_same_labels(base, other)


def test_missing_one_sensor(base: Run, tmp_path: Path) -> None:
    other = drifted(tmp_path, f"missing:start={DRIFT_START},severity=0.2,sensor=torque_nm")
    before, after = split(base, other)
    blank = after["torque_nm"] == ""
    assert blank.mean() == pytest.approx(0.2, abs=0.02)
    assert (before.loc[~blank, "torque_nm"] == after.loc[~blank, "torque_nm"]).all()
    assert_identical(before, after, (*NON_SENSORS, *(s for s in SENSORS if s != "torque_nm")))


def test_corrupt_rows_are_rejected_by_a_strict_parser(base: Run, tmp_path: Path) -> None:
    other = drifted(tmp_path, f"corrupt:start={DRIFT_START},severity=0.05")
    before, after = split(base, other)
    reasons = pd.Series([strict_reject(row) for row in after.to_dict("records")])
    rejected = reasons.notna()
    assert rejected.sum() == other.summary.quarantine_hint["corrupt"]
    assert rejected.mean() == pytest.approx(0.05, abs=0.012)
    # Every kind of damage occurs; the rows' identity survives so labels can still be joined.
    kinds = set(reasons.dropna().str.replace(r"^\w+_(temperature_k|rpm|nm|min) ", "sensor ", regex=True))
    assert {"timestamp value", "variant", "sensor not a number", "sensor impossible"} <= kinds
    impossible = set(reasons[reasons.str.endswith("impossible", na=False)])
    assert {"torque_nm impossible", "rotational_speed_rpm impossible"} <= impossible
    assert impossible & {"air_temperature_k impossible", "process_temperature_k impossible"}
    assert_identical(before[~rejected], after[~rejected], tuple(before.columns))
    assert_identical(before, after, ("record_id", "machine_id"))
    assert_same_labels(base, other)
    assert all(strict_reject(row) is None for row in base.raw().to_dict("records"))


def test_drift_outside_the_run(base: Run, tmp_path: Path) -> None:
    later = (START + timedelta(days=DAYS)).isoformat()
    other = drifted(tmp_path / "late", f"sensor-offset:start={later},severity=9")
    assert other.files() == base.files()
    earlier = (START - timedelta(days=30)).isoformat()
    other = drifted(tmp_path / "early", f"sensor-offset:start={earlier},severity=9")
    shift = numbers(other.raw(), "air_temperature_k") - numbers(base.raw(), "air_temperature_k")
    assert np.allclose(shift, 9.0)


def test_scenarios_compose_without_disturbing_each_other(base: Run, tmp_path: Path) -> None:
    noise = f"sensor-noise:start={DRIFT_START},severity=1"
    alone = drifted(tmp_path / "alone", noise)
    both = drifted(
        tmp_path / "both",
        noise,
        f"concept:start={DRIFT_START}",
        f"sensor-offset:start={DRIFT_START},severity=1.5,sensor=torque_nm",
        f"sensor-noise:start={DRIFT_START},severity=1,sensor=rotational_speed_rpm",
    )
    _, one = split(base, alone)
    _, many = split(base, both)
    # Adding scenarios leaves the first one's draws (and the other columns) alone.
    assert_identical(one, many, ("timestamp", "air_temperature_k", "process_temperature_k", "tool_wear_min"))
    shift = numbers(many, "torque_nm") - numbers(one, "torque_nm")
    assert np.allclose(shift, 1.5)
    assert not one["rotational_speed_rpm"].equals(many["rotational_speed_rpm"])


def test_corrupt_fields_show_even_where_readings_dropped_out(base: Run, tmp_path: Path) -> None:
    other = drifted(
        tmp_path, f"missing:start={DRIFT_START},severity=0.3", f"corrupt:start={DRIFT_START},severity=0.1"
    )
    _, after = split(base, other)
    rejected = sum(strict_reject(row) is not None for row in after.to_dict("records"))
    assert rejected == other.summary.quarantine_hint["corrupt"]
    assert other.summary.quarantine_hint["missing"] == pytest.approx(0.3 * 2 * ROWS, rel=0.05)


def test_sensor_drift_on_a_warming_plant(base: Run, tmp_path: Path) -> None:
    other = drifted(
        tmp_path,
        f"ambient:start={DRIFT_START},severity=5,ramp_days=0",
        f"sensor-noise:start={DRIFT_START},severity=0.5",
    )
    before, after = split(base, other)
    process_rise = numbers(after, "process_temperature_k") - numbers(before, "process_temperature_k")
    assert np.allclose(process_rise, 5.0)
    air_rise = numbers(after, "air_temperature_k") - numbers(before, "air_temperature_k")
    assert air_rise.mean() == pytest.approx(5.0, abs=0.1)
    assert air_rise.std() == pytest.approx(1.0, rel=0.1)
