"""The training loop: seeded and deterministic, imbalance-aware, with early stopping on validation.

Determinism: the model is initialised under ``torch.manual_seed(seed)``, batches are shuffled by a
dedicated seeded generator, and torch runs with ``training.threads`` intra-op threads (1 by default:
multi-threaded float reductions can change the last bits between runs). Same data + same configuration
→ the same weights, bit for bit, on the same machine.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from driftloop.errors import DataError
from driftloop.training.metrics import validation_score

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from driftloop.settings import TrainingSettings
    from driftloop.training.model import ScoringModel

__all__ = ["EpochRecord", "FitResult", "Replica", "as_tensor", "fit", "predict"]

_PREDICT_BATCH = 65_536


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_score: float  # higher is better: ROC AUC (classification) or −RMSE (regression)
    seconds: float


@dataclass
class FitResult:
    model: ScoringModel  # the best epoch's weights
    history: list[EpochRecord]
    best_epoch: int
    stopped_early: bool
    seconds: float
    pos_weight: float | None


@dataclass(frozen=True)
class Replica:
    """This process's place in data-parallel training (:mod:`driftloop.training.ray_train`).

    Every replica walks the same seeded order of the training rows and takes every ``world``-th row of
    each batch from position ``rank``; ``wrap`` makes the module whose backward averages gradients over
    the replicas (DistributedDataParallel), ``total`` sums a float over them. With equal shares the
    averaged gradient is the one-process gradient of the whole batch, so the replicas train the model
    one process would, up to float rounding and dropout masks.
    """

    rank: int
    world: int
    wrap: Callable[[nn.Module], nn.Module]
    total: Callable[[float], float]


class _Logits(nn.Module):
    """``model.logits`` as a module's forward, for a wrapper (DistributedDataParallel) that calls forward."""

    def __init__(self, model: ScoringModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.logits(x)


def _optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    params = model.parameters()
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=0.9)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _loss(task: str, y_train: np.ndarray, imbalance: str) -> tuple[nn.Module, float | None]:
    if task == "regression":
        return nn.MSELoss(), None
    positives = float(y_train.sum())
    negatives = float(len(y_train) - positives)
    if positives == 0 or negatives == 0:
        only = "failures" if negatives == 0 else "non-failures"
        raise DataError(
            f"the training part holds only {only} ({len(y_train)} rows): a classifier needs both classes"
        )
    if imbalance == "none":
        return nn.BCEWithLogitsLoss(), None
    # Weighted loss: each positive counts as much as negatives/positives negatives (≈ 30 at 3 % failures).
    weight = negatives / positives
    return nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weight, dtype=torch.float32)), weight


def fit(
    model: ScoringModel,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    cfg: TrainingSettings,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    replica: Replica | None = None,
) -> FitResult:
    """Train ``model`` in place on ``train = (x, y)``; keep the weights of the epoch with the best score
    on ``validation = (x, y)``.

    Stops after ``cfg.patience`` epochs without improvement or at ``cfg.max_epochs``. A loss that
    becomes NaN/inf is a :class:`DataError` (diverged: lower the learning rate or check the data).
    With ``replica`` this process trains its share of each batch, data-parallel with the others.
    """
    with _threads(cfg.threads):
        return _fit(model, train, validation, cfg, on_epoch, replica=replica)


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _fit(
    model: ScoringModel,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    cfg: TrainingSettings,
    on_epoch: Callable[[EpochRecord], None] | None,
    *,
    replica: Replica | None = None,
) -> FitResult:
    started = time.perf_counter()
    (x_train, y_train), (x_val, y_val) = train, validation
    if len(x_train) == 0 or len(x_val) == 0:
        raise DataError("training needs rows in both the training and the validation part")
    loss_fn, pos_weight = _loss(cfg.task, y_train, cfg.imbalance)
    xt, yt, xv, yv = (as_tensor(a) for a in (x_train, y_train, x_val, y_val))
    optimizer = _optimizer(model, cfg.optimizer, cfg.learning_rate, cfg.weight_decay)
    forward: Callable[[torch.Tensor], torch.Tensor] = (
        replica.wrap(_Logits(model)) if replica is not None else model.logits
    )
    rank, world = (replica.rank, replica.world) if replica is not None else (0, 1)
    generator = torch.Generator().manual_seed(cfg.seed)
    history: list[EpochRecord] = []
    best_score, best_epoch, best_state = -math.inf, 0, None
    stale = 0
    for epoch in range(1, cfg.max_epochs + 1):
        tick = time.perf_counter()
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            index = order[start : start + cfg.batch_size][rank::world]
            optimizer.zero_grad(set_to_none=True)
            logits = forward(xt[index])
            # A replica whose share of a short last batch is empty still joins the gradient averaging.
            loss = loss_fn(logits, yt[index]) if len(index) else logits.sum() * 0.0
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        train_loss = (replica.total(total) if replica is not None else total) / len(xt)
        model.eval()
        with torch.no_grad():
            logits = model.logits(xv)
            val_loss = float(loss_fn(logits, yv))
            scores = model(xv).numpy().astype(np.float64)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise DataError(
                f"training diverged at epoch {epoch} (loss is {train_loss}): lower training.learning_rate"
                " or check the data for extreme values"
            )
        score = validation_score(cfg.task, y_val, scores)
        record = EpochRecord(epoch, train_loss, val_loss, score, time.perf_counter() - tick)
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if cfg.task == "classification" and cfg.calibration == "platt":
        _platt(model, xv, y_val)
    return FitResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        stopped_early=len(history) < cfg.max_epochs,
        seconds=time.perf_counter() - started,
        pos_weight=pos_weight,
    )


def _platt(model: ScoringModel, x_val: torch.Tensor, y_val: np.ndarray) -> None:
    """Fit ``sigmoid(a · logit + b)`` to the validation labels (Platt scaling); ranking is unchanged."""
    if not 0 < float(y_val.sum()) < len(y_val):
        return  # one class: nothing to calibrate against
    from sklearn.linear_model import LogisticRegression

    with torch.no_grad():
        logits = model.logits(x_val).numpy().astype(np.float64).reshape(-1, 1)
    fitted = LogisticRegression(C=1e6, max_iter=1000).fit(logits, y_val)
    slope = float(fitted.coef_[0, 0])
    if slope <= 0:
        return  # a model that ranks backwards on validation is not "fixed" by flipping it here
    model.calibration_slope.fill_(slope)
    model.calibration_intercept.fill_(float(fitted.intercept_[0]))


def as_tensor(values: np.ndarray) -> torch.Tensor:
    """A float32 tensor over ``values`` (shared memory when possible; copied when read-only, as pandas'
    copy-on-write arrays are, because torch may not wrap read-only memory)."""
    array = np.ascontiguousarray(values, dtype=np.float32)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Scores (probabilities or values) for ``x`` as a 1-D float64 array, in batches, without gradients."""
    model.eval()
    data = as_tensor(x)
    parts = []
    with torch.no_grad():
        for start in range(0, len(data), _PREDICT_BATCH):
            out = model(data[start : start + _PREDICT_BATCH])
            parts.append(out.reshape(-1).numpy().astype(np.float64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)
