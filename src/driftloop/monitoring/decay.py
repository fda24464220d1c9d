"""Decay from labelled predictions: which label sources to believe, then the decay metric.

Every label has a source (:mod:`driftloop.monitoring.labels`). For each source with at least
``monitoring.min_labels`` labelled predictions, the agreement of its labels with the model's scores is
measured against chance: ROC AUC for classification (chance 0.5; under chance its standard error is
``sqrt((n + 1) / (12·p·q))``, the Mann–Whitney null, and otherwise Hanley & McNeil's), Pearson's r for
regression (chance 0; Fisher's z, standard error ``1/sqrt(n − 3)``). A source is **suspicious** when

1. *inverted*: its agreement is below chance by more than ``monitoring.suspicious_z`` standard errors
   while the model ranked better than chance on its hold-out (or the hold-out is unknown). A real
   change of the world degrades a model towards chance; it does not make a model that scored 0.93
   on its hold-out rank outcomes systematically backwards. Flipped labels do;
2. *disagreeing*: it is not better than chance by ``suspicious_z`` standard errors, while the labels of
   the other sources (less the inverted ones) agree with the model — decay judged and not found, or,
   when the evaluation lacks the decay metric, better than chance by ``suspicious_z`` — and the gap
   between the two is more than ``suspicious_z`` standard errors.

A suspicious source's labels are left out of the decay judgement: a prediction labelled only by it
counts as unlabelled, one also labelled by another source takes that source's label. Both rules need
the source to contradict the model wholesale with statistical support; a source whose labels are
merely worse than the others' (a harder slice of the traffic, real decay where it labels) is kept.
Why: ``docs/decisions/0042-suspicious-label-sources.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import roc_auc_score

from driftloop.training.metrics import (
    calibration,
    classification_metrics,
    higher_is_better,
    primary_metric,
    regression_metrics,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    import numpy.typing as npt

    from driftloop.monitoring.labels import LabelBook
    from driftloop.settings import MonitoringSettings

__all__ = ["Agreement", "LabelledRows", "agreement", "judge_sources", "performance"]

_REGRESSION_METRICS = frozenset({"rmse", "mae", "r2"})
_NO_RANK = math.inf  # a source's rank where it has no label for the row


@dataclass(frozen=True)
class Agreement:
    """How a set of labels agrees with the model's scores, against chance.

    ``statistic`` is ``roc_auc`` or ``pearson_r`` with its ``value``; ``z`` is how many standard errors
    the value lies above chance (negative: below); ``scale`` and ``se`` are the value and its standard
    error on the scale two agreements are compared on (the AUC itself; Fisher's z of r).
    """

    statistic: str
    value: float
    z: float
    scale: float
    se: float
    n: int

    def gap(self, other: Agreement) -> float:
        """How many standard errors ``other`` lies above this one."""
        return (other.scale - self.scale) / max(math.hypot(self.se, other.se), 1e-12)


def agreement(y: npt.NDArray[np.float64], s: npt.NDArray[np.float64], task: str) -> Agreement | None:
    """The agreement of labels ``y`` with scores ``s``; None when undefined (one class, constant values)."""
    n = int(y.size)
    if task != "regression":
        p = int(np.count_nonzero(y == 1))
        q = n - p
        if p == 0 or q == 0:
            return None
        auc = float(roc_auc_score(y, s))
        null_se = math.sqrt((n + 1) / (12 * p * q))
        q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
        variance = (auc * (1 - auc) + (p - 1) * (q1 - auc * auc) + (q - 1) * (q2 - auc * auc)) / (p * q)
        return Agreement("roc_auc", auc, (auc - 0.5) / null_se, auc, math.sqrt(max(variance, 0.0)), n)
    if n < 4 or float(np.std(y)) == 0 or float(np.std(s)) == 0:
        return None
    r = float(np.corrcoef(y, s)[0, 1])
    fisher = math.atanh(min(max(r, -0.999_999), 0.999_999))
    se = 1 / math.sqrt(n - 3)
    return Agreement("pearson_r", r, fisher / se, fisher, se, n)


class LabelledRows:
    """The window's scored predictions that some source labelled: their scores and, per source, the
    label it gave each row with its rank (the lowest rank wins; NaN and infinity where it gave none).

    Built chunk by chunk as the window streams; memory grows with the labelled rows only.
    """

    def __init__(self, book: LabelBook) -> None:
        self.names: list[str] = sorted(book.sources)
        self._book = book
        self._scores: list[npt.NDArray[np.float64]] = []
        self._labels: list[npt.NDArray[np.float64]] = []  # per chunk: sources × rows
        self._ranks: list[npt.NDArray[np.float64]] = []

    def add(
        self,
        prediction_ids: Sequence[Any] | npt.NDArray[Any],
        record_ids: Sequence[Any] | npt.NDArray[Any] | None,
        scores: npt.NDArray[Any],
    ) -> None:
        """Rows of a chunk (already restricted to scored rows): labels by prediction id, else record id."""
        n = len(prediction_ids)
        labels = np.full((len(self.names), n), np.nan)
        ranks = np.full((len(self.names), n), _NO_RANK)
        rids = record_ids if record_ids is not None else [None] * n
        for k, name in enumerate(self.names):
            get = self._book.sources[name].get
            for i, (pid, rid) in enumerate(zip(prediction_ids, rids, strict=True)):
                found = get(pid)
                if found is None and isinstance(rid, str):
                    found = get(rid)
                if found is not None:
                    ranks[k, i], labels[k, i] = found
        keep = np.isfinite(ranks).any(axis=0)
        self._scores.append(np.asarray(scores, dtype=np.float64)[keep])
        self._labels.append(labels[:, keep])
        self._ranks.append(ranks[:, keep])

    def merge(self, other: LabelledRows) -> None:
        """Add ``other``'s rows (another part of the window, labelled from the same book)."""
        if other.names != self.names:
            raise ValueError("cannot merge labelled rows from different label books")
        self._scores += other._scores
        self._labels += other._labels
        self._ranks += other._ranks

    @property
    def scores(self) -> npt.NDArray[np.float64]:
        return np.concatenate(self._scores) if self._scores else np.zeros(0)

    def _stacked(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        width = len(self.names)
        if not self._labels:
            return np.zeros((width, 0)), np.zeros((width, 0))
        return np.concatenate(self._labels, axis=1), np.concatenate(self._ranks, axis=1)

    def of(self, name: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The labels source ``name`` gave and the scores of those rows."""
        labels, _ = self._stacked()
        y = labels[self.names.index(name)]
        kept = np.isfinite(y)
        return y[kept], self.scores[kept]

    def winners(self, exclude: Collection[str] = ()) -> npt.NDArray[np.float64]:
        """Each row's label from the sources not in ``exclude``: the lowest-ranked; NaN when none gave one."""
        labels, ranks = self._stacked()
        if not self.names or labels.shape[1] == 0:
            return np.full(labels.shape[1], np.nan)
        ranks = ranks.copy()
        for name in exclude:
            if name in self.names:
                ranks[self.names.index(name)] = _NO_RANK
        best = np.argmin(ranks, axis=0)
        y = labels[best, np.arange(labels.shape[1])]
        return np.where(np.isfinite(ranks.min(axis=0)), y, np.nan)


def judge_sources(
    rows: LabelledRows, evaluation: Mapping[str, Any], cfg: MonitoringSettings, task: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every source's agreement with the model and verdict, and the suspicious ones (rules in the module
    docstring). An entry: ``source``, ``labelled``, ``statistic``, ``value``, ``z`` (against chance),
    ``judged``, ``suspicious`` and ``why``."""
    z = cfg.suspicious_z
    measured: dict[str, Agreement | None] = {}
    entries: dict[str, dict[str, Any]] = {}
    for name in rows.names:
        y, s = rows.of(name)
        found = agreement(y, s, task)
        measured[name] = found if y.size >= cfg.min_labels else None
        entries[name] = {
            "source": name,
            "labelled": int(y.size),
            "statistic": found.statistic if found else None,
            "value": found.value if found else None,
            "z": found.z if found else None,
            "judged": measured[name] is not None,
            "suspicious": False,
            "why": None,
        }
        if task != "regression":
            entries[name]["positives"] = int(np.count_nonzero(y == 1))
    hold_out = evaluation.get("roc_auc" if task != "regression" else "r2")
    ranks_on_hold_out = not isinstance(hold_out, int | float) or hold_out > (
        0.5 if task != "regression" else 0.0
    )
    inverted = [n for n, a in measured.items() if a is not None and a.z <= -z and ranks_on_hold_out]
    for name in inverted:
        entries[name] |= {"suspicious": True, "why": _inverted(measured[name], hold_out)}
    for name, a in measured.items():
        if a is None or name in inverted or a.z >= z:
            continue
        why = _disagrees(name, a, rows=rows, inverted=inverted, evaluation=evaluation, cfg=cfg, task=task)
        if why is not None:
            entries[name] |= {"suspicious": True, "why": why}
    suspicious = [name for name in rows.names if entries[name]["suspicious"]]
    return [entries[name] for name in rows.names], suspicious


def _inverted(own: Agreement | None, hold_out: Any) -> str:
    """Why a source whose labels rank the outcomes backwards is suspicious (rule 1)."""
    assert own is not None
    model = (
        f"; the model's hold-out {own.statistic} is {hold_out:.3f}"
        if isinstance(hold_out, int | float)
        else ""
    )
    return (
        f"inverted: {own.statistic} {own.value:.3f} on {own.n:,} labels is {-own.z:.1f} standard errors "
        f"below chance{model}; labels that contradict the model wholesale are far likelier wrong (flipped) "
        "than a real change, which would degrade the model towards chance"
    )


def _disagrees(
    name: str,
    own: Agreement,
    *,
    rows: LabelledRows,
    inverted: Sequence[str],
    evaluation: Mapping[str, Any],
    cfg: MonitoringSettings,
    task: str,
) -> str | None:
    """Why source ``name`` disagrees with the other sources that agree with the model (rule 2), or None."""
    y = rows.winners(exclude=[*inverted, name])
    kept = np.isfinite(y)
    if int(kept.sum()) < cfg.min_labels:
        return None
    y, s = y[kept], rows.scores[kept]
    rest = agreement(y, s, task)
    if rest is None:
        return None
    judged = performance(y, s, evaluation, cfg, task)
    agrees = not judged["decayed"] if judged["judged"] else rest.z >= cfg.suspicious_z
    gap = own.gap(rest)
    if not agrees or gap < cfg.suspicious_z:
        return None
    return (
        f"disagrees with the other sources: {own.statistic} {own.value:.3f} on {own.n:,} labels (no better "
        f"than chance) while the other sources' {rest.n:,} labels give {rest.value:.3f}, in line with the "
        f"model; the gap is {gap:.1f} standard errors"
    )


def performance(
    y: npt.NDArray[np.float64],
    s: npt.NDArray[np.float64],
    evaluation: Mapping[str, Any],
    cfg: MonitoringSettings,
    task: str = "classification",
) -> dict[str, Any]:
    """Metrics on the labelled predictions; decay judged against the evaluation when there are enough.

    For a regression model a classification ``decay_metric`` (the default ``roc_auc``) is replaced by
    its primary metric, RMSE.
    """
    metric = cfg.decay_metric
    if task == "regression" and metric not in _REGRESSION_METRICS:
        metric = primary_metric("regression")
    n = int(y.size)
    out: dict[str, Any] = {"labelled": n, "metric": metric, "judged": False, "decayed": False, "why": None}
    if task != "regression":
        out["positives"] = positives = int(np.sum(y >= 0.5))
    if n < cfg.min_labels:
        out["why"] = f"{n} labelled predictions, fewer than monitoring.min_labels = {cfg.min_labels}"
        return out
    if task == "regression":
        metrics = regression_metrics(y, s)
    else:
        if positives in (0, n):
            out["why"] = f"all {n} labelled predictions are of one class"
            return out
        threshold = evaluation.get("threshold")
        threshold = float(threshold) if isinstance(threshold, int | float) else 0.5
        metrics = classification_metrics(y, s, threshold)
        out["calibration"] = calibration(y, s)["bins"]
    out["metrics"] = metrics
    current, reference = metrics.get(metric), evaluation.get(metric)
    out["current"], out["reference"] = current, reference
    if not isinstance(current, int | float) or not isinstance(reference, int | float):
        missing = "the window" if not isinstance(current, int | float) else "the model's evaluation"
        out["why"] = f"{metric} is not available for {missing}"
        return out
    higher = higher_is_better(metric)
    bar = float(reference) - cfg.decay_margin if higher else float(reference) + cfg.decay_margin
    out["bar"] = bar
    out["judged"] = True
    out["decayed"] = bool(current < bar) if higher else bool(current > bar)
    return out
