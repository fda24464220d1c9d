"""Benchmark ``driftloop.simulate`` against its target of 1,000,000 rows per minute to local disk.

Simulates ``--rows`` rows (default 1,000,000) into a temporary directory, then, as an anchor from the
same machine and run, times ``pandas.DataFrame.to_csv`` writing the same raw table. The simulator's time
includes generating the data and writing the labels too, so a ratio below 1 means it does all of that
faster than pandas merely writes the raw CSV.

    .venv/bin/python benchmarks/simulate.py [--rows N] [--machines M] [--rows-per-day R]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from driftloop.simulate import SimulationRequest, simulate
from driftloop.storage import open_store

TARGET_ROWS_PER_MINUTE = 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to simulate (default 1,000,000)")
    parser.add_argument("--machines", type=int, default=20, help="machines in the fleet (default 20)")
    parser.add_argument("--rows-per-day", type=int, default=100_000, help="rows per day (default 100,000)")
    args = parser.parse_args()

    days = max(1, math.ceil(args.rows / args.rows_per_day))
    request = SimulationRequest(
        dataset="bench",
        start=date(2026, 1, 1),
        days=days,
        rows_per_day=math.ceil(args.rows / days),
        machines=args.machines,
        seed=0,
        label_delay=timedelta(hours=24),
    )
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-") as tmp:
        root = Path(tmp)
        store = open_store(str(root / "store"))
        started = time.perf_counter()
        summary = simulate(request, store)
        seconds = time.perf_counter() - started

        # The anchor: pandas writing the very same raw table (read back untimed).
        frame = pd.concat([pd.read_csv(store.uri(key)) for key in summary.raw_keys], ignore_index=True)
        started = time.perf_counter()
        frame.to_csv(root / "anchor.csv", index=False)
        anchor = time.perf_counter() - started
        size = sum(info.size for info in store.list())

    per_minute = summary.rows / seconds * 60
    files = len(summary.raw_keys) + len(summary.label_keys)
    fleet = f"{days} days × {request.rows_per_day:,}, {args.machines} machines"
    print(f"rows                 {summary.rows:,} ({fleet})")
    print(f"written              {size / 1e6:,.1f} MB raw + labels in {files} files")
    print(f"seconds              {seconds:.2f}")
    print(f"rows/min             {per_minute:,.0f}")
    print(f"vs target            {per_minute / TARGET_ROWS_PER_MINUTE:.1f}× the 1,000,000 rows/min target")
    print(f"anchor: pandas       {anchor:.2f} s for DataFrame.to_csv of the raw table alone")
    print(f"driftloop / anchor   {seconds / anchor:.2f}")


if __name__ == "__main__":
    main()
