"""Training, evaluation and registration of one model, with everything tracked in MLflow.

The pipeline's ``train → evaluate → register`` steps and the ``driftloop train`` / ``reproduce`` /
``experiment`` commands all go through these functions, so a model trained on a laptop is tracked
exactly like one the scheduler trained.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from driftloop import __version__
from driftloop.core.profile import build_profile
from driftloop.core.relations import calibrate_reference
from driftloop.core.transform import NULL_LEVEL
from driftloop.errors import DataError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import pandas as pd

    from driftloop.core.models import ModelVersion
    from driftloop.core.transform import Transform
    from driftloop.registry import Registry
    from driftloop.settings import Settings, TrainingSettings
    from driftloop.tracking import Tracker
    from driftloop.training.loop import EpochRecord

__all__ = [
    "HOLDOUT_SCORES",
    "TAG_FEATURE_VERSION",
    "TAG_PIPELINE_RUN",
    "Split",
    "TrainOutcome",
    "TrainingData",
    "evaluate_and_log",
    "git_state",
    "register_version",
    "time_split",
    "train_and_log",
]

TAG_FEATURE_VERSION = "driftloop.feature_version"
TAG_PIPELINE_RUN = "driftloop.pipeline_run"
TAG_WINDOW = "driftloop.data_window"
TAG_DATASET = "driftloop.dataset"
HOLDOUT_SCORES = "evaluation/holdout_scores.json"


@dataclass(frozen=True)
class Split:
    """Time-ordered row ranges: ``[0, val_start)`` train, ``[val_start, holdout_start)`` validation,
    ``[holdout_start, rows)`` evaluation hold-out (the latest data)."""

    rows: int
    val_start: int
    holdout_start: int

    @property
    def train(self) -> slice:
        return slice(0, self.val_start)

    @property
    def validation(self) -> slice:
        return slice(self.val_start, self.holdout_start)

    @property
    def holdout(self) -> slice:
        return slice(self.holdout_start, self.rows)


def time_split(rows: int, cfg: TrainingSettings) -> Split:
    """Split ``rows`` time-ordered rows per ``cfg``; :class:`DataError` when a part would be empty."""
    holdout_start = round(rows * (1 - cfg.holdout_share))
    val_start = round(holdout_start * (1 - cfg.validation_share))
    split = Split(rows=rows, val_start=val_start, holdout_start=holdout_start)
    if min(val_start, holdout_start - val_start, rows - holdout_start) < 1:
        raise DataError(f"{rows} rows are too few to split into train, validation and hold-out")
    return split


@dataclass(frozen=True)
class TrainingData:
    """A time-ordered, model-ready table and what the tracking needs to know about it.

    ``table`` holds the raw input columns (as training validated them), the ``f_…`` features the
    fitted ``transform`` made of them, and the target.
    """

    table: pd.DataFrame
    transform: Transform
    target: str
    dataset_name: str
    source_uri: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return self.transform.feature_names

    def raw_inputs(self, rows: slice | None = None) -> pd.DataFrame:
        """The raw input columns, typed as an MLflow client sends them (the logged model's signature)."""
        frame = self.table if rows is None else self.table.iloc[rows]
        return self.transform.typed_frame(frame).reset_index(drop=True)

    @property
    def x(self) -> np.ndarray:
        return self.table[self.feature_names].to_numpy(dtype=np.float32)

    @property
    def y(self) -> np.ndarray:
        return self.table[self.target].to_numpy(dtype=np.float64)


@dataclass(frozen=True)
class TrainOutcome:
    run_id: str
    model_uri: str
    threshold: float | None
    split: Split
    best_epoch: int
    epochs: int
    val_score: float

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "split": asdict(self.split)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainOutcome:
        return cls(**{**data, "split": Split(**data["split"])})


def git_state() -> dict[str, str]:
    """The working directory's git commit and whether it has uncommitted changes ("unknown" outside git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"driftloop.git.commit": "unknown", "driftloop.git.dirty": "unknown"}
    return {"driftloop.git.commit": commit, "driftloop.git.dirty": "true" if dirty else "false"}


def train_and_log(
    settings: Settings,
    tracker: Tracker,
    data: TrainingData,
    *,
    cfg: TrainingSettings | None = None,
    run_name: str = "train",
    parent_run_id: str | None = None,
    extra_tags: Mapping[str, str] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainOutcome:
    """Train on the train/validation parts of ``data`` and track it all in one new MLflow run.

    Logged: parameters, per-epoch metrics, the ``.pth`` state dict, the MLflow PyTorch model (signature
    and input example), the fitted transform, the training configuration, the dataset (``log_input``),
    and tags for git state, feature version, pipeline run, data window and driftloop version.
    """
    import io

    import torch

    from driftloop.training.loop import fit
    from driftloop.training.metrics import choose_threshold
    from driftloop.training.model import build_model

    cfg = cfg or settings.training
    split = time_split(len(data.table), cfg)
    x, y = data.x, data.y
    tags = {
        **git_state(),
        **data.tags,
        TAG_DATASET: data.dataset_name,
        "driftloop.version": __version__,
        "driftloop.task": cfg.task,
        **(extra_tags or {}),
    }
    # Built before the run starts: a bad model factory is a configuration error, not a failed run.
    model = build_model(cfg, len(data.feature_names))
    run_id = tracker.start_run(run_name, kind="training", tags=tags, parent_run_id=parent_run_id)
    try:
        tracker.log_params(run_id, _params(cfg, data, split))
        tracker.log_dataset(
            run_id,
            data.table,
            name=data.dataset_name,
            source=data.source_uri,
            target=data.target,
            context="training",
        )

        def log_epoch(record: EpochRecord) -> None:
            metrics = {
                "train_loss": record.train_loss,
                "val_loss": record.val_loss,
                "val_score": record.val_score,
            }
            tracker.log_metrics(run_id, metrics, step=record.epoch)
            if on_epoch is not None:
                on_epoch(record)

        train, validation = (x[split.train], y[split.train]), (x[split.validation], y[split.validation])
        if cfg.ray_workers:
            # Data-parallel on the Ray cluster (the driftloop[ray] extra); the same loop and the same result.
            from driftloop.storage import store_for
            from driftloop.training.ray_train import fit_on_ray

            storage = store_for(settings).arrow_filesystem()
            address = settings.ray.address
            result = fit_on_ray(
                model, train, validation, cfg, address=address, storage=storage, on_epoch=log_epoch
            )
        else:
            result = fit(model, train, validation, cfg, on_epoch=log_epoch)
        best = result.history[result.best_epoch - 1] if result.history else None
        threshold = None
        if cfg.task == "classification":
            from driftloop.training.loop import predict

            threshold = choose_threshold(y[split.validation], predict(result.model, x[split.validation]))
        summary = {
            "best_epoch": result.best_epoch,
            "epochs": len(result.history),
            "stopped_early": int(result.stopped_early),
            "train_seconds": result.seconds,
            "val_best_score": best.val_score if best else None,
            "threshold": threshold,
        }
        tracker.log_metrics(run_id, summary)
        buffer = io.BytesIO()
        torch.save(result.model.state_dict(), buffer)
        tracker.log_bytes(run_id, "model.pth", buffer.getvalue())
        tracker.log_bytes(run_id, "transform.json", data.transform.to_json().encode())
        tracker.log_json(run_id, "training_config.json", cfg.model_dump(mode="json"))
        tracker.log_json(run_id, "feature_names.json", data.feature_names)
        example = data.raw_inputs(slice(split.holdout_start, split.holdout_start + 5))
        model_uri = tracker.log_model(run_id, result.model, data.transform, example)
    except BaseException:
        tracker.end_run(run_id, failed=True)
        raise
    tracker.end_run(run_id)
    return TrainOutcome(
        run_id=run_id,
        model_uri=model_uri,
        threshold=threshold,
        split=split,
        best_epoch=result.best_epoch,
        epochs=len(result.history),
        val_score=float(best.val_score) if best else float("nan"),
    )


def evaluate_and_log(
    settings: Settings,
    tracker: Tracker,
    data: TrainingData,
    outcome: TrainOutcome,
    *,
    cfg: TrainingSettings | None = None,
) -> dict[str, Any]:
    """Evaluate the tracked model on the hold-out's raw rows through the MLflow model as a client loads
    it (its own transform, the code the service runs); log metrics, slices, plots, confusion matrix,
    calibration and the reference profile to the same run. Returns the metrics."""
    from driftloop.training import metrics as m
    from driftloop.training import plots

    cfg = cfg or settings.training
    scorer = tracker.load_scorer(outcome.model_uri)
    holdout = data.table.iloc[outcome.split.holdout]
    y = holdout[data.target].to_numpy(dtype=np.float64)
    scores = scorer.predict(data.raw_inputs(outcome.split.holdout))
    run_id = outcome.run_id
    categorical = [c.name for c in data.transform.categorical]
    if cfg.task == "classification":
        threshold = outcome.threshold if outcome.threshold is not None else 0.5
        overall = m.classification_metrics(y, scores, threshold)
        slices = {
            column: m.slice_metrics(y, scores, threshold, _groups(data.transform, column, holdout), cfg.task)
            for column in categorical
        }
        tracker.log_json(run_id, "evaluation/confusion_matrix.json", m.confusion(y, scores, threshold))
        tracker.log_json(run_id, "evaluation/calibration.json", m.calibration(y, scores))
        tracker.log_bytes(run_id, "plots/roc.png", plots.roc_curve_png(y, scores))
        tracker.log_bytes(run_id, "plots/pr.png", plots.pr_curve_png(y, scores))
        tracker.log_bytes(run_id, "plots/calibration.png", plots.calibration_png(y, scores))
    else:
        overall = m.regression_metrics(y, scores)
        slices = {
            column: m.slice_metrics(y, scores, 0.0, _groups(data.transform, column, holdout), cfg.task)
            for column in categorical
        }
    tracker.log_metrics(run_id, {f"holdout_{k}": v for k, v in overall.items() if isinstance(v, int | float)})
    flat = {
        _metric_key(f"slice_{column}_{group}_{k}"): v
        for column, groups in slices.items()
        for group, values in groups.items()
        for k, v in values.items()
        if k in ("roc_auc", "pr_auc", "f1", "rmse", "r2", "n")
    }
    tracker.log_metrics(run_id, flat)
    tracker.log_json(run_id, "evaluation/metrics.json", {"overall": overall, "slices": slices})
    # Per-row hold-out scores, in the feature version's row order: what any later scoring of the same
    # raw rows (the service, mlflow models serve, a reproduction) must give again.
    tracker.log_json(
        run_id,
        HOLDOUT_SCORES,
        {"rows": [outcome.split.holdout_start, outcome.split.rows], "scores": scores.tolist()},
    )
    numeric = [n.name for n in data.transform.numeric]
    columns = {name: holdout[name].to_numpy(dtype=np.float64) for name in numeric}
    columns |= {name: data.transform.canonical(name, holdout[name]) for name in categorical}
    # The target of every row the feature version holds: the band a regression model's labels must
    # fall in is derived from it (core.labels).
    profile = build_profile(columns, numeric=numeric, categorical=categorical, scores=scores, target=data.y)
    profile = _calibrated(profile, data, columns, outcome.split, min_rows=settings.monitoring.min_samples)
    tracker.log_json(run_id, "reference_profile.json", profile)
    return {"overall": overall, "slices": slices}


def _calibrated(
    profile: dict[str, Any],
    data: TrainingData,
    reference: Mapping[str, np.ndarray],
    split: Split,
    *,
    min_rows: int,
) -> dict[str, Any]:
    """``profile`` with each feature's clean scores: the days (or equal chunks) before the hold-out,
    each scored against the hold-out the profile describes (decision 0060). Unchanged when there are
    too few chunks of at least ``min_rows`` rows (the monitor then uses the configured thresholds)."""
    before = data.table.iloc[: split.holdout_start]
    stamp = next((d.name for d in data.transform.dropped if d.role == "timestamp"), None)
    timestamps = before[stamp].to_numpy() if stamp is not None and stamp in before.columns else None
    columns = {n.name: before[n.name].to_numpy(dtype=np.float64) for n in data.transform.numeric}
    columns |= {c.name: data.transform.canonical(c.name, before[c.name]) for c in data.transform.categorical}
    return calibrate_reference(profile, reference, columns, timestamps, min_rows=min_rows)


def _metric_key(name: str) -> str:
    """``name`` as an MLflow metric key: characters MLflow refuses (``<``, ``=``, ``%``…) become ``_``."""
    return re.sub(r"[^\w.\- :/]", "_", name)


def _groups(transform: Transform, column: str, frame: pd.DataFrame) -> np.ndarray:
    """A categorical input's slice labels: its canonical texts, ``<null>`` for nulls."""
    texts = transform.canonical(column, frame[column])
    return np.array([NULL_LEVEL if t is None else str(t) for t in texts], dtype=object)


def register_version(
    registry: Registry,
    name: str,
    outcome: TrainOutcome,
    lineage: Mapping[str, str],
    evaluation: Mapping[str, Any],
) -> ModelVersion:
    """A new version of ``name`` (stage None) tagged with its run, feature version, pipeline run and metrics.

    ``lineage`` is the training data's tags (``TrainingData.tags``).
    """
    overall = evaluation.get("overall", {})
    tags = {
        "driftloop.run_id": outcome.run_id,
        **{k: v for k, v in lineage.items() if k in (TAG_FEATURE_VERSION, TAG_PIPELINE_RUN, TAG_WINDOW)},
        **{f"driftloop.metric.{k}": f"{v:.6g}" for k, v in overall.items() if isinstance(v, float)},
    }
    return registry.register(outcome.model_uri, name, run_id=outcome.run_id, tags=tags)


def _params(cfg: TrainingSettings, data: TrainingData, split: Split) -> dict[str, Any]:
    params: dict[str, Any] = {k: v for k, v in cfg.model_dump(mode="json").items() if k != "params"}
    params |= {f"params.{k}": v for k, v in cfg.params.items()}
    params |= {
        "input_width": len(data.feature_names),
        "inputs": len(data.transform.inputs),
        "rows_train": split.val_start,
        "rows_validation": split.holdout_start - split.val_start,
        "rows_holdout": split.rows - split.holdout_start,
        "target": data.target,
    }
    return params


def window_tag(window: Mapping[str, Any]) -> str:
    return json.dumps({k: window.get(k) for k in ("start", "end", "prefix", "as_of")}, sort_keys=True)
