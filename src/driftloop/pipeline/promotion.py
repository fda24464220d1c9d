"""Promotion with evidence (seed 6): the offline comparison of a challenger with the champion.

Both versions are scored on the same rows: the freshest labelled window in the data store (the last
``policy.comparison_days`` days that have labels), validated with the configured schema and scored
through *each version's own* MLflow model (raw rows → its fitted transform → its network), as a client
of ``mlflow models serve`` would. The result is a
:class:`CheckResult` named ``offline_comparison`` that the registry's policy weighs with any other
evidence (the service's shadow comparison joins the same way).
"""

from __future__ import annotations

import math
import tempfile
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.compute as pc

from driftloop.core.models import Stage
from driftloop.core.promotion import CheckResult
from driftloop.core.transform import Transform
from driftloop.data import ingest as ingest_mod
from driftloop.data import validate as validate_mod
from driftloop.errors import DataError
from driftloop.pipeline.modeling import TAG_FEATURE_VERSION, TAG_PIPELINE_RUN
from driftloop.registry.promotion import ALIASES
from driftloop.storage import join_key, store_for
from driftloop.training import metrics as m

if TYPE_CHECKING:
    import pandas as pd

    from driftloop.core.models import ModelVersion, TrackedRun
    from driftloop.registry import Registry
    from driftloop.registry.promotion import Promoter, PromotionResult
    from driftloop.settings import Settings
    from driftloop.tracking import Tracker

__all__ = ["EVIDENCE_NAME", "freshest_labelled_window", "offline_comparison", "promote"]

EVIDENCE_NAME = "offline_comparison"


