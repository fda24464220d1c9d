"""Reproducing a registered version (seed 3) and orchestrated experiment grids (002)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from driftloop.errors import DataError, UsageError
from driftloop.pipeline import modeling
from driftloop.settings import TrainingSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from driftloop.core.models import ModelRef
    from driftloop.registry import Registry
    from driftloop.settings import Settings
    from driftloop.tracking import Tracker

__all__ = ["GridResult", "Reproduction", "parse_grid", "reproduce", "run_grid"]


@dataclass(frozen=True)
class Reproduction:
    """The original version's hold-out metrics, the retrained ones, and the new run."""

    ref: str
    run_id: str
    original: dict[str, float]
    reproduced: dict[str, float]

    @property
    def deltas(self) -> dict[str, float]:
        return {k: self.reproduced[k] - v for k, v in self.original.items() if k in self.reproduced}


def reproduce(
    settings: Settings, tracker: Tracker, registry: Registry, ref: ModelRef, workdir: Path
) -> Reproduction:
    """Retrain ``ref`` from its recorded feature version, training configuration and seed."""
    from driftloop.pipeline.datasets import from_feature_version

    version = registry.resolve(ref)
    if not version.run_id:
        raise DataError(f"{version.name}/{version.version} records no training run; it cannot be reproduced")
    run = tracker.get_run(version.run_id)
    feature_version = run.tags.get(modeling.TAG_FEATURE_VERSION)
    if not feature_version:
        raise DataError(
            f"{version.name}/{version.version} was trained from a local file, not a feature version: "
            "only pipeline and --features models are reproducible"
        )
    cfg = TrainingSettings.model_validate(
        json.loads(tracker.read_bytes(version.run_id, "training_config.json"))
    )
    data = from_feature_version(settings, feature_version, workdir)
    label = f"{version.name}/{version.version}"
    outcome = modeling.train_and_log(
        settings,
        tracker,
        data,
        cfg=cfg,
        run_name=f"reproduce {label}",
        extra_tags={"driftloop.reproduces": label},
    )
    evaluation = modeling.evaluate_and_log(settings, tracker, data, outcome, cfg=cfg)
    original = {k.removeprefix("holdout_"): v for k, v in run.metrics.items() if k.startswith("holdout_")}
    reproduced = {k: float(v) for k, v in evaluation["overall"].items() if isinstance(v, int | float)}
    return Reproduction(ref=label, run_id=outcome.run_id, original=original, reproduced=reproduced)


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``["learning_rate=1e-3,3e-3", "hidden=64x32,128"]`` → ``{"learning_rate": [...], ...}``."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not choices:
            raise UsageError(f"invalid --grid {item!r}: use KEY=V1,V2 (e.g. learning_rate=0.001,0.003)")
        if key.strip() in grid:
            raise UsageError(f"--grid {key.strip()} given twice")
        grid[key.strip()] = choices
    return grid


def configurations(
    base: TrainingSettings, grid: Mapping[str, Sequence[str]]
) -> list[tuple[dict[str, str], TrainingSettings]]:
    """Every combination of ``grid`` applied to ``base``; bad keys or values are one-line usage errors.

    Tuple values use ``x`` (``hidden=64x32``); ``params.NAME`` sets a custom factory hyperparameter.
    """
    fields = TrainingSettings.model_fields
    keys = list(grid)
    for key in keys:
        if key not in fields and not key.startswith("params."):
            known = ", ".join(sorted(fields))
            raise UsageError(f"unknown --grid key {key!r}: use a training setting ({known}) or params.NAME")
    combos = []
    for values in itertools.product(*(grid[k] for k in keys)):
        chosen = dict(zip(keys, values, strict=True))
        update: dict[str, Any] = base.model_dump()
        for key, value in chosen.items():
            if key.startswith("params."):
                update["params"] = {**update["params"], key.removeprefix("params."): _scalar(value)}
            elif key == "hidden":
                update[key] = [int(v) for v in value.split("x")] if value else []
            else:
                update[key] = value
        try:
            combos.append((chosen, TrainingSettings.model_validate(update)))
        except (ValidationError, ValueError) as exc:
            raise UsageError(f"invalid --grid value in {chosen}: {str(exc).splitlines()[0]}") from None
    return combos


@dataclass(frozen=True)
class GridResult:
    parent_run_id: str
    rows: list[dict[str, Any]]  # one per child: values, run_id, val_score, holdout metrics
    best: dict[str, Any]


def run_grid(
    settings: Settings,
    tracker: Tracker,
    data: modeling.TrainingData,
    grid: Mapping[str, Sequence[str]],
    *,
    on_child: Callable[[dict[str, Any]], None] | None = None,
) -> GridResult:
    """Train one child run per combination under one parent run; the best is chosen on *validation*
    (choosing on the hold-out would tune to the test set); its hold-out metrics are reported."""
    combos = configurations(settings.training, grid)
    parent = tracker.start_run(
        f"experiment {' × '.join(grid)}", kind="grid", tags={**data.tags, "driftloop.experiment": "grid"}
    )
    rows = []
    try:
        tracker.log_params(parent, {"grid": json.dumps(grid, sort_keys=True), "combinations": len(combos)})
        for chosen, cfg in combos:
            name = ", ".join(f"{k}={v}" for k, v in chosen.items())
            outcome = modeling.train_and_log(
                settings, tracker, data, cfg=cfg, run_name=name, parent_run_id=parent
            )
            evaluation = modeling.evaluate_and_log(settings, tracker, data, outcome, cfg=cfg)
            row = {
                "values": chosen,
                "run_id": outcome.run_id,
                "val_score": outcome.val_score,
                **evaluation["overall"],
            }
            rows.append(row)
            if on_child is not None:
                on_child(row)
        best = max(rows, key=lambda r: r["val_score"] if r["val_score"] == r["val_score"] else float("-inf"))
        tracker.set_tags(parent, {"driftloop.best_run": best["run_id"]})
        tracker.log_metrics(parent, {"best_val_score": best["val_score"]})
    except BaseException:
        tracker.end_run(parent, failed=True)
        raise
    tracker.end_run(parent)
    return GridResult(parent_run_id=parent, rows=rows, best=best)


def _scalar(text: str) -> int | float | str | bool:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text
