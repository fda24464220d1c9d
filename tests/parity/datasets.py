"""Generated tabular datasets that are not the plant: the shapes a new user brings.

Each is a CSV as a user would have it (text, blanks for missing values, True/False columns, ids and
dates that are not model inputs), a target with signal in several inputs, and how a client would send
its rows as JSON: numbers as numbers, blanks as null, True/False as booleans, category codes as
integers, the columns training drops included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["DATASETS", "Dataset", "client_rows"]


@dataclass(frozen=True)
class Dataset:
    name: str
    target: str
    task: str
    frame: pd.DataFrame
    flags: tuple[str, ...] = ()  # extra `driftloop train` options
    # How a JSON client sends each column: "number", "int", "bool", "code" (an integer-coded category).
    json_types: dict[str, str] = field(default_factory=dict)
    timestamp: str | None = None

    def write(self, directory: Path) -> Path:
        path = directory / f"{self.name}.csv"
        self.frame.to_csv(path, index=False)
        return path


def _blank(frame: pd.DataFrame, columns: list[str], share: float, rng: np.random.Generator) -> None:
    for column in columns:
        frame[column] = frame[column].astype(object)
        frame.loc[rng.random(len(frame)) < share, column] = None


def _churn(n: int = 1500, seed: int = 1) -> pd.DataFrame:
    """3 string categoricals (one with 10 levels), blanks in numeric and categorical columns, a
    True/False column, an id and a date; the target depends on several of them."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    region = rng.choice([f"region-{i}" for i in range(10)], n)
    channel = rng.choice(["web", "store", "phone"], n)
    member = rng.choice(["True", "False"], n)
    tenure = rng.gamma(2, 12, n).round(1)
    charges = rng.normal(60, 20, n).round(2)
    logit = (
        -1.0
        + 2.0 * (plan == "basic")
        - 0.08 * tenure
        + 0.04 * (charges - 60)
        + 1.5 * (member == "False")
        + 1.2 * (region == "region-3")
        - 1.5 * (channel == "store")
    )
    churned = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "Yes", "No")
    clv = (
        tenure * charges / 10 + 30 * (plan == "pro") - 20 * (channel == "web") + rng.normal(0, 5, n)
    ).round(2)
    frame = pd.DataFrame(
        {
            # An unusual order: target in the middle, the id last.
            "monthly_charges": charges,
            "plan": plan,
            "signup_date": pd.date_range("2024-01-01", periods=n, freq="h").strftime("%Y-%m-%d"),
            "churned": churned,
            "region": region,
            "is_member": member,
            "tenure_months": tenure,
            "channel": channel,
            "clv": clv,
            "customer_id": np.arange(1, n + 1),
        }
    )
    _blank(frame, ["tenure_months", "monthly_charges", "plan", "channel", "region", "is_member"], 0.05, rng)
    frame.loc[rng.random(n) < 0.02, "churned"] = None  # unlabelled rows: skipped and counted
    return frame


def _coded(n: int = 1200, seed: int = 2) -> pd.DataFrame:
    """Integer-coded categories, yes/no booleans, nulls everywhere, a timestamp the rows are ordered by,
    odd column names, and rows in shuffled time order."""
    rng = np.random.default_rng(seed)
    site = rng.integers(1, 6, n)
    shift = rng.choice(["early", "late", "night"], n)
    heavy = rng.choice(["yes", "no"], n)
    load = rng.normal(10, 3, n).round(3)
    age = rng.integers(0, 30, n)
    logit = -0.5 + 1.2 * (site == 4) + 0.8 * (heavy == "yes") + 0.3 * (load - 10) - 1.0 * (shift == "night")
    defect = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    stamps = pd.Timestamp("2025-03-01") + pd.to_timedelta(rng.permutation(n) * 7, unit="min")
    frame = pd.DataFrame(
        {
            "measured at": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "site code": site,
            "Shift (crew)": shift,
            "heavy?": heavy,
            "load kN": load,
            "machine age": age,
            "defect": defect,
        }
    )
    _blank(frame, ["site code", "Shift (crew)", "heavy?", "load kN", "machine age"], 0.06, rng)
    return frame


def client_rows(dataset: Dataset, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``frame``'s rows (as read from the CSV, all text) as a JSON client sends them, target dropped."""
    rows = []
    for record in frame.drop(columns=[dataset.target]).to_dict("records"):
        row: dict[str, Any] = {}
        for column, text in record.items():
            row[column] = _json_value(text, dataset.json_types.get(column, "text"))
        rows.append(row)
    return rows


def _json_value(text: Any, kind: str) -> Any:
    if text is None or (isinstance(text, float) and math.isnan(text)) or text == "":
        return None
    if kind == "number":
        return float(text)
    if kind in ("int", "code"):
        return int(float(text))
    if kind == "bool":
        return str(text).strip().lower() in ("true", "yes")
    return str(text)


CHURN = _churn()
CODED = _coded()
_CHURN_TYPES = {
    "monthly_charges": "number",
    "tenure_months": "number",
    "clv": "number",
    "is_member": "bool",
    "customer_id": "int",
}

DATASETS = (
    Dataset("churn", "churned", "classification", CHURN, json_types=_CHURN_TYPES),
    Dataset(
        "clv",
        "clv",
        "regression",
        CHURN.drop(columns=["churned"]),
        flags=("--task", "regression"),
        json_types=_CHURN_TYPES,
    ),
    Dataset(
        "coded",
        "defect",
        "classification",
        CODED,
        flags=("--categorical", "site code", "--timestamp", "measured at"),
        json_types={"site code": "code", "heavy?": "bool", "load kN": "number", "machine age": "int"},
        timestamp="measured at",
    ),
)
