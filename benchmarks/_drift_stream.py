"""Stream a Parquet window through driftloop's drift accumulators, for ``benchmarks/drift.py``.

:func:`monitor` is what the benchmark times in its own process; run as a script (a fresh process, so
its peak RSS is the monitor's alone) it loads a stored reference profile, streams the window in chunks
with pyarrow's ``iter_batches`` and prints one JSON object: rows, seconds, peak RSS (after the imports,
after the first million rows, at the end) and the verdicts.

    .venv/bin/python benchmarks/_drift_stream.py PROFILE.json CURRENT.parquet [--chunk-rows 200000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from driftloop.monitoring.stats import (
    CategoricalAccumulator,
    DatasetDrift,
    FeatureDrift,
    NumericAccumulator,
    dataset_verdict,
    feature_drift,
)
from driftloop.settings import MonitoringSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


def monitor(
    profile: Mapping[str, Any],
    path: Path,
    cfg: MonitoringSettings,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[list[FeatureDrift], DatasetDrift, int]:
    """Each feature's drift and the dataset verdict for the window in ``path``, and its row count.

    ``on_chunk`` is called with the rows seen so far after each chunk.
    """
    accumulators: dict[str, NumericAccumulator | CategoricalAccumulator] = {
        name: NumericAccumulator(entry) if entry["kind"] == "numeric" else CategoricalAccumulator(entry)
        for name, entry in profile["features"].items()
    }
    rows = 0
    # pre_buffer (pyarrow's default) caches every column chunk it prefetched until the file is closed:
    # 2 GB of RSS for a 1.6 GB file. A buffered stream reads each column page by page instead.
    parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    for batch in parquet.iter_batches(batch_size=cfg.chunk_rows, columns=list(accumulators)):
        rows += batch.num_rows
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            accumulator = accumulators[name]
            if isinstance(accumulator, NumericAccumulator):
                accumulator.update(column.to_numpy(zero_copy_only=False))
            else:
                accumulator.update(column.to_pandas())  # Arrow-backed strings: hashed without Python str
        if on_chunk is not None:
            on_chunk(rows)
    results = [feature_drift(name, accumulator, cfg) for name, accumulator in accumulators.items()]
    return results, dataset_verdict(results, cfg), rows


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB.

    Linux's ``VmHWM`` belongs to this program image; ``ru_maxrss`` survives ``exec`` and would report
    the peak of the (large) benchmark process this one was forked from.
    """
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("current", type=Path)
    parser.add_argument("--chunk-rows", type=int, default=MonitoringSettings().chunk_rows)
    args = parser.parse_args()
    profile = json.loads(args.profile.read_text())
    cfg = MonitoringSettings(chunk_rows=args.chunk_rows)
    before = peak_rss_mb()  # interpreter, numpy, scipy, pandas, pyarrow and the profile
    early: list[float] = []

    def watch(rows: int) -> None:
        if rows >= 1_000_000 and not early:
            early.append(peak_rss_mb())

    start = time.perf_counter()
    results, verdict, rows = monitor(profile, args.current, cfg, watch)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": seconds,
                "peak_rss_mb": peak_rss_mb(),
                "rss_before_mb": before,
                "peak_rss_first_million_mb": early[0] if early else None,
                "drifted": [r.name for r in results if r.drifted],
                "dataset_drifted": verdict.drifted,
            }
        )
    )


if __name__ == "__main__":
    main()
