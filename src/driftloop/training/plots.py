"""Evaluation plots as PNG bytes: ROC, precision–recall and calibration (reliability) curves.

Rendered with matplotlib's object API on an Agg canvas: no global pyplot state, no display needed.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Literal

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn import metrics as skm

from driftloop.training.metrics import calibration

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["calibration_png", "pr_curve_png", "roc_curve_png"]


def _render(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(5, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    return figure, axes


def _png(figure: Figure, axes: Axes, loc: Literal["lower right", "upper right", "upper left"]) -> bytes:
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc=loc)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _has_both(y: np.ndarray) -> bool:
    return bool(y.size) and 0 < float(np.sum(y >= 0.5)) < y.size


def roc_curve_png(y: np.ndarray, scores: np.ndarray) -> bytes:
    figure, axes = _render("ROC curve (hold-out)", "false positive rate", "true positive rate")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    if _has_both(y):
        fpr, tpr, _ = skm.roc_curve(y, scores)
        axes.plot(fpr, tpr, linewidth=2, label=f"model (AUC {skm.roc_auc_score(y, scores):.3f})")
    else:
        _undefined(axes)
    return _png(figure, axes, "lower right")


def pr_curve_png(y: np.ndarray, scores: np.ndarray) -> bytes:
    figure, axes = _render("Precision–recall curve (hold-out)", "recall", "precision")
    if _has_both(y):
        precision, recall, _ = skm.precision_recall_curve(y, scores)
        ap = skm.average_precision_score(y, scores)
        axes.plot(recall, precision, linewidth=2, label=f"model (AP {ap:.3f})")
        base = float(np.mean(y >= 0.5))
        axes.axhline(base, linestyle="--", color="grey", linewidth=1, label=f"base rate {base:.3f}")
    else:
        _undefined(axes)
    return _png(figure, axes, "upper right")


def calibration_png(y: np.ndarray, scores: np.ndarray) -> bytes:
    curve = calibration(y, scores)
    figure, axes = _render(
        f"Calibration (ECE {curve['ece']:.3f})", "mean predicted probability", "observed rate"
    )
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    points = [(b["mean_score"], b["observed_rate"]) for b in curve["bins"] if b["n"]]
    if points:
        xs, ys = zip(*points, strict=True)
        axes.plot(xs, ys, marker="o", linewidth=2, label="model")
    return _png(figure, axes, "upper left")


def _undefined(axes: Axes) -> None:
    axes.text(0.5, 0.5, "undefined: the hold-out has one class", ha="center", va="center")
