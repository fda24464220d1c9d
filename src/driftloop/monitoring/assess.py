"""One monitoring pass: drift, data quality and decay of a window of predictions, and the decision.

:func:`assess` streams the window once through one accumulator per profiled feature (and one for the
scores), joins the labels it is given, and decides:

- ``DECAY``: with enough labels (``monitoring.min_labels``, both classes present), the decay metric is
  worse than the model's evaluation by more than ``monitoring.decay_margin``, judged without the labels
  of suspicious sources (:mod:`driftloop.monitoring.decay`);
- ``DRIFT``: the dataset drifts (share of drifted features) or the score distribution does, and the
  labels do not show that performance holds;
- ``WARN``: some features drifted, but not enough for the dataset; or the dataset or the scores drifted
  while decay was judged on enough labels and performance holds (``monitoring.
  drift_when_performance_holds``: drift is a proxy for decay, and the labels are the evidence); a
  data-quality alarm, a suspicious label source, label conflicts or labels outside the model's label set;
- ``OK``: none of these;
- ``INSUFFICIENT``: fewer than ``monitoring.min_samples`` predictions: no verdict, never a trigger
  (:mod:`driftloop.monitoring.decide` holds these rules).

Values that break the schema (outside ``min``/``max``, a category not in ``allowed``, a value of the
wrong type) are counted as data quality and left out of the drift statistics: a handful of impossible
readings would otherwise decide the distance measures (0.2 % of speeds at 1,000,000 rpm is a normalised
Wasserstein distance of about 7), and a broken sensor is a data-quality incident, not a population shift.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from driftloop.core.transform import OTHER_LEVEL
from driftloop.errors import DataError
from driftloop.monitoring.decay import judge_sources, performance
from driftloop.monitoring.decide import Decision, decide
from driftloop.monitoring.relations import attribute
from driftloop.monitoring.stats import (
    P_VALUE_METHODS,
    CategoricalAccumulator,
    DatasetDrift,
    FeatureDrift,
    NumericAccumulator,
    dataset_verdict,
    feature_drift,
    pick_test,
    prediction_drift,
)
from driftloop.monitoring.tally import FeatureTally, WindowTally

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime

    from driftloop.core.labels import LabelSpec
    from driftloop.monitoring.decay import LabelledRows
    from driftloop.monitoring.labels import LabelBook
    from driftloop.monitoring.relations import Relation
    from driftloop.monitoring.window import CaptureChunk
    from driftloop.settings import ColumnSpec, MonitoringSettings

__all__ = ["Assessment", "Decision", "WindowTally", "assess", "judge"]


@dataclass(frozen=True)
class Assessment:
    """The outcome of one monitoring pass; ``to_json`` is its JSON twin.

    ``features`` are the tested features (a feature without a valid value in the window cannot be
    tested: it is listed in ``untested`` and shows up as a data-quality alarm; one with fewer than
    ``monitoring.min_samples`` non-null values is not tested either: ``insufficient`` maps it to its
    count; a feature found drifted through a relation has ``via`` set, the tests of the relations are
    ``relations``). ``quality`` has the
    window's counts and ``alarms``; ``performance`` is None without labels, else the metrics on the
    labelled predictions and whether decay was judged (``judged``) and found (``decayed``);
    ``label_audit`` is None without labels, else each source's agreement with the model and verdict
    (``sources``), the ``suspicious`` ones, labels ``left_out`` with them, conflicts, duplicates and
    labels outside the model's label set (``invalid``).
    """

    decision: Decision
    reasons: tuple[str, ...]
    rows: int
    features: tuple[FeatureDrift, ...]
    dataset: DatasetDrift
    prediction: FeatureDrift | None
    quality: dict[str, Any]
    performance: dict[str, Any] | None
    untested: tuple[str, ...] = ()
    start: datetime | None = None  # the first and last prediction time seen (None when unknown)
    end: datetime | None = None
    label_audit: dict[str, Any] | None = None
    insufficient: dict[str, int] = dataclasses.field(default_factory=dict)
    # Tests of the profile's relations (b − a of features that wander together, decision 0060).
    relations: tuple[FeatureDrift, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (plain str, int, float, bool, None, lists and dicts)."""
        dataset = self.dataset.to_json()
        dataset.pop("results")  # the same as "features"
        return {
            "decision": self.decision,
            "reasons": list(self.reasons),
            "rows": self.rows,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "features": [f.to_json() for f in self.features],
            "untested": list(self.untested),
            "insufficient": dict(self.insufficient),
            "relations": [r.to_json() for r in self.relations],
            "dataset": dataset,
            "prediction": self.prediction.to_json() if self.prediction else None,
            "quality": self.quality,
            "performance": self.performance,
            "label_audit": self.label_audit,
        }


