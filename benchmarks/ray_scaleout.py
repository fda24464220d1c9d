"""Ray scale-out benchmark: pipeline wall time with the local runner vs as Ray tasks on a two-node
cluster, and data-parallel training rows/s with 1 and 2 Ray Train workers.

Anchors (measured in the same run, on the same data): the local runner's wall time for the same
pipeline, and the in-process training loop's rows/s. Printed: each figure and its ratio to its anchor.
The cluster is a real local one (tests/ray_cluster.py): two nodes of one CPU each, on this machine.
On a 2-core host shared with other work, Ray adds scheduling, serialisation and process start-up and
has no spare cores to win back: the ratios measure that overhead; they are not a speed-up forecast
for a real cluster.

    .venv/bin/python benchmarks/ray_scaleout.py [--rows 1000000] [--days 10] [--epochs 2]
    .venv/bin/python benchmarks/ray_scaleout.py --quick       # 50k rows, a few minutes
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from driftloop.pipeline.executors import LocalExecutor
from driftloop.pipeline.params import RunParams
from driftloop.pipeline.ray_executor import RayExecutor
from driftloop.pipeline.runner import Runner
from driftloop.pipeline.training import training_pipeline
from driftloop.settings import RayRunnerSettings, TrainingSettings, load_settings
from driftloop.simulate import SimulationRequest, simulate
from driftloop.storage import open_store, store_for
from driftloop.storage.metadata import open_metadata
from driftloop.training.loop import fit
from driftloop.training.model import build_model
from driftloop.training.ray_train import fit_on_ray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the cluster launcher lives in tests/
from tests.ray_cluster import ray_cluster

START = date(2026, 1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (pipeline and training)")
    parser.add_argument("--quick", action="store_true", help="50,000 rows over 5 days")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.days = 50_000, 5
    logging.disable(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="dlray-bench-"))
    try:
        started = time.perf_counter()
        with ray_cluster(root / "cluster") as cluster:
            print(
                f"cluster: 2 nodes x 1 CPU at {cluster.address} (up in {time.perf_counter() - started:.0f} s)"
            )
            pipeline_wall_time(root / "plant", cluster.address, args.rows, args.days, args.epochs)
            training_rows_per_second(root / "train", cluster.address, args.rows, args.epochs)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def pipeline_wall_time(directory: Path, address: str, rows: int, days: int, epochs: int) -> None:
    """The whole DAG (training included, ``epochs`` epochs) with each executor, caching off."""
    directory.mkdir(parents=True)
    config = f'[ray]\naddress = "{address}"\n[training]\nmax_epochs = {epochs}\npatience = {epochs}\n'
    (directory / "driftloop.toml").write_text(config)
    settings = load_settings(directory / "driftloop.toml")
    store = store_for(settings)
    per_day = rows // days
    request = SimulationRequest(
        dataset="plant",
        start=START,
        days=days,
        rows_per_day=per_day,
        machines=50,
        seed=1,
        label_delay=timedelta(hours=24),
    )
    simulate(request, store)
    db = open_metadata(settings.database_url)
    params = RunParams(dataset="plant", as_of=datetime(2026, 3, 1, tzinfo=UTC), use_cache=False)
    executors = {
        "local runner (anchor)": LocalExecutor(settings.config_file, prewarm=True),
        "Ray tasks, 2 nodes": RayExecutor(RayRunnerSettings(type="ray"), settings),
    }
    cwd = Path.cwd()
    os.chdir(directory)  # steps resolve the workspace from the working directory, as a user runs them
    timings: dict[str, float] = {}
    try:
        # Untimed: the first run of a workspace pays for imports, the pre-warmed step server and DVC's
        # workspace; neither executor should be charged for it.
        warm = RunParams(dataset="plant", as_of=params.as_of, use_cache=False, until="features")
        Runner(settings, db, store, training_pipeline(), executors["local runner (anchor)"]).run(warm)
        for label, executor in executors.items():
            runner = Runner(settings, db, store, training_pipeline(), executor)
            t0 = time.perf_counter()
            result = runner.run(params)
            timings[label] = time.perf_counter() - t0
            assert result.status == "succeeded", (
                f"{label}: the pipeline ended {result.status}: {result.error}"
            )
    finally:
        os.chdir(cwd)
        db.dispose()
    anchor = timings["local runner (anchor)"]
    print()
    print(f"pipeline wall time — {per_day * days:,} plant rows, 7 steps, {epochs} training epochs, no cache")
    print(f"  {'':<28}{'seconds':>10}{'x anchor':>10}")
    for label, seconds in timings.items():
        print(f"  {label:<28}{seconds:>10.1f}{seconds / anchor:>10.2f}")


def training_rows_per_second(directory: Path, address: str, rows: int, epochs: int) -> None:
    """The training loop on ``rows`` rows of 20 features: in-process, then 1 and 2 Ray Train workers."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(rows, 20)).astype(np.float32)
    y = (rng.random(rows) < 1 / (1 + np.exp(-(x[:, 0] - x[:, 1] - 2.5)))).astype(np.float64)
    split = int(rows * 0.85)
    train, validation = (x[:split], y[:split]), (x[split:], y[split:])
    store = open_store(str(directory))
    results: dict[str, tuple[float, float]] = {}
    for workers in (0, 1, 2):
        cfg = TrainingSettings(max_epochs=epochs, patience=epochs, ray_workers=workers)
        model = build_model(cfg, x.shape[1])
        t0 = time.perf_counter()
        if workers == 0:
            fitted = fit(model, train, validation, cfg)
            label = "in-process (anchor)"
        else:
            fitted = fit_on_ray(
                model, train, validation, cfg, address=address, storage=store.arrow_filesystem()
            )
            label = f"Ray Train, {workers} worker{'s' if workers > 1 else ''}"
        wall = time.perf_counter() - t0
        seen = split * len(fitted.history)
        results[label] = (seen / wall, seen / fitted.seconds)
    anchor = results["in-process (anchor)"][0]
    print()
    print(f"training rows/s — {split:,} training rows x {epochs} epochs, MLP {TrainingSettings().hidden}")
    print(f"  {'':<24}{'rows/s (wall)':>15}{'x anchor':>10}{'rows/s (loop only)':>20}")
    for label, (wall_rate, loop_rate) in results.items():
        print(f"  {label:<24}{wall_rate:>15,.0f}{wall_rate / anchor:>10.2f}{loop_rate:>20,.0f}")
    print("  (wall: the whole call, Ray Train's worker start-up and checkpoint included; loop only: the")
    print("   training loop's own time on worker 0)")


if __name__ == "__main__":
    main()
