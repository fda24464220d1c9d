"""Pipeline benchmark: ingest + validate + transform of 1M plant rows, and runner overhead per step.

Anchor (measured in the same run): ``pandas.read_csv`` of the same raw files — the cost of merely
reading the data. Printed: rows/s for driftloop's three steps and their time as a ratio of the anchor;
runner overhead per step (a subprocess per step + bookkeeping) against the same steps run in-process.

    .venv/bin/python benchmarks/pipeline.py [--rows 1000000] [--days 10]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd

from driftloop.pipeline.execute import execute_step
from driftloop.pipeline.executors import LocalExecutor
from driftloop.pipeline.params import RunParams
from driftloop.pipeline.runner import Runner
from driftloop.pipeline.spec import StepContext
from driftloop.pipeline.training import ingest, training_pipeline, transform, validate
from driftloop.settings import load_settings
from driftloop.simulate import SimulationRequest, simulate
from driftloop.storage import store_for
from driftloop.storage.metadata import open_metadata

START = date(2026, 1, 1)


class _InProcess:
    def __init__(self, settings, db, store, pipeline) -> None:  # type: ignore[no-untyped-def]
        self.args = (settings, db, store, pipeline)

    def run(self, step: str, run_id: str, log: Path, timeout_s: float) -> int:
        return 0 if execute_step(*self.args, run_id=run_id, step=step) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=10)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    throughput(args.rows, args.days)
    runner_overhead()


def throughput(total_rows: int, days: int) -> None:
    """ingest + validate + transform in-process, against pandas.read_csv of the same files."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "driftloop.toml").write_text("")
        settings = load_settings(cwd=root)
        store = store_for(settings)
        per_day = total_rows // days
        simulate(
            SimulationRequest(
                dataset="plant",
                start=START,
                days=days,
                rows_per_day=per_day,
                machines=50,
                seed=1,
                label_delay=timedelta(hours=24),
            ),
            store,
        )
        rows = per_day * days
        files = sorted((root / ".driftloop" / "raw" / "plant").rglob("*.csv"))

        t0 = time.perf_counter()
        anchor_frame = pd.concat([pd.read_csv(f) for f in files])
        anchor = time.perf_counter() - t0
        assert len(anchor_frame) == rows

        as_of = datetime(2026, 2, 1, tzinfo=UTC)
        ctx = StepContext(
            "bench",
            "bench",
            RunParams(dataset="plant", as_of=as_of),
            settings,
            store,
            logging.getLogger("bench"),
        )
        timings = {}
        t0 = time.perf_counter()
        ingested = ingest(ctx)
        timings["ingest"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        validated = validate(
            ctx, ingested.outputs["raw"], ingested.outputs["labels"], ingested.outputs["manifest"]
        )
        timings["validate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        transform(ctx, validated.outputs["valid"])
        timings["transform"] = time.perf_counter() - t0
        total = sum(timings.values())

        print(f"driftloop pipeline benchmark — {rows:,} plant rows in {len(files)} daily partitions")
        print(f"{'':<28}{'seconds':>10}{'rows/s':>14}{'× anchor':>10}")
        print(f"{'anchor: pandas.read_csv':<28}{anchor:>10.2f}{rows / anchor:>14,.0f}{1.0:>10.2f}")
        for name, seconds in timings.items():
            print(f"{name:<28}{seconds:>10.2f}{rows / seconds:>14,.0f}{seconds / anchor:>10.2f}")
        print(f"{'ingest+validate+transform':<28}{total:>10.2f}{rows / total:>14,.0f}{total / anchor:>10.2f}")


def runner_overhead() -> None:
    """The same tiny pipeline with each step in a subprocess vs in this process."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "driftloop.toml").write_text("")
        settings = load_settings(cwd=root)
        store = store_for(settings)
        simulate(
            SimulationRequest(
                dataset="plant",
                start=START,
                days=1,
                rows_per_day=200,
                machines=5,
                seed=1,
                label_delay=timedelta(0),
            ),
            store,
        )
        db = open_metadata(settings.database_url)
        pipeline = training_pipeline()
        # The data half of the DAG: the per-step overhead, not model training, is measured here.
        params = RunParams(
            dataset="plant", as_of=datetime(2026, 2, 1, tzinfo=UTC), use_cache=False, until="features"
        )
        results = {}
        for label, executor in (
            ("in-process", _InProcess(settings, db, store, pipeline)),
            ("forked from a pre-warmed server", LocalExecutor(settings.config_file, prewarm=True)),
            ("python -m driftloop per step", LocalExecutor(settings.config_file, prewarm=False)),
        ):
            runner = Runner(settings, db, store, pipeline, executor)
            runner.run(params)  # warm caches (DVC workspace, imports)
            t0 = time.perf_counter()
            repeats = 3
            for _ in range(repeats):
                runner.run(params)
            results[label] = (time.perf_counter() - t0) / repeats / len(pipeline.steps)
        db.dispose()
        print()
        print(f"runner, per step (200-row run, {len(pipeline.steps)} steps, mean of 3 runs)")
        base = results["in-process"]
        print(f"  {'in-process execution + bookkeeping':<40}{base:.3f} s")
        for label, seconds in results.items():
            if label != "in-process":
                print(
                    f"  {label:<40}{seconds:.3f} s   isolation overhead {seconds - base:.3f} s (target < 1 s)"
                )


if __name__ == "__main__":
    main()
