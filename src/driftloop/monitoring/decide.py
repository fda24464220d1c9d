"""The decision of a monitoring pass from its drift, data-quality, label and performance findings.

Kept apart from :mod:`driftloop.monitoring.assess`, which streams the window and computes those
findings: the rules that rank them (``DECAY`` › ``DRIFT`` › ``WARN`` › ``OK``, ``INSUFFICIENT`` for a
window too small to judge) and the sentences that explain a decision live here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from driftloop.training.metrics import higher_is_better

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from driftloop.monitoring.stats import DatasetDrift, FeatureDrift

__all__ = ["DECISIONS", "Decision", "decide", "describe"]

Decision = Literal["OK", "WARN", "DRIFT", "DECAY", "INSUFFICIENT"]
# Every decision, mildest first; INSUFFICIENT last: it is no verdict at all.
DECISIONS: tuple[Decision, ...] = ("OK", "WARN", "DRIFT", "DECAY", "INSUFFICIENT")


def decide(
    results: Sequence[FeatureDrift],
    *,
    untested: Sequence[str],
    dataset: DatasetDrift,
    prediction: FeatureDrift | None,
    quality: Mapping[str, Any],
    performance: Mapping[str, Any] | None,
    rows: int,
    labels: Mapping[str, Any] | None = None,
    when_holds: Decision = "WARN",
    insufficient: Mapping[str, int] | None = None,
    min_samples: int = 1,
    relations: Sequence[FeatureDrift] = (),
) -> tuple[Decision, list[str]]:
    """The decision and every reason behind it, the most serious first. ``when_holds``: the decision
    for drift when decay was judged and performance holds; ``insufficient``: features left untested
    for having fewer than ``min_samples`` non-null values (by their count).

    A window of fewer than ``min_samples`` predictions is ``INSUFFICIENT`` (unless decay was judged
    and found): neither OK nor WARN, and never a trigger; what was seen (data-quality alarms, label
    problems) is still listed.
    """
    reasons: list[str] = []
    decision: Decision = "OK"
    if performance is not None and performance["decayed"]:
        decision = "DECAY"
        p = performance
        side = "below" if higher_is_better(p["metric"]) else "above"
        margin = abs(p["bar"] - p["reference"])
        reasons.append(
            f"decay: {p['metric']} {p['current']:.3f} on {p['labelled']} labelled predictions is {side} "
            f"{p['bar']:.3f} (the model's evaluation {p['reference']:.3f} with a margin of {margin:.3f})"
        )
    drifted = [r for r in results if r.drifted]
    if dataset.drifted:
        decision = "DRIFT" if decision == "OK" else decision
        reasons.append(
            f"dataset drift: {len(drifted)} of {dataset.features} features drifted (share "
            f"{dataset.share:.2f} ≥ {dataset.threshold:.2f})"
        )
    if prediction is not None and prediction.drifted:
        decision = "DRIFT" if decision == "OK" else decision
        reasons.append(f"prediction drift: {describe(prediction)}")
    if decision == "DRIFT" and performance is not None and performance["judged"] and when_holds != "DRIFT":
        decision = when_holds
        p = performance
        reasons.insert(
            0,
            f"performance holds: {p['metric']} {p['current']:.3f} on {p['labelled']} labelled predictions "
            f"against the model's evaluation {p['reference']:.3f} (bar {p['bar']:.3f}), so drift alone "
            f"is {when_holds}, not a retraining (monitoring.drift_when_performance_holds)",
        )
    about_labels = _label_reasons(labels) if labels is not None else []
    reasons += about_labels
    reasons += [f"feature drift: {describe(r)}" for r in drifted]
    reasons += [f"relation drift: {describe(r)}" for r in relations if r.drifted]
    reasons += [f"{name}: no valid value in the window, its drift cannot be tested" for name in untested]
    reasons += [
        f"{name}: only {count} non-null values, fewer than monitoring.min_samples ({min_samples}): "
        "its drift was not tested"
        for name, count in (insufficient or {}).items()
    ]
    reasons += list(quality["alarms"])
    if rows < min_samples and decision != "DECAY":
        reasons.insert(
            0,
            f"insufficient data: {rows} prediction{'s' if rows != 1 else ''} in the window, fewer than "
            f"monitoring.min_samples ({min_samples}): no drift verdict, nothing to act on",
        )
        return "INSUFFICIENT", reasons
    if decision == "OK" and (drifted or untested or quality["alarms"] or about_labels):
        decision = "WARN"
    if decision == "OK":
        reasons.append(
            f"no drift, decay or data-quality alarm in {rows} predictions ({len(results)} features tested)"
        )
    return decision, reasons


def _label_reasons(labels: Mapping[str, Any]) -> list[str]:
    """Suspicious sources, conflicts and labels outside the label set: each needs a person, never a
    retraining."""
    reasons = [
        f"suspicious labels from source {entry['source']!r}: {entry['why']}; its labels are left out of "
        "the decay judgement, so they cannot start a retraining: check the source"
        for entry in labels["sources"]
        if entry["suspicious"]
    ]
    if labels["conflicts"]:
        pairs = "; ".join(
            f"{c['first']!r} then {c['later']!r}: {c['count']:,}" for c in labels["conflicts_by_source"][:3]
        )
        reasons.append(
            f"label conflicts: {labels['conflicts']:,} prediction ids were labelled again with a different "
            f"label, the first label kept ({pairs})"
        )
    invalid = sum(labels["invalid"].values())
    if invalid:
        by_source = ", ".join(f"{source!r} {count:,}" for source, count in labels["invalid"].items())
        reasons.append(
            f"invalid labels: {invalid:,} labels are not {labels['label_set']} and were left out "
            f"({by_source})"
        )
    return reasons


def describe(result: FeatureDrift) -> str:
    """One drifted test in words: score, threshold, which way is worse and where the threshold came
    from (``air_temperature_k (wasserstein 1.62 > 1.2, higher is worse, calibrated: clean days ≤
    0.96; 2500 values against 4000)``)."""
    relation = "<" if result.statistic == "p_value" else ">"
    if result.via is not None:
        relation = "≥" if result.statistic == "p_value" else "≤"
        return (
            f"{result.name} (through the relation {result.via}: the member farther from its reference; "
            f"on its own {result.method} {result.score:.3g} {relation} {result.threshold:.3g}, "
            f"{result.direction}; {result.current_n} values against {result.reference_n})"
        )
    source: str = result.threshold_source
    if source == "calibrated" and result.clean_max is not None:
        source = f"calibrated: clean chunks ≤ {result.clean_max:.3g}"
    return (
        f"{result.name} ({result.method} {result.score:.3g} {relation} {result.threshold:.3g}, "
        f"{result.direction}, {source}; {result.current_n} values against {result.reference_n})"
    )
