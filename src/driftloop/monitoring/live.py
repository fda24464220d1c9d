"""Live evidence from captured traffic: the shadow comparison, the rollback guard, live performance.

All three join the captured predictions of a time range with the labels known for them (``/v1/feedback``
and the delayed label files, :func:`~driftloop.monitoring.labels.read_labels`) and score them with the
training metrics, so "live ROC AUC" means the same thing as the evaluation's ROC AUC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from driftloop.capture.parquet import PREDICTION_SCHEMA, conform
from driftloop.core.promotion import CheckResult
from driftloop.monitoring.labels import LabelBook, read_label_book
from driftloop.monitoring.sequential import paired_difference_interval
from driftloop.monitoring.window import as_utc, in_window, partition_keys
from driftloop.training import metrics as m

if TYPE_CHECKING:
    from driftloop.settings import Settings
    from driftloop.storage import ObjectStore

__all__ = [
    "SHADOW_EVIDENCE",
    "GuardVerdict",
    "LiveScores",
    "guard_verdict",
    "live_scores",
    "shadow_comparison",
]

SHADOW_EVIDENCE = "shadow_comparison"


@dataclass(frozen=True)
class LiveScores:
    """Captured predictions of a range, with their labels where known (NaN where not)."""

    model_version: np.ndarray  # int64: the version that answered
    score: np.ndarray
    fallback: np.ndarray  # bool
    shadow_version: np.ndarray  # int64, -1 where nothing was in shadow
    shadow_score: np.ndarray
    label: np.ndarray  # float64, NaN: not labelled (yet)
    disputed: np.ndarray  # bool: its first label was contradicted by a later one
    by_source: dict[str, np.ndarray] = field(default_factory=dict)  # each label source's own labels

    @property
    def rows(self) -> int:
        return len(self.score)

    def select(self, mask: np.ndarray) -> LiveScores:
        return LiveScores(
            self.model_version[mask],
            self.score[mask],
            self.fallback[mask],
            self.shadow_version[mask],
            self.shadow_score[mask],
            self.label[mask],
            self.disputed[mask],
            {k: v[mask] for k, v in self.by_source.items()},
        )

    def labelled(self) -> LiveScores:
        return self.select(~np.isnan(self.label))

    def metrics(self, threshold: float, *, shadow: bool = False) -> dict[str, Any]:
        """The classification metrics of the (shadow) scores against the labels (labelled rows only)."""
        done = self.labelled()
        scores = done.shadow_score if shadow else done.score
        return m.classification_metrics(done.label, scores, threshold)


def live_scores(settings: Settings, store: ObjectStore, start: datetime, end: datetime) -> LiveScores:
    """Predictions of ``registry.model_name`` captured in ``[start, end)``, joined with their labels.

    Reads the date partitions that overlap the range; each object is small next to a monitoring window
    (this serves the gates and the guard, which look at hours of traffic), so it is read whole.
    """
    start, end = as_utc(start), as_utc(end)
    name, data = settings.registry.model_name, settings.data
    id_column = next((c.name for c in data.columns if c.role == "id"), None)
    tables = [
        in_window(
            conform(pq.read_table(pa.BufferReader(store.read_bytes(key))), PREDICTION_SCHEMA), start, end
        )
        for key in partition_keys(store, f"captures/model={name}", start, end)
    ]
    table = pa.concat_tables(tables) if tables else PREDICTION_SCHEMA.empty_table()
    book = LabelBook()
    if end > start:
        book = read_label_book(
            store, start, end, dataset=data.dataset, id_column=id_column or "record_id", target=data.target
        )
    labels = book.merged()
    ids = table.column("prediction_id").to_pylist()
    record_ids = (
        _record_ids(table.column("inputs").to_pylist(), id_column) if id_column else [None] * len(ids)
    )
    label = np.array(
        [_lookup(labels, pid, rid) for pid, rid in zip(ids, record_ids, strict=True)], np.float64
    )
    by_source = {}
    for name, given in book.sources.items():
        values = {key: value for key, (_, value) in given.items()}
        pairs = zip(ids, record_ids, strict=True)
        by_source[name] = np.array([_lookup(values, pid, rid) for pid, rid in pairs], np.float64)
    return LiveScores(
        model_version=_ints(table.column("model_version")),
        score=_floats(table.column("score")),
        fallback=pc.fill_null(table.column("fallback"), False).to_numpy(zero_copy_only=False).astype(bool),
        shadow_version=_ints(table.column("shadow_version")),
        shadow_score=_floats(table.column("shadow_score")),
        label=label,
        disputed=np.array([pid in book.disputed for pid in ids], dtype=bool),
        by_source=by_source,
    )


def shadow_comparison(
    settings: Settings,
    store: ObjectStore,
    *,
    challenger: int,
    champion: int,
    threshold: float,
    since: datetime,
    now: datetime | None = None,
) -> CheckResult:
    """The challenger's shadow scores vs the champion's live scores on the same labelled requests,
    judged by a sequential test that stops as soon as the evidence suffices.

    Only requests the champion answered itself (not a fallback) while the challenger was in shadow
    count. On each labelled request both Brier losses are computed; an anytime-valid confidence sequence
    for the mean difference (challenger − champion) at ``policy.shadow_alpha``
    (:mod:`~driftloop.monitoring.sequential`) decides: passed once its upper bound is at most
    ``policy.shadow_margin``, failed once its lower bound exceeds it. Being judged at every pass does
    not inflate the error rate: wrongly promoting a challenger worse by more than the margin happens
    with probability at most ``shadow_alpha`` over the whole shadow period. Before
    ``policy.shadow_min_labels`` labelled requests, or while the interval still straddles the margin,
    it is not passed, with ``evidence["pending"]`` true (judged again at the next pass). Both ROC AUCs
    are reported too (the champion's is the rollback guard's baseline).
    """
    policy = settings.policy
    now = now or datetime.now(UTC)
    live = live_scores(settings, store, since, now)
    shadowed = (live.shadow_version == challenger) & (live.model_version == champion) & ~live.fallback
    both = live.select(shadowed)
    done = both.labelled()
    base: dict[str, Any] = {
        "champion_version": champion,
        "challenger_version": challenger,
        "metric": "brier",
        "margin": policy.shadow_margin,
        "alpha": policy.shadow_alpha,
        "since": as_utc(since).isoformat(),
        "until": now.isoformat(),
        "shadow_requests": both.rows,
        "labelled": done.rows,
        "pending": False,
    }
    if done.rows < policy.shadow_min_labels:
        detail = f"{done.rows} of {policy.shadow_min_labels} labelled shadow predictions so far"
        return CheckResult(SHADOW_EVIDENCE, False, detail, base | {"pending": True})
    new_loss, old_loss = (done.shadow_score - done.label) ** 2, (done.score - done.label) ** 2
    interval = paired_difference_interval(new_loss, old_loss, policy.shadow_alpha)
    evidence = base | {
        "brier_difference": [round(interval.low, 6), round(interval.high, 6)],
        "challenger_brier": round(float(new_loss.mean()), 6),
        "champion_brier": round(float(old_loss.mean()), 6),
    }
    new, old = done.metrics(threshold, shadow=True)["roc_auc"], done.metrics(threshold)["roc_auc"]
    if math.isfinite(new) and math.isfinite(old):
        evidence |= {"challenger": round(new, 6), "champion": round(old, 6)}
    bounds = (
        f"mean Brier difference v{challenger} − v{champion} in [{interval.low:+.4f}, {interval.high:+.4f}] "
        f"({1 - policy.shadow_alpha:.0%} anytime-valid, {done.rows:,} labelled live requests)"
    )
    if interval.high <= policy.shadow_margin:
        detail = (
            f"in shadow, v{challenger} is no worse than v{champion}: {bounds} ≤ margin {policy.shadow_margin}"
        )
        return CheckResult(SHADOW_EVIDENCE, True, detail, evidence)
    if interval.low > policy.shadow_margin:
        detail = (
            f"in shadow, v{challenger} is worse than v{champion}: {bounds} > margin {policy.shadow_margin}"
        )
        return CheckResult(SHADOW_EVIDENCE, False, detail, evidence)
    detail = f"not yet decided: {bounds} straddles the margin {policy.shadow_margin}"
    return CheckResult(SHADOW_EVIDENCE, False, detail, evidence | {"pending": True})


@dataclass(frozen=True)
class GuardVerdict:
    """What the rollback guard saw for a freshly promoted version, and whether to roll back."""

    rollback: bool
    reasons: tuple[str, ...]  # why it rolls back; without a rollback, what a person should look at
    requests: int
    error_rate: float
    labelled: int
    metric: float | None  # live ROC AUC, when enough labels

    def to_json(self) -> dict[str, Any]:
        return {
            "rollback": self.rollback,
            "reasons": list(self.reasons),
            "requests": self.requests,
            "error_rate": self.error_rate,
            "labelled": self.labelled,
            "roc_auc": self.metric,
        }


def guard_verdict(
    settings: Settings,
    store: ObjectStore,
    *,
    version: int,
    baseline: float,
    threshold: float,
    since: datetime,
    now: datetime | None = None,
) -> GuardVerdict:
    """Judge ``version`` on its live traffic since its promotion.

    Error rate: the share of requests since ``since`` answered by the fallback because ``version``
    raised (the capture records the answering version and the fallback flag). Decay: over at least
    ``policy.guard_min_labels`` labelled predictions it answered, its live ROC AUC below ``baseline``
    (what the replaced version achieved live, or the new one's offline evaluation) minus
    ``policy.guard_margin``. Labels that were contradicted by a later label are left out, and a decay
    that one label source shows while another, on its own, shows the bar held is not acted on: the
    verdict's reasons then say what a person should look at.
    """
    policy = settings.policy
    live = live_scores(settings, store, since, now or datetime.now(UTC))
    reasons = []
    error_rate = float(live.fallback.mean()) if live.rows else 0.0
    if live.rows and error_rate > policy.guard_max_error_rate:
        reasons.append(
            f"error rate {error_rate:.1%} over {live.rows:,} requests exceeds "
            f"{policy.guard_max_error_rate:.1%}"
        )
    answered = live.select((live.model_version == version) & ~live.fallback).labelled()
    # A rollback is destructive: a label contradicted by a later one (a poisoned batch, then the truth)
    # is not evidence for it either way.
    own = answered.select(~answered.disputed)
    metric = None
    left_out = answered.rows - own.rows
    notes = [f"{left_out:,} disputed labels left out"] if left_out else []
    bar = baseline - policy.guard_margin
    if own.rows >= policy.guard_min_labels:
        metric = float(own.metrics(threshold)["roc_auc"])
        if math.isfinite(metric) and metric < bar:
            decay = (
                f"live roc_auc {metric:.4f} over {own.rows:,} labelled requests is below the baseline "
                f"{baseline:.4f} minus {policy.guard_margin}"
            )
            holding = _sources_holding(own, threshold, bar, policy.guard_min_labels)
            if holding:  # a rollback is destructive: conflicting evidence goes to a person instead
                disagree = f"label sources disagree ({holding} hold the bar)"
                notes.append(f"{decay}, but {disagree}: not rolled back; check the label sources")
            else:
                reasons.append(decay)
    return GuardVerdict(bool(reasons), tuple(reasons + notes), live.rows, error_rate, own.rows, metric)


def _sources_holding(own: LiveScores, threshold: float, bar: float, min_labels: int) -> str:
    """The label sources that, on their own (at least ``min_labels`` labels), show the version clearing
    ``bar`` — e.g. the plant's label files while a poisoned feedback batch says otherwise."""
    holding = []
    for name, labels in sorted(own.by_source.items()):
        kept = np.isfinite(labels)
        if int(kept.sum()) < min_labels:
            continue
        value = float(m.classification_metrics(labels[kept], own.score[kept], threshold)["roc_auc"])
        if math.isfinite(value) and value >= bar:
            holding.append(f"{name} {value:.4f} on {int(kept.sum()):,}")
    return "; ".join(holding)


def _lookup(labels: dict[str, float], prediction_id: str, record_id: str | None) -> float:
    """Feedback by prediction id first, then the delayed label file's row by its record id."""
    found = labels.get(prediction_id)
    if found is None and record_id is not None:
        found = labels.get(record_id)
    return math.nan if found is None else found


def _record_ids(texts: list[str | None], id_column: str) -> list[str | None]:
    out: list[str | None] = []
    for text in texts:
        try:
            value = orjson.loads(text).get(id_column) if text else None
        except (orjson.JSONDecodeError, AttributeError):
            value = None
        out.append(value if isinstance(value, str) else None)
    return out


def _ints(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(column, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)  # nulls become NaN