def assess(
    profile: Mapping[str, Any],
    chunks: Iterable[CaptureChunk],
    *,
    schema: Sequence[ColumnSpec],
    cfg: MonitoringSettings,
    levels: Mapping[str, Iterable[str]] | None = None,
    labels: Mapping[str, float] | LabelBook | None = None,
    evaluation: Mapping[str, Any] | None = None,
    invalid_requests: int = 0,
    label_spec: LabelSpec | None = None,
) -> Assessment:
    """Assess a window of predictions against the model's reference ``profile``.

    ``chunks`` are streamed once (:func:`~driftloop.monitoring.window.iter_captures`, or
    :meth:`CaptureChunk.from_columns` for data that was never captured). ``schema`` gives each feature's
    range and allowed values and names the id column (``role = "id"``); ``levels`` the category levels
    the model knows (its transform's), outside which a value is counted as unknown. ``labels`` holds
    the ground truth by source (:func:`~driftloop.monitoring.labels.read_label_book`), or maps a
    prediction id — or, failing that, the value of the id column in the captured inputs — to it (one
    source, ``labels``); ``evaluation`` is the model's hold-out metrics (with its ``threshold``);
    ``invalid_requests`` counts requests refused as invalid (the service's 422s) in the window.
    ``label_spec`` is the model's label set and task (default: classification): labels outside it are
    left out and counted.

    Raises :class:`DataError` when the window has no predictions, or the profile no features.
    """
    tally = WindowTally(profile, schema, levels=levels, labels=labels, label_spec=label_spec)
    for chunk in chunks:
        tally.update(chunk)
    return judge(tally, cfg=cfg, evaluation=evaluation, invalid_requests=invalid_requests)


def judge(
    tally: WindowTally,
    *,
    cfg: MonitoringSettings,
    evaluation: Mapping[str, Any] | None = None,
    invalid_requests: int = 0,
) -> Assessment:
    """The assessment of a counted window (:func:`assess`, or tallies merged from several workers).

    Raises :class:`DataError` when the window had no predictions.
    """
    if tally.rows == 0:
        raise DataError("no captured predictions in the window: nothing to assess")
    features, relations, scores = tally.features, tally.relations, tally.scores
    book, labelled, spec, rows = tally.book, tally.labelled, tally.spec, tally.rows
    results, insufficient, related = _drift_results(features, relations, cfg)
    untested = tuple(f.name for f in features if not _testable(f.acc))
    dataset = dataset_verdict(results, cfg)
    enough_scores = scores is not None and _testable(scores) and scores.n >= cfg.min_samples
    prediction = prediction_drift(scores, cfg) if scores is not None and enough_scores else None
    quality = _quality(
        features,
        rows=rows,
        malformed=tally.malformed,
        invalid_requests=invalid_requests,
        fallback=tally.fallback,
        no_score=tally.no_score,
        cfg=cfg,
    )
    judged_labels = _judge_labels(book, labelled, evaluation or {}, cfg, spec)
    performance, audit = judged_labels if judged_labels is not None else (None, None)
    decision, reasons = decide(
        results,
        untested=untested,
        dataset=dataset,
        prediction=prediction,
        quality=quality,
        performance=performance,
        rows=rows,
        labels=audit,
        when_holds=cfg.drift_when_performance_holds,
        insufficient=insufficient,
        min_samples=cfg.min_samples,
        relations=related,
    )
    return Assessment(
        decision=decision,
        reasons=tuple(reasons),
        rows=rows,
        features=tuple(results),
        dataset=dataset,
        prediction=prediction,
        quality=quality,
        performance=performance,
        untested=untested,
        start=_datetime(tally.first),
        end=_datetime(tally.last),
        label_audit=audit,
        insufficient=insufficient,
        relations=tuple(related),
    )


def _drift_results(
    features: Sequence[FeatureTally], relations: Sequence[Relation], cfg: MonitoringSettings
) -> tuple[list[FeatureDrift], dict[str, int], list[FeatureDrift]]:
    """Each testable feature's drift (with its window's nulls and violations), the features with too
    few values for a test, and the relations' tests with their drift attributed to a member."""
    # A handful of values decides nothing, whatever a test says: below min_samples, no test.
    insufficient = {f.name: f.acc.n for f in features if _testable(f.acc) and f.acc.n < cfg.min_samples}
    tested = [f for f in features if _testable(f.acc) and f.name not in insufficient]
    p_value_tests = sum(
        pick_test(f.kind, f.acc.n, cfg, f.name, f.reference).method in P_VALUE_METHODS for f in tested
    )
    results = [feature_drift(f.name, f.acc, cfg, p_value_tests=p_value_tests) for f in tested]
    by_name = {f.name: f for f in features}
    results = [
        dataclasses.replace(
            r, nulls=by_name[r.name].nulls, invalid=by_name[r.name].out_of_range + by_name[r.name].invalid
        )
        for r in results
    ]
    related = [r for r in (relation.test(cfg) for relation in relations) if r is not None]
    results = list(attribute(results, related, {r.name: (r.a, r.b) for r in relations}))
    return results, insufficient, related


