"""Evaluation metrics against hand-computed values and scikit-learn; plots are real PNGs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from driftloop.training import metrics as m
from driftloop.training import plots

Y = np.array([0, 0, 0, 0, 1, 1, 0, 1], dtype=np.float64)
S = np.array([0.1, 0.2, 0.3, 0.8, 0.7, 0.9, 0.05, 0.4])


def test_confusion_and_threshold_metrics_by_hand() -> None:
    c = m.confusion(Y, S, 0.5)
    assert (c["tp"], c["fp"], c["fn"], c["tn"]) == (2, 1, 1, 4)
    out = m.classification_metrics(Y, S, 0.5)
    assert out["precision"] == pytest.approx(2 / 3)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 / 3)
    assert out["accuracy"] == pytest.approx(6 / 8)
    assert out["brier"] == pytest.approx(np.mean((S - Y) ** 2))
    assert out["roc_auc"] == pytest.approx(skm.roc_auc_score(Y, S))
    assert out["pr_auc"] == pytest.approx(skm.average_precision_score(Y, S))
    assert (out["n"], out["positives"]) == (8, 3)


def test_threshold_maximises_f1_on_the_given_data() -> None:
    threshold = m.choose_threshold(Y, S)
    best = max(m.classification_metrics(Y, S, t)["f1"] or 0 for t in S)
    assert m.classification_metrics(Y, S, threshold)["f1"] == pytest.approx(best)
    assert threshold == pytest.approx(0.4)  # catches all three positives with one false alarm


def test_undefined_values_are_none_not_invented() -> None:
    zeros = np.zeros(4)
    out = m.classification_metrics(zeros, np.array([0.1, 0.2, 0.3, 0.4]), 0.5)
    assert out["roc_auc"] is None
    assert out["pr_auc"] is None
    assert out["precision"] is None  # nothing predicted positive
    assert out["recall"] is None  # nothing to recall
    assert m.choose_threshold(zeros, np.array([0.1, 0.2, 0.3, 0.4])) == 0.5


def test_calibration_bins_and_ece() -> None:
    y = np.array([0, 1, 1, 1], dtype=np.float64)
    s = np.array([0.05, 0.95, 0.95, 0.55])
    cal = m.calibration(y, s, bins=10)
    filled = {round(b["lower"], 6): b for b in cal["bins"] if b["n"]}
    assert set(filled) == {0.0, 0.5, 0.9}
    assert filled[0.0]["observed_rate"] == 0.0
    # ECE: |0.05−0|·¼ + |0.55−1|·¼ + |0.95−1|·½
    assert cal["ece"] == pytest.approx(0.05 / 4 + 0.45 / 4 + 0.05 / 2)
    assert sum(b["n"] for b in cal["bins"]) == 4
    top = m.calibration(np.array([1.0]), np.array([1.0]))["bins"][-1]
    assert top["n"] == 1  # a score of exactly 1.0 lands in the top bin


def test_regression_metrics() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.5, 2.0, 2.5, 4.0])
    out = m.regression_metrics(y, p)
    assert out["rmse"] == pytest.approx(np.sqrt(0.125))
    assert out["mae"] == pytest.approx(0.25)
    assert out["r2"] == pytest.approx(skm.r2_score(y, p))


def test_slices_compute_each_group_on_its_own_rows() -> None:
    groups = np.array(["L", "L", "M", "M", "L", "M", "H", "H"])
    out = m.slice_metrics(Y, S, 0.5, groups, "classification")
    assert set(out) == {"H", "L", "M"}
    lmask = groups == "L"
    assert out["L"]["n"] == 3
    assert out["L"]["roc_auc"] == pytest.approx(skm.roc_auc_score(Y[lmask], S[lmask]))
    assert out["H"]["roc_auc"] == pytest.approx(skm.roc_auc_score(Y[groups == "H"], S[groups == "H"]))
    reg = m.slice_metrics(Y, S, 0.0, groups, "regression")
    assert reg["M"]["rmse"] == pytest.approx(np.sqrt(np.mean((S[groups == "M"] - Y[groups == "M"]) ** 2)))


def test_primary_metric_and_direction() -> None:
    assert m.primary_metric("classification") == "roc_auc"
    assert m.primary_metric("regression") == "rmse"
    assert m.higher_is_better("roc_auc")
    assert not m.higher_is_better("rmse")


@pytest.mark.parametrize("render", [plots.roc_curve_png, plots.pr_curve_png, plots.calibration_png])
def test_plots_are_png_images(render: object) -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.1).astype(np.float64)
    s = np.clip(y * 0.5 + rng.random(500) * 0.5, 0, 1)
    png = render(y, s)  # type: ignore[operator]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 5000
    assert render(np.zeros(10), np.linspace(0, 1, 10))[:4] == b"\x89PNG"  # type: ignore[operator]  # one class: no crash
