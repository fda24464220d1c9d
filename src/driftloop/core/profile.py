"""Reference profiles: the distribution summary a model is monitored against.

Computed at training time on the evaluation data and stored with the model, so the monitor never needs
the raw reference data: numeric features keep quantile bin edges with their counts, 101 percentiles
(enough for Kolmogorov–Smirnov and Wasserstein estimates), moments and null share; categorical features
keep category shares; the prediction score keeps a fixed 0–1 histogram and its percentiles. The
training target's summary (``target``) bounds the labels a regression model accepts (``core.labels``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "PROFILE_ARTIFACT",
    "PROFILE_VERSION",
    "bin_counts",
    "build_profile",
    "categorical_profile",
    "numeric_profile",
]

PROFILE_VERSION = 1
PROFILE_ARTIFACT = "reference_profile.json"  # the training run's artifact holding the profile
_PERCENTILES = np.linspace(0, 100, 101)


def numeric_profile(
    values: np.ndarray, *, bins: int = 10, edges: Sequence[float] | None = None
) -> dict[str, Any]:
    """Summary of one numeric column. ``edges`` (inner cut points) default to the reference's deciles.

    Bins are ``(-inf, e0], (e0, e1], …, (ek, +inf)`` so current data outside the reference range still
    lands somewhere.
    """
    data = np.asarray(values, dtype=np.float64)
    finite = data[np.isfinite(data)]
    n = int(data.size)
    if finite.size == 0:
        return {"kind": "numeric", "n": n, "null_share": 1.0 if n else 0.0, "edges": [], "counts": [0]}
    if edges is None:
        inner = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
        edges = np.unique(inner).tolist()
    cut = [float(e) for e in edges]
    return {
        "kind": "numeric",
        "n": n,
        "null_share": float(1 - finite.size / n),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "min": float(finite.min()),
        "max": float(finite.max()),
        "percentiles": np.percentile(finite, _PERCENTILES).tolist(),
        "edges": cut,
        "counts": bin_counts(finite, cut).tolist(),
    }


def categorical_profile(values: Sequence[Any] | np.ndarray) -> dict[str, Any]:
    """Summary of one categorical column: the share of each category among non-null values."""
    arr = np.asarray(values, dtype=object)
    present = ~pd.isna(arr) if arr.size else np.zeros(0, dtype=bool)  # None, NaN and pd.NA
    kept = arr[present].astype(str)
    cats, counts = np.unique(kept, return_counts=True) if kept.size else (np.array([]), np.array([]))
    total = int(counts.sum())
    return {
        "kind": "categorical",
        "n": int(arr.size),
        "null_share": float(1 - present.mean()) if arr.size else 0.0,
        "counts": {str(c): int(k) for c, k in zip(cats, counts, strict=True)},
        "shares": {str(c): (int(k) / total if total else 0.0) for c, k in zip(cats, counts, strict=True)},
    }


def bin_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts of finite ``values`` in the open-ended bins defined by the inner ``edges``."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), finite, side="left")
    return np.bincount(index, minlength=len(edges) + 1)


def build_profile(
    columns: Mapping[str, np.ndarray],
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    scores: np.ndarray | None = None,
    target: np.ndarray | None = None,
    bins: int = 10,
) -> dict[str, Any]:
    """The reference profile of ``columns`` (raw model inputs) and, when given, the prediction scores and
    the training target (``target``: its moments, range and percentiles)."""
    features: dict[str, Any] = {name: numeric_profile(columns[name], bins=bins) for name in numeric}
    features |= {name: categorical_profile(columns[name]) for name in categorical}
    rows = int(next(iter(columns.values())).shape[0]) if columns else 0
    profile: dict[str, Any] = {"version": PROFILE_VERSION, "rows": rows, "features": features}
    if scores is not None:
        fixed = np.linspace(0, 1, bins + 1)[1:-1].tolist()
        profile["prediction"] = numeric_profile(np.asarray(scores, dtype=np.float64), edges=fixed)
    if target is not None:
        profile["target"] = numeric_profile(np.asarray(target, dtype=np.float64), bins=bins)
    return profile
