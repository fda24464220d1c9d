"""Drift thresholds calibrated from the reference: each feature's own chunk-to-chunk variability.

A fixed distance threshold (0.1) assumes that a clean window differs from the reference only by
sampling noise. A feature that wanders breaks that: the plant's temperatures follow the weather (an
AR(1) with a 3-hour correlation time, about eight independent readings a day), so a clean day's
temperatures sit ~0.5 std away from any other day's and score several times 0.1. Hand-set thresholds
per column (the plant's 1.5) do not carry over to another dataset and hide real shifts.

So the reference measures its own variability (decision 0060). At training time the rows *before* the
hold-out (the profile is built on the hold-out) are cut into time chunks — one per UTC day when the
data has a timestamp, else :data:`EQUAL_CHUNKS` equal consecutive chunks — and each chunk is scored
against the profile's data with every distance the monitor can use: what a clean window of about a
chunk's size scores. Those scores are stored in the profile (``features.<name>.calibration``); the
monitor sets the feature's threshold to ``max(configured threshold, margin × largest clean score)``
(:func:`calibrated_threshold`). The scores here are computed exactly on raw values (scipy's
Wasserstein, the profile's bins); the monitor's streamed estimates agree within ~2 % (decision 0019).

Pure numpy/scipy, no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from driftloop.core.profile import bin_counts

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy.typing as npt

__all__ = [
    "CALIBRATED_METHODS",
    "EQUAL_CHUNKS",
    "MIN_CHUNKS",
    "PSI_EPSILON",
    "STD_FLOOR",
    "calibrate",
    "calibrated_threshold",
    "js_distance",
    "psi",
    "shares",
    "time_chunks",
]

PSI_EPSILON = 1e-4  # the share an empty bin is given, so PSI stays finite
STD_FLOOR = 1e-3  # as Evidently: a constant reference feature does not divide by zero
MIN_CHUNKS = 3  # fewer clean chunks say nothing about a feature's variability: no calibration
EQUAL_CHUNKS = 8  # chunks of data without a timestamp (or with too few days)
# The distances a threshold is calibrated for, per kind. P-values are not: they already account for
# the window's size, and a feature whose chunks wander is judged on its distance (monitoring.stats).
CALIBRATED_METHODS: Mapping[str, tuple[str, ...]] = {
    "numeric": ("wasserstein", "psi", "jensenshannon"),
    "categorical": ("jensenshannon", "psi"),
}


def shares(counts: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``counts`` as shares of their total (all zeros stay zeros)."""
    array = np.asarray(counts, dtype=np.float64)
    total = array.sum()
    return array / total if total > 0 else array


