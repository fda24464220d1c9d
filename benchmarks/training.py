"""Training benchmark: the default PyTorch MLP on 100k simulated plant rows, on this machine's CPU.

Anchor (measured in the same run, same features, same time-ordered split): scikit-learn's
``LogisticRegression`` — the cheapest sensible baseline for the same table. Printed: time per epoch,
epochs run (early stopping), total training time, the tracked end-to-end time (training + MLflow
logging + hold-out evaluation, plots and reference profile into an embedded MLflow store), and hold-out
ROC AUC for both, so speed is never bought with quality. Target: under 60 s in total.

    .venv/bin/python benchmarks/training.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from driftloop.core.transform import Transform
from driftloop.pipeline import modeling
from driftloop.pipeline.params import RunParams
from driftloop.pipeline.spec import StepContext
from driftloop.pipeline.training import ingest, transform, validate
from driftloop.settings import load_settings
from driftloop.simulate import SimulationRequest, simulate
from driftloop.storage import store_for
from driftloop.training.loop import fit, predict
from driftloop.training.metrics import choose_threshold, classification_metrics
from driftloop.training.model import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), args.rows)


def _features(root: Path, rows: int) -> modeling.TrainingData:
    (root / "driftloop.toml").write_text("")
    settings = load_settings(cwd=root)
    store = store_for(settings)
    days = 10
    request = SimulationRequest(
        dataset="plant",
        start=date(2026, 1, 1),
        days=days,
        rows_per_day=rows // days,
        machines=50,
        seed=1,
        label_delay=timedelta(0),
    )
    simulate(request, store)
    ctx = StepContext(
        "bench",
        "bench",
        RunParams(dataset="plant", as_of=datetime(2026, 2, 1, tzinfo=UTC)),
        settings,
        store,
        logging.getLogger("bench"),
    )
    ingested = ingest(ctx)
    out = ingested.outputs
    validated = validate(ctx, out["raw"], out["labels"], out["manifest"])
    transformed = transform(ctx, validated.outputs["valid"])
    table = transformed.outputs["features"]
    return modeling.TrainingData(
        table=table,
        transform=Transform.from_json(json.dumps(transformed.outputs["transform"])),
        target=settings.data.target,
        dataset_name="plant-bench",
        source_uri=root.as_uri(),
    )


def run(root: Path, rows: int) -> None:
    from sklearn.linear_model import LogisticRegression

    data = _features(root, rows)
    settings = load_settings(cwd=root)
    cfg = settings.training
    split = modeling.time_split(len(data.table), cfg)
    x, y = data.x, data.y
    train, validation = (x[split.train], y[split.train]), (x[split.validation], y[split.validation])
    x_hold, y_hold = x[split.holdout], y[split.holdout]

    t0 = time.perf_counter()
    anchor = LogisticRegression(max_iter=1000, class_weight="balanced").fit(*train)
    anchor_s = time.perf_counter() - t0
    anchor_val = anchor.predict_proba(validation[0])[:, 1]
    anchor_hold = anchor.predict_proba(x_hold)[:, 1]
    anchor_threshold = choose_threshold(validation[1], anchor_val)
    anchor_auc = classification_metrics(y_hold, anchor_hold, anchor_threshold)["roc_auc"]

    t0 = time.perf_counter()
    result = fit(build_model(cfg, x.shape[1]), train, validation, cfg)
    fit_s = time.perf_counter() - t0
    threshold = choose_threshold(validation[1], predict(result.model, validation[0]))
    auc = classification_metrics(y_hold, predict(result.model, x_hold), threshold)["roc_auc"]
    per_epoch = [r.seconds for r in result.history]

    from driftloop.tracking import Tracker

    tracker = Tracker(settings)
    t0 = time.perf_counter()
    outcome = modeling.train_and_log(settings, tracker, data)
    modeling.evaluate_and_log(settings, tracker, data, outcome)
    tracked_s = time.perf_counter() - t0

    print(
        f"driftloop training benchmark — {len(data.table):,} plant rows, {x.shape[1]} features, "
        f"{split.val_start:,} train / {split.holdout_start - split.val_start:,} validation / "
        f"{split.rows - split.holdout_start:,} hold-out, failure rate {y.mean():.2%}"
    )
    print(
        f"model: MLP {list(cfg.hidden)}, batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.learning_rate}, "
        f"early stopping patience {cfg.patience}, {cfg.threads} torch thread(s)"
    )
    print(f"{'':<44}{'seconds':>9}{'× anchor':>10}{'hold-out ROC AUC':>18}")
    print(f"{'anchor: sklearn LogisticRegression':<44}{anchor_s:>9.2f}{1.0:>10.2f}{anchor_auc:>18.4f}")
    label = f"driftloop fit ({len(result.history)} epochs, best {result.best_epoch})"
    print(f"{label:<44}{fit_s:>9.2f}{fit_s / anchor_s:>10.2f}{auc:>18.4f}")
    print(f"{'  per epoch (mean / max)':<44}{np.mean(per_epoch):>9.3f}  max {max(per_epoch):.3f}")
    label = "driftloop train+evaluate, tracked in MLflow"
    print(f"{label:<44}{tracked_s:>9.2f}{tracked_s / anchor_s:>10.2f}")
    print(f"target: under 60 s in total — {'met' if tracked_s < 60 else 'NOT met'} ({tracked_s:.1f} s)")


if __name__ == "__main__":
    main()
