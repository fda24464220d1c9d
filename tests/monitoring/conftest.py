"""The simulated plant for the monitoring tests: scenario runs, a model fitted on clean days, references.

A scenario run is ``REFERENCE_DAYS`` clean days (the reference: profile and evaluation of the model)
followed by one window day on which the scenario starts. The model is fitted once, on a separate clean
run, so every score the tests see is out of sample, as in production.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from driftloop.core.profile import build_profile
from driftloop.monitoring.window import CaptureChunk
from driftloop.settings import FeatureDriftTest, MonitoringSettings
from driftloop.simulate import SimulationRequest, parse_drift, simulate
from driftloop.storage import open_store
from driftloop.training.metrics import choose_threshold, classification_metrics

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from driftloop.storage import ObjectStore

START = date(2026, 1, 1)
REFERENCE_DAYS = 8
ROWS_PER_DAY = 1500  # above monitoring.small_sample_rows: the distance measures decide, as in production
WINDOW_DAY = START + timedelta(days=REFERENCE_DAYS)
WINDOW = (
    datetime.combine(WINDOW_DAY, datetime.min.time(), UTC),
    datetime.combine(WINDOW_DAY + timedelta(days=1), datetime.min.time(), UTC),
)
SENSORS = (
    "air_temperature_k",
    "process_temperature_k",
    "rotational_speed_rpm",
    "torque_nm",
    "tool_wear_min",
)
CATEGORICAL = ("product_variant",)
FEATURES = (*SENSORS, *CATEGORICAL)
# The plant's temperatures follow its climate: an AR(1) process with a 3-hour correlation time, so a
# day holds only about eight independent temperature readings and its mean wanders by ~1 K (half a
# standard deviation) from day to day. Normalised Wasserstein scores of clean days reach ~1.1 for them
# (0.45 typical), ~0.08 at most for the other features: their thresholds are set above that.
PLANT_MONITORING = MonitoringSettings(
    features={
        name: FeatureDriftTest(method="wasserstein", threshold=1.5)
        for name in ("air_temperature_k", "process_temperature_k")
    }
)


@dataclass
class Day:
    """Simulated rows as the service would receive them: numbers, strings, and what did not parse."""

    frame: pd.DataFrame  # the CSV as text, "" for an empty field
    columns: dict[str, np.ndarray]  # the features (NaN/None for empty or unparseable) and record_id
    invalid: dict[str, int]  # per sensor: fields holding text that is not a number

    @classmethod
    def parse(cls, frame: pd.DataFrame) -> Day:
        columns: dict[str, np.ndarray] = {}
        invalid: dict[str, int] = {}
        for name in SENSORS:
            text = frame[name].replace("", None)
            numbers = pd.to_numeric(text, errors="coerce")
            invalid[name] = int((text.notna() & numbers.isna()).sum())
            columns[name] = numbers.to_numpy(np.float64)
        for name in (*CATEGORICAL, "record_id"):
            columns[name] = frame[name].replace("", None).to_numpy(object)
        return cls(frame, columns, invalid)

    @property
    def rows(self) -> int:
        return len(self.frame)

    def subset(self, keep: np.ndarray) -> Day:
        return Day.parse(self.frame[keep].reset_index(drop=True))

    def chunk(self, scores: np.ndarray) -> CaptureChunk:
        return CaptureChunk.from_columns(
            self.columns, scores, prediction_id=list(self.frame["record_id"]), invalid=self.invalid
        )


class PlantModel:
    """Gradient-boosted trees on the raw readings plus the physics the failure rules use."""

    def __init__(self, train: Day, labels: dict[str, float]) -> None:
        y = np.array([labels[r] for r in train.columns["record_id"]])
        self._model = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(self._design(train), y)

    @staticmethod
    def _design(day: Day) -> np.ndarray:
        air, process, speed, torque, wear = (day.columns[name] for name in SENSORS)
        variant = pd.Series(day.columns["product_variant"]).map({"L": 0, "M": 1, "H": 2})
        power = torque * speed * 2 * np.pi / 60
        return np.column_stack(
            [air, process, speed, torque, wear, variant.to_numpy(float), process - air, power, wear * torque]
        )

    def score(self, day: Day) -> np.ndarray:
        return np.asarray(self._model.predict_proba(self._design(day))[:, 1], dtype=np.float64)


@dataclass
class Scenario:
    """A scenario run: the store it was written to, its reference days, the window day and its labels."""

    store: ObjectStore
    reference: Day
    window: Day
    labels: dict[str, float]  # record_id → machine_failure
    model: PlantModel

    def reference_profile(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The profile and hold-out metrics the model would carry, computed on the reference days."""
        scores = self.model.score(self.reference)
        profile = build_profile(
            self.reference.columns, numeric=SENSORS, categorical=CATEGORICAL, scores=scores
        )
        y = np.array([self.labels[r] for r in self.reference.columns["record_id"]])
        evaluation = classification_metrics(y, scores, choose_threshold(y, scores))
        return profile, evaluation

    def window_chunk(self) -> CaptureChunk:
        return self.window.chunk(self.model.score(self.window))


def run_plant(root: Path, seed: int, model: PlantModel, drift: str | None = None) -> Scenario:
    """Simulate ``days`` days; ``drift`` (CLI syntax, without start) starts on the window day."""
    store = open_store(str(root))
    # Options follow the scenario name after ":"; the window day is the scenario's first day.
    drifts = (parse_drift(drift, WINDOW_DAY),) if drift else ()
    request = SimulationRequest(
        dataset="plant",
        start=START,
        days=REFERENCE_DAYS + 1,
        rows_per_day=ROWS_PER_DAY,
        machines=10,
        seed=seed,
        label_delay=timedelta(hours=6),
        drifts=drifts,
    )
    summary = simulate(request, store)
    frames = [_csv(store.read_bytes(key)) for key in summary.raw_keys]
    labels_frame = pd.concat([_csv(store.read_bytes(key)) for key in summary.label_keys])
    labels = dict(zip(labels_frame["record_id"], labels_frame["machine_failure"].astype(float), strict=True))
    reference = Day.parse(pd.concat(frames[:REFERENCE_DAYS], ignore_index=True))
    window = Day.parse(frames[-1])
    return Scenario(store, reference, window, labels, model)


def _csv(data: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_filter=False)


@pytest.fixture(scope="session")
def plant_model(tmp_path_factory: pytest.TempPathFactory) -> PlantModel:
    """The model, fitted once on its own clean run (another seed): no scenario scores its training data."""
    store = open_store(str(tmp_path_factory.mktemp("plant-model")))
    request = SimulationRequest(
        dataset="plant",
        start=START,
        days=4,
        rows_per_day=4000,
        machines=10,
        seed=10_000,
        label_delay=timedelta(hours=6),
    )
    summary = simulate(request, store)
    train = Day.parse(pd.concat([_csv(store.read_bytes(k)) for k in summary.raw_keys], ignore_index=True))
    frame = pd.concat([_csv(store.read_bytes(k)) for k in summary.label_keys])
    labels = dict(zip(frame["record_id"], frame["machine_failure"].astype(float), strict=True))
    return PlantModel(train, labels)


@pytest.fixture
def plant(tmp_path: Path, plant_model: PlantModel) -> Callable[..., Scenario]:
    """``plant(seed, drift=None)``: a scenario run in a fresh local store under ``tmp_path``."""
    counter = iter(range(1_000_000))

    def make(seed: int, drift: str | None = None) -> Scenario:
        return run_plant(tmp_path / f"plant-{next(counter)}", seed, plant_model, drift)

    return make
