"""Drift-free data: the published failure rates, the physical rules behind each label, the row format.

One 200,000-row run (40 days × 5,000 rows, 20 machines) is shared by the statistical tests. The rate
bands are about four standard deviations wide, measured over 30 seeds at this size (HDF is the widest
because the process-temperature noise is autocorrelated over ~20 minutes).
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import pytest

from driftloop.simulate import LABEL_COLUMNS
from tests.simulate.support import START, Run, numbers, request, run

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

FAILURE_MODES = LABEL_COLUMNS[3:]


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Run:
    req = request(days=40, rows_per_day=5000, machines=20, seed=11, label_delay=timedelta(hours=6))
    return run(tmp_path_factory.mktemp("plant"), req)


@pytest.fixture(scope="module")
def rows(plant: Run) -> pd.DataFrame:
    """Raw rows joined with their labels, numeric columns parsed."""
    raw = plant.raw()
    labels = plant.labels()
    joined = raw.merge(labels.drop(columns="timestamp"), on="record_id", validate="one_to_one")
    assert len(joined) == len(raw) == len(labels)
    for column in ("air_temperature_k", "process_temperature_k", "torque_nm"):
        joined[column] = numbers(joined, column)
    for column in ("rotational_speed_rpm", "tool_wear_min", *FAILURE_MODES):
        joined[column] = numbers(joined, column).astype(np.int64)
    return joined


@pytest.mark.parametrize(
    ("mode", "low", "high"),
    [
        # AI4I 2020: 3.39 %, 0.46 %, 1.15 %, 0.95 %, 0.98 %, ~0.1-0.2 %.
        ("machine_failure", 0.030, 0.039),
        ("twf", 0.0040, 0.0052),
        ("hdf", 0.0075, 0.0150),
        ("pwf", 0.0090, 0.0112),
        ("osf", 0.0090, 0.0112),
        ("rnf", 0.00075, 0.0013),
    ],
)
def test_failure_rates_match_ai4i(plant: Run, rows: pd.DataFrame, mode: str, low: float, high: float) -> None:
    assert plant.summary.rows == 200_000
    assert plant.summary.failures[mode] == int(rows[mode].sum())
    assert low <= plant.summary.failure_rate(mode) <= high


def test_machine_failure_is_any_mode(rows: pd.DataFrame) -> None:
    any_mode = rows[["twf", "hdf", "pwf", "osf", "rnf"]].max(axis=1)
    assert (rows["machine_failure"] == any_mode).all()


def test_hdf_pwf_osf_follow_the_rules_exactly_on_the_written_readings(rows: pd.DataFrame) -> None:
    air = (rows["air_temperature_k"] * 10).round().astype(np.int64)
    process = (rows["process_temperature_k"] * 10).round().astype(np.int64)
    speed = rows["rotational_speed_rpm"]
    torque_tenths = (rows["torque_nm"] * 10).round().astype(np.int64)
    hdf = ((process - air) < 86) & (speed < 1380)
    power = torque_tenths * speed * (2 * math.pi / 60 / 10)
    pwf = (power < 3500) | (power > 9000)
    limit = rows["product_variant"].map({"L": 110_000, "M": 120_000, "H": 130_000})
    osf = rows["tool_wear_min"] * torque_tenths > limit
    assert (rows["hdf"] == hdf.astype(int)).all()
    assert (rows["pwf"] == pwf.astype(int)).all()
    assert (rows["osf"] == osf.astype(int)).all()


def test_tool_wear_grows_per_process_and_resets_after_end_of_life(rows: pd.DataFrame) -> None:
    step = rows["product_variant"].map({"L": 5, "M": 3, "H": 2})
    # Rows are in time order across the days; follow each machine's processes.
    wear = rows["tool_wear_min"]
    nxt = rows.groupby("machine_id", sort=False)["tool_wear_min"].shift(-1)
    has_next = nxt.notna()
    grew = nxt == wear + step
    reset = nxt == 0
    assert (grew | reset)[has_next].all()
    assert (reset[has_next & (rows["twf"] == 1)]).all(), "a failed tool is replaced"
    assert wear.max() < 240
    # A tool fails only at the end of its life, drawn in [200, 240] min (reading is before the process).
    assert wear[rows["twf"] == 1].min() >= 195
    # Most ends are preventive replacements: resets clearly outnumber tool-wear failures.
    assert reset[has_next].sum() > 2 * rows["twf"].sum()


def test_sensor_distributions(rows: pd.DataFrame) -> None:
    torque, speed = rows["torque_nm"], rows["rotational_speed_rpm"]
    assert torque.mean() == pytest.approx(40, abs=0.3)
    assert torque.std() == pytest.approx(10, abs=0.3)
    assert torque.min() >= 0
    assert speed.median() == pytest.approx(1550, abs=30)
    assert 1560 <= speed.mean() <= 1630
    assert 220 <= speed.std() <= 270
    assert speed.max() <= 2900
    air, process = rows["air_temperature_k"], rows["process_temperature_k"]
    assert air.mean() == pytest.approx(300, abs=1.0)
    assert 1.5 <= air.std() <= 2.5
    assert (process - air).mean() == pytest.approx(10, abs=0.2)
    assert (process - air).std() == pytest.approx(1.0, abs=0.2)
    shares = rows["product_variant"].value_counts(normalize=True)
    assert shares.to_dict() == pytest.approx({"L": 0.5, "M": 0.3, "H": 0.2}, abs=0.01)


def test_days_are_independent_draws(plant: Run) -> None:
    first, second = plant.raw(0), plant.raw(1)
    for column in ("timestamp", "machine_id", "product_variant", "torque_nm", "rotational_speed_rpm"):
        same = (first[column].str[-6:] == second[column].str[-6:]).mean()
        assert same < 0.5, column


def test_air_temperature_is_a_smooth_plant_wide_walk(rows: pd.DataFrame) -> None:
    air = rows["air_temperature_k"].to_numpy()
    # Consecutive rows (about 17 s apart) differ by a few tenths at most; independent draws would not.
    assert np.abs(np.diff(air)).mean() < 0.1
    assert np.corrcoef(air[:-1], air[1:])[0, 1] > 0.99


def test_row_identity_and_format(plant: Run, rows: pd.DataFrame) -> None:
    assert rows["record_id"].is_unique
    assert rows["record_id"].str.fullmatch(r"2026\d{4}-\d{7}").all()
    assert rows["record_id"].iloc[0] == "20260101-0000000"
    assert set(rows["machine_id"]) == {f"M{i:03d}" for i in range(1, 21)}
    assert rows["timestamp"].str.fullmatch(r"2026-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z").all()
    assert rows["timestamp"].is_monotonic_increasing
    for day, key in enumerate(plant.summary.raw_keys):
        date_text = (START + timedelta(days=day)).isoformat()
        assert key == f"raw/plant/date={date_text}/part-0000.csv"
        text = plant.store.read_bytes(key).decode()
        assert text.startswith(",".join(rows.columns[:9]) + "\n")
        assert '"' not in text
        assert all(line.startswith(date_text) for line in text.splitlines()[1:])


def test_machine_ids_are_padded_to_the_fleet_size(tmp_path: Path) -> None:
    result = run(tmp_path, request(days=1, rows_per_day=3000, machines=1200))
    ids = result.raw()["machine_id"]
    assert ids.str.fullmatch(r"M\d{4}").all()
    number = ids.str[1:].astype(int)
    assert number.between(1, 1200).all()
    assert number.nunique() > 1000


def test_one_row_one_machine(tmp_path: Path) -> None:
    result = run(tmp_path, request(days=2, rows_per_day=1, machines=1))
    raw = result.raw()
    assert list(raw["record_id"]) == ["20260101-0000000", "20260102-0000000"]
    assert set(raw["machine_id"]) == {"M001"}
    assert re.fullmatch(r"\d+", raw["tool_wear_min"].iloc[1])
