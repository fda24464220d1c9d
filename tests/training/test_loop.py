"""The training loop: learns, is deterministic, handles imbalance, stops early, fails clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from driftloop.errors import DataError
from driftloop.settings import TrainingSettings
from driftloop.training.loop import EpochRecord, fit, predict
from driftloop.training.metrics import choose_threshold, classification_metrics
from driftloop.training.model import build_model


def _rare_event_data(rows: int, seed: int, rate: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """Failures (≈3 %) happen when a weighted sum of the inputs is high, like the plant's."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6)).astype(np.float32)
    signal = x @ np.array([1.5, -1.0, 0.8, 0.0, 0.0, 0.3]) + rng.normal(scale=0.5, size=rows)
    y = (signal > np.quantile(signal, 1 - rate)).astype(np.float64)
    return x, y


def _train(cfg: TrainingSettings, rows: int = 6000, **kw: object) -> tuple:  # type: ignore[type-arg]
    x, y = _rare_event_data(rows, seed=1)
    cut = int(rows * 0.8)
    model = build_model(cfg, x.shape[1])
    return fit(model, (x[:cut], y[:cut]), (x[cut:], y[cut:]), cfg, **kw), x, y  # type: ignore[arg-type]


def test_learns_a_rare_event_well_above_chance() -> None:
    result, x, y = _train(TrainingSettings(max_epochs=15, hidden=(16,)))
    cut = int(len(x) * 0.8)
    threshold = choose_threshold(y[cut:], predict(result.model, x[cut:]))
    x_test, y_test = _rare_event_data(4000, seed=99)
    metrics = classification_metrics(y_test, predict(result.model, x_test), threshold)
    assert metrics["roc_auc"] > 0.95
    assert metrics["recall"] > 0.5  # it flags failures despite 3 % prevalence
    assert metrics["precision"] > 0.5


def test_weighted_loss_uses_the_class_ratio_and_none_turns_it_off() -> None:
    weighted, _, y = _train(TrainingSettings(max_epochs=1))
    train_y = y[: int(len(y) * 0.8)]
    assert weighted.pos_weight == pytest.approx((train_y == 0).sum() / (train_y == 1).sum())
    plain, _, _ = _train(TrainingSettings(max_epochs=1, imbalance="none"))
    assert plain.pos_weight is None


def test_same_seed_gives_bit_identical_weights_and_another_seed_does_not() -> None:
    cfg = TrainingSettings(max_epochs=3, hidden=(8,), seed=3)
    a, _, _ = _train(cfg)
    b, _, _ = _train(cfg)
    c, _, _ = _train(cfg.model_copy(update={"seed": 4}))
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [r.val_loss for r in a.history] == [r.val_loss for r in b.history]
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_early_stopping_keeps_the_best_epoch_weights() -> None:
    # A learning rate this high makes validation stop improving quickly.
    cfg = TrainingSettings(max_epochs=60, patience=2, learning_rate=0.05, hidden=(32,))
    records: list[EpochRecord] = []
    result, x, y = _train(cfg, on_epoch=records.append)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + cfg.patience
    assert records == result.history
    best = max(result.history, key=lambda r: r.val_score)
    assert best.epoch == result.best_epoch
    cut = int(len(x) * 0.8)
    from driftloop.training.metrics import validation_score

    # The returned weights are the best epoch's, not the last epoch's.
    assert validation_score("classification", y[cut:], predict(result.model, x[cut:])) == pytest.approx(
        best.val_score, abs=1e-9
    )


def test_regression_learns_a_linear_signal() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 3)).astype(np.float32)
    y = x @ np.array([2.0, -1.0, 0.5]) + 3
    cfg = TrainingSettings(task="regression", max_epochs=30, hidden=(16,), learning_rate=0.01)
    result = fit(build_model(cfg, 3), (x[:2400], y[:2400]), (x[2400:], y[2400:]), cfg)
    rmse = float(np.sqrt(np.mean((predict(result.model, x[2400:]) - y[2400:]) ** 2)))
    assert rmse < 0.3 * float(np.std(y))
    # val_score is −RMSE on validation, and the kept weights are the best epoch's.
    assert max(r.val_score for r in result.history) == pytest.approx(-rmse, rel=1e-5)


def test_a_training_part_with_one_class_is_a_data_error() -> None:
    x = np.zeros((100, 2), dtype=np.float32)
    with pytest.raises(DataError, match="only non-failures"):
        fit(build_model(TrainingSettings(), 2), (x, np.zeros(100)), (x, np.zeros(100)), TrainingSettings())


def test_divergence_is_a_data_error_that_says_what_to_do() -> None:
    x = np.full((200, 2), 1e30, dtype=np.float32)
    y = np.tile([0.0, 1.0], 100)
    cfg = TrainingSettings(task="regression", learning_rate=1.0, max_epochs=3)
    with pytest.raises(DataError, match=r"diverged at epoch 1 .*lower training\.learning_rate"):
        fit(build_model(cfg, 2), (x, y * 1e30), (x, y), cfg)


def test_thread_setting_is_restored_after_training() -> None:
    before = torch.get_num_threads()
    _train(TrainingSettings(max_epochs=1, threads=2))
    assert torch.get_num_threads() == before


def test_platt_scaling_calibrates_the_weighted_models_probabilities() -> None:
    from driftloop.training.metrics import calibration

    cfg = TrainingSettings(max_epochs=10, hidden=(16,))
    raw, _, _ = _train(cfg.model_copy(update={"calibration": "none"}))
    cal, _, _ = _train(cfg)
    x_test, y_test = _rare_event_data(6000, seed=42)
    raw_scores, cal_scores = predict(raw.model, x_test), predict(cal.model, x_test)
    # The weighted loss inflates probabilities far above the 3 % base rate; calibration brings them back.
    assert raw_scores.mean() > 3 * y_test.mean()
    assert abs(cal_scores.mean() - y_test.mean()) < 0.01
    assert calibration(y_test, cal_scores)["ece"] < calibration(y_test, raw_scores)["ece"] / 3
    # Ranking is untouched: the same weights, a monotone map on top.
    assert float(cal.model.calibration_slope) > 0
    assert np.array_equal(np.argsort(raw_scores, kind="stable"), np.argsort(cal_scores, kind="stable"))