def psi(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """Population stability index of two share vectors over the same bins (empty bins get PSI_EPSILON)."""
    r, c = (np.asarray(s, dtype=np.float64) for s in (reference, current))
    r, c = np.where(r > 0, r, PSI_EPSILON), np.where(c > 0, c, PSI_EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def js_distance(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """Jensen–Shannon distance (base 2, in [0, 1]) of two share vectors over the same bins."""
    return float(jensenshannon(np.asarray(reference), np.asarray(current), base=2))


def time_chunks(
    rows: int, timestamps: npt.ArrayLike | None, *, min_rows: int
) -> tuple[str, list[npt.NDArray[np.intp]]]:
    """The clean chunks of ``rows`` time-ordered rows: ``("day", …)``, ``("chunk", …)`` or ``("", [])``.

    By UTC day when ``timestamps`` are given and at least :data:`MIN_CHUNKS` days hold ``min_rows``
    rows and half the median day's (smaller days are left out: a partial first or last day — the
    hold-out usually starts within a day — is a smaller window, noisier than the days it stands
    for); else :data:`EQUAL_CHUNKS` equal consecutive chunks (fewer when they would
    hold under ``min_rows``); none when even :data:`MIN_CHUNKS` chunks would be too small.
    """
    if timestamps is not None and rows:
        stamps = pd.to_datetime(pd.Series(np.asarray(timestamps)), utc=True, errors="coerce")
        codes, _ = pd.factorize(stamps.dt.floor("D"))  # -1 for an unparseable time; days in order seen
        order = np.argsort(codes, kind="stable")
        counts = np.bincount(codes[codes >= 0])
        ends = np.cumsum(counts) + int(np.count_nonzero(codes < 0))
        groups = [order[end - size : end] for size, end in zip(counts, ends, strict=True)]
        if groups:
            floor = max(min_rows, 0.5 * float(np.median([g.size for g in groups])))
            groups = [g for g in groups if g.size >= floor]
        if len(groups) >= MIN_CHUNKS:
            return "day", groups
    parts = min(EQUAL_CHUNKS, rows // max(min_rows, 1))
    if parts < MIN_CHUNKS:
        return "", []
    return "chunk", [np.asarray(c, dtype=np.intp) for c in np.array_split(np.arange(rows), parts)]


def calibrate(
    profile: Mapping[str, Any],
    reference: Mapping[str, npt.ArrayLike],
    chunks: Sequence[Mapping[str, npt.ArrayLike]],
    *,
    unit: str,
) -> dict[str, Any]:
    """``profile`` with each feature's clean scores: every chunk in ``chunks`` against ``reference``.

    ``reference`` holds the raw values the profile was built from, ``chunks`` the same columns of each
    clean chunk (categories canonicalised as for the profile), ``unit`` what a chunk is (``"day"``,
    ``"chunk"``). A feature gets ``calibration = {"unit", "rows": [non-null values per chunk],
    "scores": {method: [score per chunk]}}``; chunks without a value of it are left out. The profile
    is returned as a new dict; with fewer than :data:`MIN_CHUNKS` chunks it is returned unchanged.
    """
    if len(chunks) < MIN_CHUNKS:
        return dict(profile)
    features: dict[str, Any] = {}
    for name, entry in profile.get("features", {}).items():
        if name not in reference:
            features[name] = entry
            continue
        scorer = _numeric_scores if entry.get("kind") == "numeric" else _categorical_scores
        rows: list[int] = []
        scores: dict[str, list[float]] = {m: [] for m in CALIBRATED_METHODS[str(entry.get("kind"))]}
        for chunk in chunks:
            scored = scorer(entry, reference[name], chunk[name])
            if scored is None:
                continue
            n, values = scored
            rows.append(n)
            for method, value in values.items():
                scores[method].append(value)
        calibration = {"unit": unit, "rows": rows, "scores": scores}
        features[name] = {**entry, "calibration": calibration} if len(rows) >= MIN_CHUNKS else entry
    return {**profile, "features": features, "calibration": {"unit": unit, "chunks": len(chunks)}}


def calibrated_threshold(entry: Mapping[str, Any], method: str, margin: float) -> float | None:
    """``margin`` × the largest clean score of ``method`` in a profile feature ``entry`` (None when the
    profile was not calibrated for it: profiles from before calibration, too few chunks)."""
    calibration = entry.get("calibration")
    if not isinstance(calibration, dict):
        return None
    scores = calibration.get("scores", {}).get(method)
    if not scores or len(scores) < MIN_CHUNKS:
        return None
    return margin * float(max(scores))


def _numeric_scores(
    entry: Mapping[str, Any], reference: npt.ArrayLike, chunk: npt.ArrayLike
) -> tuple[int, dict[str, float]] | None:
    ref = np.asarray(reference, dtype=np.float64)
    ref = ref[np.isfinite(ref)]
    x = np.asarray(chunk, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0 or ref.size == 0:
        return None
    std = max(float(entry.get("std", 0.0)), STD_FLOOR)
    edges = entry.get("edges", [])
    expected = shares(entry.get("counts", []))
    current = shares(bin_counts(x, edges))
    return int(x.size), {
        "wasserstein": float(sps.wasserstein_distance(x, ref)) / std,
        "psi": psi(expected, current),
        "jensenshannon": js_distance(expected, current),
    }


def _categorical_scores(
    entry: Mapping[str, Any], _reference: npt.ArrayLike, chunk: npt.ArrayLike
) -> tuple[int, dict[str, float]] | None:
    values = pd.Series(np.asarray(chunk, dtype=object)).dropna().astype(str)
    if values.empty:
        return None
    counts = values.value_counts()
    ref_counts: dict[str, int] = {str(k): int(v) for k, v in entry.get("counts", {}).items()}
    categories = [*ref_counts, *sorted(c for c in counts.index if c not in ref_counts)]
    expected = shares([ref_counts.get(c, 0) for c in categories])
    current = shares([int(counts.get(c, 0)) for c in categories])
    return int(values.size), {"jensenshannon": js_distance(expected, current), "psi": psi(expected, current)}
