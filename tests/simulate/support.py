"""Helpers shared by the simulator tests: build requests, run them, read the CSVs back exactly."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from driftloop.simulate import LABEL_COLUMNS, RAW_COLUMNS, SimulationRequest, parse_drift, simulate
from driftloop.storage import open_store

if TYPE_CHECKING:
    from pathlib import Path

    from driftloop.simulate import SimulationSummary
    from driftloop.storage import ObjectStore

START = date(2026, 1, 1)
SENSORS = (
    "air_temperature_k",
    "process_temperature_k",
    "rotational_speed_rpm",
    "torque_nm",
    "tool_wear_min",
)
NON_SENSORS = ("timestamp", "record_id", "machine_id", "product_variant")


def request(*drifts: str, **fields: Any) -> SimulationRequest:
    """A small request; ``drifts`` are CLI-style texts whose start defaults to the run's start."""
    values: dict[str, Any] = {
        "dataset": "plant",
        "start": START,
        "days": 3,
        "rows_per_day": 2000,
        "machines": 10,
        "seed": 7,
        "label_delay": timedelta(hours=24),
    }
    values.update(fields)
    values["drifts"] = tuple(parse_drift(text, values["start"]) for text in drifts)
    return SimulationRequest(**values)


@dataclass
class Run:
    """A finished simulation and the store it wrote to."""

    summary: SimulationSummary
    store: ObjectStore

    def files(self) -> dict[str, bytes]:
        return {info.key: self.store.read_bytes(info.key) for info in self.store.list()}

    def raw(self, day: int | None = None) -> pd.DataFrame:
        """Raw rows as exact text (empty string for an empty field), one day or all days."""
        keys = self.summary.raw_keys if day is None else (self.summary.raw_keys[day],)
        return pd.concat([read_text(self.store.read_bytes(k)) for k in keys], ignore_index=True)

    def labels(self) -> pd.DataFrame:
        frames = [read_text(self.store.read_bytes(k)) for k in self.summary.label_keys]
        return pd.concat(frames, ignore_index=True)


def run(root: Path, req: SimulationRequest) -> Run:
    store = open_store(str(root))
    return Run(simulate(req, store), store)


def read_text(data: bytes) -> pd.DataFrame:
    """Parse CSV bytes keeping every field as the exact text written."""
    frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_filter=False)
    assert tuple(frame.columns) in (RAW_COLUMNS, LABEL_COLUMNS)
    return frame


def numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(frame[column])


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_DECIMAL = re.compile(r"-?\d+\.\d")
_INTEGER = re.compile(r"-?\d+")
_PHYSICAL = {
    # (pattern, lowest, highest) a real reading of this plant can take.
    "air_temperature_k": (_DECIMAL, 0.1, 1000.0),
    "process_temperature_k": (_DECIMAL, 0.1, 1000.0),
    "rotational_speed_rpm": (_INTEGER, 0.0, 3000.0),
    "torque_nm": (_DECIMAL, 0.0, 500.0),
    "tool_wear_min": (_INTEGER, 0.0, 1000.0),
}


def strict_reject(row: dict[str, str]) -> str | None:
    """Why a strict validator refuses a raw row (None if it accepts it). Empty sensor fields pass."""
    if not _TIMESTAMP.fullmatch(row["timestamp"]):
        return "timestamp format"
    try:
        datetime.strptime(row["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return "timestamp value"
    if row["product_variant"] not in ("L", "M", "H"):
        return "variant"
    for column, (pattern, low, high) in _PHYSICAL.items():
        text = row[column]
        if text == "":
            continue
        if not pattern.fullmatch(text):
            return f"{column} not a number"
        if not low <= float(text) <= high:
            return f"{column} impossible"
    return None
