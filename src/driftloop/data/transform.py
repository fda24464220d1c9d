"""The fitted transform from raw columns to model-ready features, shared by training and serving.

``fit`` learns parameters (category lists, scaling statistics, fill values) from training rows;
``apply`` turns raw rows into a float32 matrix with those parameters. The pipeline and the prediction
service call the same ``apply`` on the same :class:`TransformParams` — a parity test holds them to it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from driftloop.errors import ConfigError, DataError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from driftloop.settings import ColumnSpec

__all__ = [
    "DERIVED",
    "FEATURE_PREFIX",
    "DerivedFeature",
    "TransformParams",
    "apply",
    "apply_columns",
    "apply_records",
    "feature_frame",
    "fit",
]

FEATURE_PREFIX = "f_"
_RAD_PER_S_PER_RPM = 2 * math.pi / 60


@dataclass(frozen=True)
class DerivedFeature:
    """A named feature computed from raw numeric columns."""

    requires: tuple[str, ...]
    compute: Callable[[Mapping[str, np.ndarray]], np.ndarray]
    doc: str


DERIVED: dict[str, DerivedFeature] = {
    "power_w": DerivedFeature(
        ("torque_nm", "rotational_speed_rpm"),
        lambda c: c["torque_nm"] * c["rotational_speed_rpm"] * _RAD_PER_S_PER_RPM,
        "mechanical power [W] = torque × angular speed",
    ),
    "temp_diff_k": DerivedFeature(
        ("process_temperature_k", "air_temperature_k"),
        lambda c: c["process_temperature_k"] - c["air_temperature_k"],
        "process − air temperature [K] (heat dissipation)",
    ),
    "strain_min_nm": DerivedFeature(
        ("tool_wear_min", "torque_nm"),
        lambda c: c["tool_wear_min"] * c["torque_nm"],
        "tool wear × torque [min·Nm] (overstrain)",
    ),
}


@dataclass(frozen=True)
class TransformParams:
    """Everything ``apply`` needs; JSON round-trips exactly (``to_json`` / ``from_json``)."""

    numeric: list[str]
    derived: list[str]
    categorical: dict[str, list[str]]
    mean: dict[str, float]
    std: dict[str, float]
    fill: dict[str, float]
    feature_names: list[str] = field(default_factory=list)
    version: int = 1

    @property
    def input_columns(self) -> list[str]:
        """The raw columns a caller must provide."""
        return [*self.numeric, *self.categorical]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> TransformParams:
        data: dict[str, Any] = json.loads(text)
        if data.get("version") != 1:
            raise DataError(f"unsupported transform version {data.get('version')!r}")
        return cls(**data)


def fit(frame: pd.DataFrame, columns: Sequence[ColumnSpec], derived: Sequence[str]) -> TransformParams:
    """Learn the transform from ``frame`` (typed, valid rows) for the ``feature`` columns of ``columns``."""
    features = [c for c in columns if c.role == "feature"]
    numeric = [c.name for c in features if c.type in ("float", "int")]
    categorical = {
        c.name: sorted(c.allowed)
        if c.allowed
        else sorted(frame[c.name].dropna().astype(str).unique().tolist())
        for c in features
        if c.type in ("category", "string")
    }
    for name in derived:
        if name not in DERIVED:
            raise ConfigError(
                f"unknown derived feature {name!r} in data.derived_features; known: {sorted(DERIVED)}"
            )
        missing = [r for r in DERIVED[name].requires if r not in numeric]
        if missing:
            raise ConfigError(f"derived feature {name!r} needs numeric feature columns {missing}")
    if frame.empty:
        raise DataError("cannot fit the transform on zero rows")
    cols = {name: frame[name].to_numpy(dtype="float64") for name in numeric}
    fill = {name: float(np.nanmedian(v)) if np.isfinite(v).any() else 0.0 for name, v in cols.items()}
    filled = {name: np.where(np.isnan(v), fill[name], v) for name, v in cols.items()}
    for name in derived:
        filled[name] = DERIVED[name].compute(filled)
    mean = {name: float(v.mean()) for name, v in filled.items()}
    # A constant column would divide by zero; scale it by 1 instead (it carries no information anyway).
    std = {name: float(v.std()) or 1.0 for name, v in filled.items()}
    names = [*numeric, *derived] + [f"{col}={cat}" for col, cats in categorical.items() for cat in cats]
    return TransformParams(
        numeric=numeric,
        derived=list(derived),
        categorical=categorical,
        mean=mean,
        std=std,
        fill=fill,
        feature_names=[FEATURE_PREFIX + n for n in names],
    )


def apply(frame: pd.DataFrame, params: TransformParams) -> np.ndarray:
    """Raw rows → ``float32`` matrix, columns in ``params.feature_names`` order.

    Nulls in numeric columns take the fitted fill value; unseen categories encode as all zeros.
    """
    numeric = {
        name: pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="float64") for name in params.numeric
    }
    categorical = {col: frame[col].astype(object).to_numpy() for col in params.categorical}
    return apply_columns(numeric, categorical, params)


def apply_records(rows: Sequence[Mapping[str, Any]], params: TransformParams) -> np.ndarray:
    """:func:`apply` for validated records (numbers or None; strings): the service's path, no DataFrame."""
    numeric = {name: np.array([row.get(name) for row in rows], dtype=np.float64) for name in params.numeric}
    categorical = {col: np.array([row.get(col) for row in rows], dtype=object) for col in params.categorical}
    return apply_columns(numeric, categorical, params)


def apply_columns(
    numeric: Mapping[str, np.ndarray], categorical: Mapping[str, np.ndarray], params: TransformParams
) -> np.ndarray:
    """The transform itself, on columns: float64 numerics (NaN for null) and object categoricals."""
    n = len(next(iter(numeric.values()))) if numeric else len(next(iter(categorical.values()), ()))
    out = np.empty((n, len(params.feature_names)), dtype=np.float64)
    cols: dict[str, np.ndarray] = {}
    for name in params.numeric:
        values = numeric[name]
        cols[name] = np.where(np.isnan(values), params.fill[name], values)
    for name in params.derived:
        cols[name] = DERIVED[name].compute(cols)
    j = 0
    for name in [*params.numeric, *params.derived]:
        out[:, j] = (cols[name] - params.mean[name]) / params.std[name]
        j += 1
    for col, cats in params.categorical.items():
        values = categorical[col]
        for cat in cats:
            out[:, j] = values == cat
            j += 1
    return out.astype(np.float32)


def feature_frame(frame: pd.DataFrame, params: TransformParams) -> pd.DataFrame:
    """``apply`` as a DataFrame with the ``f_…`` column names."""
    return pd.DataFrame(apply(frame, params), columns=params.feature_names, index=frame.index)
