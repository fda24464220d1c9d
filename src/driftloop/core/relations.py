"""Relations: the difference of two numeric features that wander together, profiled and calibrated.

A per-feature threshold cannot separate a sensor offset from the weather when the offset is the size of
the feature's own day-to-day wander (the plant's air temperature: ~1 K a day, a 3 K offset). But the
plant's process temperature follows the air: their *difference* hardly wanders (~0.2 K a day) and an
offset of either moves it by the full offset. So, at training time, pairs of features whose clean chunk
means move together are found and their difference (``b − a``) is profiled and calibrated like a
feature (decision 0060). The monitor tests each relation; a drifted relation is attributed to the
member farther from its own reference (``monitoring.relations``).

A pair is related when both members wander (the standard deviation of their chunk means is at least
:data:`WANDER` of their reference standard deviation: features that only carry sampling noise stay
near 0.02 at a few thousand rows a chunk) and their chunk means correlate at :data:`CORRELATION` or
more. Pure numpy, no I/O.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import numpy as np

from driftloop.core.calibration import MIN_CHUNKS, calibrate, time_chunks
from driftloop.core.profile import numeric_profile

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy.typing as npt

__all__ = ["CORRELATION", "WANDER", "add_relations", "calibrate_reference", "related_pairs", "relation_name"]

WANDER = 0.2
CORRELATION = 0.8


def relation_name(a: str, b: str) -> str:
    """The name a relation is reported under: ``"b − a"``."""
    return f"{b} − {a}"


def related_pairs(
    reference: Mapping[str, npt.ArrayLike],
    chunks: Sequence[Mapping[str, npt.ArrayLike]],
    numeric: Sequence[str],
) -> list[tuple[str, str]]:
    """The pairs ``(a, b)`` of ``numeric`` features (in the given order) that wander together."""
    if len(chunks) < MIN_CHUNKS:
        return []
    means: dict[str, npt.NDArray[np.float64]] = {}
    for name in numeric:
        ref = np.asarray(reference[name], dtype=np.float64)
        ref = ref[np.isfinite(ref)]
        if ref.size < 2 or float(ref.std()) <= 0:
            continue
        chunk_means = np.array([_mean(chunk[name]) for chunk in chunks])
        if not np.all(np.isfinite(chunk_means)):
            continue
        if float(chunk_means.std()) >= WANDER * float(ref.std()):
            means[name] = chunk_means
    pairs = []
    for a, b in itertools.combinations(means, 2):
        together = float(np.corrcoef(means[a], means[b])[0, 1])  # both wander: neither sd is 0
        if together >= CORRELATION:
            pairs.append((a, b))
    return pairs


def add_relations(
    profile: Mapping[str, Any],
    reference: Mapping[str, npt.ArrayLike],
    chunks: Sequence[Mapping[str, npt.ArrayLike]],
    *,
    unit: str,
) -> dict[str, Any]:
    """``profile`` with ``relations``: for each related pair of its numeric features, the profile of
    ``b − a`` on ``reference``, ``of = [a, b]`` and the clean scores of ``b − a`` on each chunk."""
    numeric = [
        n for n, e in profile.get("features", {}).items() if e.get("kind") == "numeric" and n in reference
    ]
    relations: dict[str, Any] = {}
    for a, b in related_pairs(reference, chunks, numeric):
        name = relation_name(a, b)
        values = _difference(reference, a, b)
        entry = {**numeric_profile(values), "of": [a, b]}
        parts = [{name: _difference(chunk, a, b)} for chunk in chunks]
        calibrated = calibrate({"features": {name: entry}}, {name: values}, parts, unit=unit)
        relations[name] = calibrated["features"][name]
    return {**profile, "relations": relations} if relations else dict(profile)


def calibrate_reference(
    profile: Mapping[str, Any],
    reference: Mapping[str, npt.ArrayLike],
    before: Mapping[str, npt.ArrayLike],
    timestamps: npt.ArrayLike | None,
    *,
    min_rows: int,
) -> dict[str, Any]:
    """The profile training stores: ``profile`` calibrated on the :func:`~driftloop.core.calibration.
    time_chunks` of ``before`` (the same columns as ``reference`` for the time-ordered rows that precede
    it, ``timestamps`` theirs or None), with the relations those chunks reveal."""
    rows = len(np.asarray(next(iter(before.values())))) if before else 0
    unit, chunks = time_chunks(rows, timestamps, min_rows=min_rows)
    columns = {name: np.asarray(values) for name, values in before.items()}
    parts = [{name: values[rows_of] for name, values in columns.items()} for rows_of in chunks]
    return add_relations(calibrate(profile, reference, parts, unit=unit), reference, parts, unit=unit)


def _difference(columns: Mapping[str, npt.ArrayLike], a: str, b: str) -> npt.NDArray[np.float64]:
    return np.asarray(columns[b], dtype=np.float64) - np.asarray(columns[a], dtype=np.float64)


def _mean(values: npt.ArrayLike) -> float:
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")
