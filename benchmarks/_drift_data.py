"""Deterministic plant-like columns for ``benchmarks/drift.py``: 20 numeric + 2 categorical, 6 shifted.

Written to Parquet chunk by chunk (one row group per chunk), so 10M rows never sit in memory. Chunk ``i``
of a file seeded ``s`` draws from ``default_rng([s, i])``: the same arguments give the same bytes.
Stdlib, numpy and pyarrow only: ``benchmarks/_drift_evidently.py`` runs in Evidently's own venv and
imports the column lists from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["CATEGORICAL", "NUMERIC", "SHIFTED", "write"]

Draw = Callable[[np.random.Generator, int, bool], np.ndarray]

CAT_LEVELS = {
    "machine_type": (["L", "M", "H", "X", "Z"], [0.5, 0.3, 0.12, 0.05, 0.03], None),
    "shift_crew": (["A", "B", "C", "D"], [0.4, 0.3, 0.2, 0.1], [0.2, 0.25, 0.2, 0.35]),
}
CATEGORICAL = list(CAT_LEVELS)


def _normal(mean: float, std: float, shift: float = 0.0, scale: float = 1.0) -> Draw:
    def draw(rng: np.random.Generator, n: int, drifted: bool) -> np.ndarray:
        out = rng.normal(mean, std, n)
        return (out - mean) * scale + mean + shift * std if drifted else out

    return draw


def _lognormal(sigma: float, factor: float = 1.0) -> Draw:
    def draw(rng: np.random.Generator, n: int, drifted: bool) -> np.ndarray:
        out = rng.lognormal(0.0, sigma, n)
        return out * factor if drifted else out

    return draw


def _uniform(low: float, high: float) -> Draw:
    return lambda rng, n, drifted: rng.uniform(low, high, n)


def _counts(lam: float) -> Draw:
    return lambda rng, n, drifted: rng.poisson(lam, n).astype(np.float64)


def _exponential(scale: float) -> Draw:
    return lambda rng, n, drifted: rng.exponential(scale, n)


# Shifted columns first. Each shift is clear of the 0.1 normed-Wasserstein threshold, so the two tools
# are judged on their verdicts, not on rounding at the edge.
COLUMNS: dict[str, Draw] = {
    "air_temp_k": _normal(300.0, 2.0, shift=0.5),
    "process_temp_k": _normal(310.0, 1.5, shift=-0.3),
    "torque_nm": _normal(40.0, 10.0, scale=1.5),
    "vibration_mm_s": _lognormal(0.6, factor=1.3),
    "rotation_rpm": _normal(1500.0, 180.0, shift=0.2),
    "tool_wear_min": _uniform(0.0, 250.0),
    "humidity_pct": _normal(45.0, 8.0),
    "power_kw": _lognormal(0.3),
    "pressure_bar": _normal(6.0, 0.4),
    "coolant_flow_l_min": _normal(12.0, 1.5),
    "oil_temp_c": _normal(65.0, 5.0),
    "current_a": _normal(18.0, 3.0),
    "voltage_v": _normal(400.0, 4.0),
    "acoustic_db": _normal(78.0, 6.0),
    "spindle_load_pct": _uniform(10.0, 95.0),
    "feed_rate_mm_min": _lognormal(0.8),
    "cycle_time_s": _exponential(30.0),
    "part_count": _counts(12.0),
    "ambient_dust_ug_m3": _lognormal(1.0),
    "belt_tension_n": _normal(220.0, 15.0),
}
NUMERIC = list(COLUMNS)
SHIFTED = [*NUMERIC[:5], "shift_crew"]


def _chunk(rng: np.random.Generator, n: int, drifted: bool) -> dict[str, np.ndarray]:
    columns = {name: draw(rng, n, drifted) for name, draw in COLUMNS.items()}
    for name, (levels, shares, drifted_shares) in CAT_LEVELS.items():
        p = drifted_shares if drifted and drifted_shares else shares
        columns[name] = np.asarray(levels, dtype=object)[rng.choice(len(levels), n, p=p)]
    return columns


def write(path: Path, rows: int, *, seed: int, drifted: bool, chunk_rows: int = 500_000) -> None:
    """Write ``rows`` rows to the Parquet file ``path``; ``drifted`` applies the shifts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            *(pa.field(name, pa.float64()) for name in NUMERIC),
            *(pa.field(name, pa.string()) for name in CATEGORICAL),
        ]
    )
    with pq.ParquetWriter(path, schema) as writer:
        for index, start in enumerate(range(0, rows, chunk_rows)):
            rng = np.random.default_rng([seed, index])
            columns = _chunk(rng, min(chunk_rows, rows - start), drifted)
            writer.write_table(pa.table(columns, schema=schema))