def freshest_labelled_window(settings: Settings) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Valid, labelled raw rows of the last ``policy.comparison_days`` days that have labels.

    The window ends on the day of the newest label partition; labels are those known by the end of it.
    """
    data, policy = settings.data, settings.policy
    store = store_for(settings)
    label_parts = ingest_mod.list_partitions(store, join_key("labels", data.dataset), None, None)
    if not label_parts:
        raise DataError(
            f"no labels under {store.uri(join_key('labels', data.dataset))}: nothing to compare on"
        )
    end = max(p.day for p in label_parts)
    start = end - timedelta(days=policy.comparison_days - 1)
    as_of = datetime.combine(end + timedelta(days=1), time(), tzinfo=UTC)
    raw_parts = ingest_mod.list_partitions(store, join_key("raw", data.dataset), start, end)
    if not raw_parts:
        raise DataError(f"no raw data between {start} and {end} to compare on")
    id_col = next(c.name for c in data.columns if c.role == "id")
    batch = ingest_mod.read_raw(store, raw_parts, [c.name for c in data.columns])
    labels, _ = ingest_mod.read_labels(store, label_parts, id_col, data.target, as_of)
    aligned = pc.take(
        labels.column(data.target), pc.index_in(batch.table.column(id_col), value_set=labels.column(id_col))
    )
    result = validate_mod.validate(batch.table, data.columns, label=(data.target, aligned))
    frame = result.valid[result.valid[data.target].notna()].reset_index(drop=True)
    window = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "labels_as_of": as_of.isoformat(),
        "rows": len(frame),
        "rejected": len(result.rejected),
    }
    return frame, window


def _score(tracker: Tracker, version: ModelVersion, frame: pd.DataFrame) -> np.ndarray:
    if not version.run_id:
        raise DataError(f"{version.name}/{version.version} records no run: its transform is unknown")
    # Raw rows through the version's MLflow model, which applies its own fitted transform.
    transform = Transform.from_json(tracker.read_bytes(version.run_id, "transform.json"))
    return tracker.load_scorer(version.source).predict(transform.typed_frame(frame))


def _comparison_rows(
    settings: Settings, tracker: Tracker, run: TrackedRun | None
) -> tuple[pd.DataFrame, dict[str, Any], str]:
    """The labelled rows both versions are scored on, what they are, and their target column.

    A pipeline model: the freshest labelled window of the configured dataset. A model trained from a
    file (``train --data``, no pipeline run): the hold-out of the challenger's own feature version, the
    latest rows of the data it was given — a dataset the configured one may know nothing about.
    """
    tags = run.tags if run is not None else {}
    feature_version = tags.get(TAG_FEATURE_VERSION)
    if run is None or tags.get(TAG_PIPELINE_RUN) or not feature_version:
        frame, window = freshest_labelled_window(settings)
        return frame, window, settings.data.target
    from driftloop.pipeline.datasets import from_feature_version

    with tempfile.TemporaryDirectory() as tmp:
        data = from_feature_version(settings, feature_version, Path(tmp))
    holdout = int(run.params.get("rows_holdout", 0)) or len(data.table)
    frame = data.table.iloc[-holdout:].reset_index(drop=True)
    window = {"feature_version": feature_version, "rows": len(frame), "part": "hold-out"}
    return frame, window, data.target


def _metrics(task: str, y: np.ndarray, scores: np.ndarray, threshold: float | None) -> dict[str, Any]:
    if task == "classification":
        return m.classification_metrics(y, scores, 0.5 if threshold is None else threshold)
    return m.regression_metrics(y, scores)


def offline_comparison(
    settings: Settings, tracker: Tracker, registry: Registry, challenger: ModelVersion
) -> CheckResult:
    """Challenger vs the current production version on the freshest labelled window.

    Passes when the challenger's primary metric is at least the champion's minus
    ``policy.comparison_margin`` (plus the margin for lower-is-better metrics), and trivially when there
    is no production version yet.
    """
    policy = settings.policy
    champion = registry.by_alias(challenger.name, ALIASES[Stage.PRODUCTION])
    if champion is None:
        return CheckResult(
            EVIDENCE_NAME,
            True,
            "no production version yet: nothing to compare with",
            {"champion_version": None, "challenger_version": challenger.version},
        )
    run = tracker.get_run(challenger.run_id) if challenger.run_id else None
    task = run.tags.get("driftloop.task", "classification") if run else "classification"
    metric = m.primary_metric(task)
    frame, window, target = _comparison_rows(settings, tracker, run)
    base = {
        "champion_version": champion.version,
        "challenger_version": challenger.version,
        "metric": metric,
        "margin": policy.comparison_margin,
        "window": window,
    }
    if len(frame) < policy.comparison_min_rows:
        detail = f"only {len(frame)} labelled rows in {_span(window)} (need {policy.comparison_min_rows})"
        return CheckResult(EVIDENCE_NAME, False, detail, base)
    y = frame[target].to_numpy(dtype=np.float64)
    results = {}
    for role, version in (("challenger", challenger), ("champion", champion)):
        threshold = tracker.get_run(version.run_id).metrics.get("threshold") if version.run_id else None
        results[role] = _metrics(task, y, _score(tracker, version, frame), threshold)
    new, old = results["challenger"].get(metric), results["champion"].get(metric)
    evidence = {
        **base,
        "challenger": _numbers(results["challenger"]),
        "champion": _numbers(results["champion"]),
    }
    if new is None or old is None or not (math.isfinite(new) and math.isfinite(old)):
        return CheckResult(EVIDENCE_NAME, False, f"{metric} is undefined on the comparison window", evidence)
    if m.higher_is_better(metric):
        passed = new >= old - policy.comparison_margin
    else:
        passed = new <= old + policy.comparison_margin
    verdict = "matches or beats" if passed else "is worse than"
    span = f"{len(frame):,} rows {_span(window)}"
    detail = (
        f"v{challenger.version} {metric} {new:.4f} {verdict} v{champion.version} {old:.4f} "
        f"(margin {policy.comparison_margin}) on {span}"
    )
    return CheckResult(EVIDENCE_NAME, passed, detail, evidence)


def _span(window: dict[str, Any]) -> str:
    if "feature_version" in window:
        return f"(the hold-out of feature version {str(window['feature_version'])[:12]})"
    return f"{window['start']} → {window['end']}"


def _numbers(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()}


def promote(
    promoter: Promoter,
    settings: Settings,
    tracker: Tracker,
    registry: Registry,
    *,
    name: str,
    version: int,
    to: Stage,
    actor: str,
    comment: str = "",
) -> PromotionResult:
    """Promote with the evidence the target stage needs (the offline comparison for Production)."""
    evidence: list[CheckResult] = []
    if to == Stage.PRODUCTION and EVIDENCE_NAME in settings.policy.production_evidence:
        challenger = registry.get(name, version)
        if challenger.stage == Stage.STAGING:  # otherwise the policy refuses it without comparing
            evidence.append(offline_comparison(settings, tracker, registry, challenger))
    return promoter.promote(name, version, to, actor=actor, comment=comment, evidence=evidence)