def _testable(acc: NumericAccumulator | CategoricalAccumulator) -> bool:
    return acc.n > 0 and acc.reference_n > 0


def _judge_labels(
    book: LabelBook | None,
    labelled: LabelledRows | None,
    evaluation: Mapping[str, Any],
    cfg: MonitoringSettings,
    spec: LabelSpec,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Performance on the labels of the sources not found suspicious, and the label audit."""
    if book is None or labelled is None:
        return None
    verdicts, suspicious = judge_sources(labelled, evaluation, cfg, spec.task)
    y = labelled.winners(exclude=suspicious)
    kept = np.isfinite(y)
    result = performance(y[kept], labelled.scores[kept], evaluation, cfg, spec.task)
    left_out = int(np.count_nonzero(~kept))
    if suspicious:
        result["left_out"] = left_out
        if result["why"] is not None:
            result["why"] += (
                f" (after leaving out {left_out:,} predictions labelled only by suspicious sources)"
            )
    audit = {"label_set": spec.expected, "sources": verdicts, "suspicious": suspicious, "left_out": left_out}
    return result, audit | book.audit()


def _quality(
    features: Sequence[FeatureTally],
    *,
    rows: int,
    malformed: int,
    invalid_requests: int,
    fallback: int,
    no_score: int,
    cfg: MonitoringSettings,
) -> dict[str, Any]:
    """Null, out-of-range and invalid shares per feature and overall, with the alarms they raise.

    The null bar is the reference's own null share plus ``max_null_share``, so a feature that was often
    empty in training does not alarm every window. The invalid share counts invalid values, rows whose
    inputs were not an object and refused requests over all records (captured rows + refused requests).
    """
    per_feature: dict[str, dict[str, Any]] = {}
    alarms: list[str] = []
    for f in features:
        reference_nulls = float(f.reference.get("null_share", 0.0))
        limit = min(1.0, reference_nulls + cfg.max_null_share)
        null_share = f.nulls / rows
        range_share = f.out_of_range / rows
        unknown = f.acc.unknown if isinstance(f.acc, CategoricalAccumulator) else 0
        per_feature[f.name] = {
            "nulls": f.nulls,
            "null_share": null_share,
            "reference_null_share": reference_nulls,
            "max_null_share": limit,
            "out_of_range": f.out_of_range,
            "out_of_range_share": range_share,
            "invalid": f.invalid,
            "invalid_share": f.invalid / rows,
            "unknown": unknown,
            "unknown_share": unknown / rows,
        }
        if unknown / rows > cfg.max_unknown_share:
            alarms.append(
                f"{f.name}: {unknown / rows:.1%} of values are categories the model never saw ({unknown} of"
                f" {rows}; scored as {OTHER_LEVEL}; the limit is {cfg.max_unknown_share:.1%})"
            )
        if null_share > limit:
            alarms.append(
                f"{f.name}: {null_share:.1%} of values are missing ({f.nulls} of {rows}; "
                f"the limit is {limit:.1%})"
            )
        if range_share > cfg.max_out_of_range_share:
            alarms.append(
                f"{f.name}: {range_share:.1%} of values are outside [{f.low}, {f.high}] "
                f"({f.out_of_range} of {rows}; the limit is {cfg.max_out_of_range_share:.1%})"
            )
    invalid_values = sum(f.invalid for f in features) + malformed
    records = rows + invalid_requests
    invalid_share = (invalid_values + invalid_requests) / records
    if invalid_share > cfg.max_invalid_share:
        worst = sorted((f for f in features if f.invalid), key=lambda f: -f.invalid)[:3]
        detail = ", ".join(f"{f.name} {f.invalid}" for f in worst)
        alarms.append(
            f"schema violations in {invalid_share:.1%} of records ({invalid_values} invalid values"
            f"{' — ' + detail if detail else ''}; {malformed} malformed inputs; {invalid_requests} "
            f"refused requests; the limit is {cfg.max_invalid_share:.1%})"
        )
    return {
        "rows": rows,
        "invalid_requests": invalid_requests,
        "malformed": malformed,
        "invalid_values": invalid_values,
        "invalid_share": invalid_share,
        "max_invalid_share": cfg.max_invalid_share,
        "max_out_of_range_share": cfg.max_out_of_range_share,
        "fallback": fallback,
        "missing_scores": no_score,
        "features": per_feature,
        "alarms": alarms,
    }


def _datetime(value: np.datetime64 | None) -> datetime | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC").to_pydatetime()
