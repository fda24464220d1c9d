"""Evaluation metrics (seed 18): threshold choice, classification and regression metrics, slices,
confusion matrix and calibration. Plain numpy in, plain Python numbers out (JSON- and MLflow-ready).

Undefined values (ROC AUC on a slice with one class, precision with no positive predictions) are
``None``, never a made-up 0 or 0.5.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics as skm

__all__ = [
    "calibration",
    "choose_threshold",
    "classification_metrics",
    "confusion",
    "higher_is_better",
    "primary_metric",
    "regression_metrics",
    "slice_metrics",
    "validation_score",
]

_HIGHER_IS_BETTER = {"roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy", "r2"}


def primary_metric(task: str) -> str:
    """The metric versions are compared on: ROC AUC for classification, RMSE for regression."""
    return "roc_auc" if task == "classification" else "rmse"


def higher_is_better(metric: str) -> bool:
    return metric in _HIGHER_IS_BETTER


def _two_classes(y: np.ndarray) -> bool:
    return bool(y.size) and 0 < float(y.sum()) < y.size


def validation_score(task: str, y: np.ndarray, scores: np.ndarray) -> float:
    """Early-stopping score, higher is better: ROC AUC, or −RMSE for regression."""
    if task == "regression":
        return -float(np.sqrt(np.mean((scores - y) ** 2)))
    return float(skm.roc_auc_score(y, scores)) if _two_classes(y) else -float(np.mean((scores - y) ** 2))


def choose_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The decision threshold with the best F1 on ``(y, scores)`` (the validation part, never the hold-out).

    Falls back to 0.5 when ``y`` has no positives.
    """
    if not _two_classes(y):
        return 0.5
    precision, recall, thresholds = skm.precision_recall_curve(y, scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.argmax(f1[:-1]))  # the last point (recall 0) has no threshold
    return float(thresholds[best])


def confusion(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    predicted = scores >= threshold
    actual = y >= 0.5
    return {
        "threshold": float(threshold),
        "tp": int(np.sum(predicted & actual)),
        "fp": int(np.sum(predicted & ~actual)),
        "fn": int(np.sum(~predicted & actual)),
        "tn": int(np.sum(~predicted & ~actual)),
    }


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def classification_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """ROC AUC, PR AUC (average precision), precision/recall/F1/accuracy at ``threshold``, Brier, ECE."""
    c = confusion(y, scores, threshold)
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    both = _two_classes(y)
    return {
        "n": int(y.size),
        "positives": int(np.sum(y >= 0.5)),
        "threshold": float(threshold),
        "roc_auc": float(skm.roc_auc_score(y, scores)) if both else None,
        "pr_auc": float(skm.average_precision_score(y, scores)) if both else None,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": _ratio(tp + tn, y.size),
        "brier": float(np.mean((scores - y) ** 2)) if y.size else None,
        "ece": calibration(y, scores)["ece"] if y.size else None,
    }


def calibration(y: np.ndarray, scores: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Reliability curve on ``bins`` equal-width score bins and the expected calibration error."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    score_sums = np.bincount(index, weights=scores, minlength=bins)
    label_sums = np.bincount(index, weights=y, minlength=bins)
    rows = []
    ece = 0.0
    for b in range(bins):
        n = int(counts[b])
        mean_score = float(score_sums[b] / n) if n else None
        observed = float(label_sums[b] / n) if n else None
        if n and mean_score is not None and observed is not None:
            ece += n / max(1, y.size) * abs(mean_score - observed)
        rows.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "n": n,
                "mean_score": mean_score,
                "observed_rate": observed,
            }
        )
    return {"bins": rows, "ece": float(ece)}


def regression_metrics(y: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
    if y.size == 0:
        return {"n": 0, "rmse": None, "mae": None, "r2": None}
    residual = predictions - y
    variance = float(np.var(y))
    return {
        "n": int(y.size),
        "rmse": float(np.sqrt(np.mean(residual**2))),
        "mae": float(np.mean(np.abs(residual))),
        "r2": 1 - float(np.mean(residual**2)) / variance if variance > 0 else None,
    }


def slice_metrics(
    y: np.ndarray, scores: np.ndarray, threshold: float, groups: np.ndarray, task: str
) -> dict[str, dict[str, Any]]:
    """The task's metrics per distinct value of ``groups`` (e.g. per product variant)."""
    result: dict[str, dict[str, Any]] = {}
    for group in sorted({str(g) for g in groups}):
        mask = groups.astype(str) == group
        if task == "classification":
            result[group] = classification_metrics(y[mask], scores[mask], threshold)
        else:
            result[group] = regression_metrics(y[mask], scores[mask])
    return result


def finite(value: Any) -> bool:
    """True for a real, finite number (what MLflow metrics and tags can hold)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
