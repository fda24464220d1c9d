"""The monitoring report: a self-contained HTML page, the summary stored with each decision, and the
Prometheus gauges of the latest pass.

The page has no scripts and loads nothing: charts are inline SVG drawn here, styles are inline, and
every piece of text (feature names, categories, reasons) is HTML-escaped, since categories come from
the captured requests.
"""

from __future__ import annotations

import html
import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from driftloop.monitoring.decide import DECISIONS

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from driftloop.monitoring.assess import Assessment
    from driftloop.monitoring.history import MonitorDecision
    from driftloop.monitoring.stats import FeatureDrift

__all__ = ["DECISIONS", "prometheus_text", "render_html", "summarize"]

_COLOURS = {
    "OK": "#2e7d32",
    "WARN": "#ef6c00",
    "DRIFT": "#c62828",
    "DECAY": "#6a1b9a",
    "INSUFFICIENT": "#78909c",
}
_MEANING = {
    "OK": "no drift, decay or alarm",
    "WARN": "some features drifted or an alarm: a person looks",
    "DRIFT": "dataset or prediction drift: retraining",
    "DECAY": "performance fell: retraining",
    "INSUFFICIENT": "too few predictions to judge",
}
_REFERENCE, _CURRENT = "#9e9e9e", "#1565c0"


def summarize(assessment: Assessment) -> dict[str, Any]:
    """The few numbers stored with a decision: enough for trends and for a trigger to act on."""
    performance = assessment.performance or {}
    prediction = assessment.prediction
    return {
        "rows": assessment.rows,
        "drift_share": assessment.dataset.share,
        "drift_share_threshold": assessment.dataset.threshold,
        "drifted_features": list(assessment.dataset.drifted_features),
        "feature_scores": {f.name: f.score for f in assessment.features},
        # Added with calibrated thresholds (decision 0060); readers of older rows find them missing.
        "feature_thresholds": {f.name: f.threshold for f in assessment.features},
        "feature_methods": {f.name: f.method for f in assessment.features},
        "feature_directions": {f.name: f.direction for f in assessment.features},
        "feature_threshold_sources": {f.name: f.threshold_source for f in assessment.features},
        "insufficient": dict(assessment.insufficient),
        "drifted_via": {f.name: f.via for f in assessment.features if f.via is not None},
        "relation_scores": {r.name: r.score for r in assessment.relations},
        "relation_thresholds": {r.name: r.threshold for r in assessment.relations},
        "prediction_score": prediction.score if prediction is not None else None,
        "prediction_drifted": prediction.drifted if prediction is not None else False,
        "alarms": len(assessment.quality.get("alarms", [])),
        "performance": {
            "metric": performance.get("metric"),
            "current": performance.get("current"),
            "reference": performance.get("reference"),
            "labelled": performance.get("labelled", 0),
            "judged": performance.get("judged", False),
        }
        if assessment.performance is not None
        else None,
        "suspicious_sources": list((assessment.label_audit or {}).get("suspicious", [])),
        "label_conflicts": (assessment.label_audit or {}).get("conflicts", 0),
    }


def prometheus_text(assessment: Assessment, *, model: str, version: int, at: datetime) -> bytes:
    """The latest pass as Prometheus text exposition (one gauge per decision state, 1 for the current)."""
    registry = CollectorRegistry()
    labels = {"model": model, "version": str(version)}
    decision = Gauge(
        "driftloop_monitor_decision",
        "Latest monitoring decision: 1 for the current state, 0 for the others.",
        [*labels, "state"],
        registry=registry,
    )
    for state in DECISIONS:
        decision.labels(**labels, state=state).set(1.0 if assessment.decision == state else 0.0)
    gauges: dict[str, tuple[str, float]] = {
        "driftloop_monitor_drift_share": (
            "Share of features drifted (importance-weighted when configured).",
            assessment.dataset.share,
        ),
        "driftloop_monitor_drifted_features": (
            "Features drifted.",
            float(len(assessment.dataset.drifted_features)),
        ),
        "driftloop_monitor_rows": ("Predictions in the monitored window.", float(assessment.rows)),
        "driftloop_monitor_quality_alarms": (
            "Data-quality alarms.",
            float(len(assessment.quality["alarms"])),
        ),
        "driftloop_monitor_timestamp_seconds": ("When the pass ran (Unix time).", at.timestamp()),
    }
    if assessment.label_audit is not None:
        audit = assessment.label_audit
        gauges["driftloop_monitor_suspicious_sources"] = (
            "Label sources whose labels were left out of the decay judgement as suspicious.",
            float(len(audit["suspicious"])),
        )
        gauges["driftloop_monitor_label_conflicts"] = (
            "Prediction ids labelled again with a different label (the first label kept).",
            float(audit["conflicts"]),
        )
    for name, (text, value) in gauges.items():
        Gauge(name, text, list(labels), registry=registry).labels(**labels).set(value)
    score = Gauge(
        "driftloop_monitor_feature_drift_score",
        "Drift score per feature: its method's distance (higher is worse) or p-value (lower is worse).",
        [*labels, "feature", "method"],
        registry=registry,
    )
    threshold = Gauge(
        "driftloop_monitor_feature_drift_threshold",
        "The threshold each feature's drift score was judged against (configured, calibrated or overridden).",
        [*labels, "feature", "method"],
        registry=registry,
    )
    for f in assessment.features:
        score.labels(**labels, feature=f.name, method=f.method).set(f.score)
        threshold.labels(**labels, feature=f.name, method=f.method).set(f.threshold)
    performance = assessment.performance or {}
    current = performance.get("current")
    if isinstance(current, int | float):
        Gauge(
            "driftloop_monitor_performance",
            "The decay metric on the window's labelled predictions.",
            [*labels, "metric"],
            registry=registry,
        ).labels(**labels, metric=str(performance.get("metric"))).set(float(current))
    return bytes(generate_latest(registry))


def render_html(
    assessment: Assessment,
    history: Sequence[MonitorDecision] = (),
    *,
    title: str = "driftloop monitoring",
    window: tuple[datetime, datetime] | None = None,
) -> str:
    """The report page: decision and reasons, trends over ``history`` (earlier decisions, oldest first)
    plus this pass, one reference-vs-current chart per tested feature, data quality and performance.

    Passes are placed by the window they monitored (``window`` for this one; default the first and
    last prediction seen), never by when they ran: a replay or the demo runs days of windows in
    minutes."""
    a = assessment
    colour = _COLOURS.get(a.decision, "#333")
    seen = f"{_when(a.start)} → {_when(a.end)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)} — {_e(a.decision)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{_e(title)}</h1>",
        f'<p><span class="badge" style="background:{colour}">{_e(a.decision)}</span> '
        f"{a.rows:,} predictions, first {_e(seen)}</p>",
        "<ul class=reasons>" + "".join(f"<li>{_e(r)}</li>" for r in a.reasons) + "</ul></header>",
        _overview(a),
        _trends(a, history, window),
        "<h2>Features</h2>",
        *(_feature_section(f) for f in a.features),
    ]
    if a.untested:
        parts.append(f"<p>Not tested (no valid value in the window): {_e(', '.join(a.untested))}</p>")
    if a.insufficient:
        few = ", ".join(f"{name} ({n:,} values)" for name, n in a.insufficient.items())
        parts.append(f"<p>Not tested (fewer values than monitoring.min_samples): {_e(few)}</p>")
    if a.relations:
        parts += [
            "<h2>Relations</h2><p>The difference of features whose day-to-day wander is shared (the "
            "weather moves both): one member moving alone — an offset, a noisier sensor — shows here "
            "even when its own score stays within its wander; the drift goes to the member farther "
            "from its reference.</p>",
            *(_feature_section(r, css="relation-chart") for r in a.relations),
        ]
    if a.prediction is not None:
        parts += ["<h2>Prediction scores</h2>", _feature_section(a.prediction, css="prediction-chart")]
    parts += [
        _quality(a.quality),
        _performance(a.performance),
        _label_sources(a.label_audit),
        "</body></html>",
    ]
    return "\n".join(parts)


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222}"
    ".badge{color:#fff;padding:.2em .6em;border-radius:4px;font-weight:bold}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border-bottom:1px solid #ddd;padding:.2em .6em;"
    "text-align:right}th:first-child,td:first-child{text-align:left}section{margin:1.5em 0}"
    ".drifted{color:#c62828;font-weight:bold}.legend span{display:inline-block;width:.8em;height:.8em;"
    "margin:0 .3em 0 1em}svg text{font-size:10px;fill:#444}"
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "unknown"


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "–" if value is None else _e(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}" if math.isfinite(value) else _e(value)


def _overview(a: Assessment) -> str:
    d = a.dataset
    rows = [
        (
            "dataset drift",
            f"{d.share:.2f} of {d.features} features (threshold {d.threshold:.2f})"
            f"{' — weighted' if d.weighted else ''}: {'drifted' if d.drifted else 'no'}",
        ),
        ("drifted features", ", ".join(d.drifted_features) or "none"),
    ]
    if a.prediction is not None:
        p = a.prediction
        rows.append(
            (
                "prediction drift",
                f"{p.method} {p.score:.4g} ({p.direction}; threshold {p.threshold:.4g}): "
                f"{'drifted' if p.drifted else 'no'}",
            )
        )
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<h2>Overview</h2><table>{body}</table>"


def _trends(
    a: Assessment, history: Sequence[MonitorDecision], window: tuple[datetime, datetime] | None
) -> str:
    """Drift share and decision per pass (earlier ones and this one), each feature's score against its
    threshold, and performance when known; the x axis is the monitored window."""
    points: list[tuple[str, str, float, float | None]] = []
    ratios: list[dict[str, float]] = []
    for h in history:
        perf = (h.summary.get("performance") or {}).get("current")
        points.append(
            (
                _window_label(*h.period),
                h.decision,
                float(h.summary.get("drift_share", 0.0)),
                float(perf) if isinstance(perf, int | float) else None,
            )
        )
        ratios.append(_summary_ratios(h.summary))
    perf_now = (a.performance or {}).get("current")
    start, end = window if window is not None else (a.start, a.end)
    label = _window_label(start, end) if start is not None and end is not None else "this pass"
    points.append(
        (label, a.decision, a.dataset.share, float(perf_now) if isinstance(perf_now, int | float) else None)
    )
    ratios.append({f.name: _ratio(f.score, f.threshold, f.direction) for f in (*a.features, *a.relations)})
    out = [
        "<h2>Over time</h2>",
        "<p>One point per monitoring pass, placed at the window it monitored (UTC).</p>",
        "<h3>Share of drifted features, coloured by decision</h3>",
        _line_chart([(p[0], p[2], p[1]) for p in points], a.dataset.threshold, css="trend-chart"),
        _decision_legend(sorted({p[1] for p in points}, key=_decision_order)),
    ]
    names = [f.name for f in (*a.features, *a.relations)]
    if any(r for r in ratios):
        out += [
            "<h3>Each feature's (and relation's) drift score ÷ its threshold (above 1 is drift; capped at "
            f"{_RATIO_CAP:g})</h3>",
            _ratio_chart([p[0] for p in points], ratios, names),
        ]
    performance = [(p[0], p[3], p[1]) for p in points if p[3] is not None]
    if performance:
        metric = (a.performance or {}).get("metric", "performance")
        out += [
            f"<h3>{_e(metric)} on labelled predictions</h3>",
            _line_chart(performance, None, css="performance-chart"),
        ]
    return "\n".join(out)


_RATIO_CAP = 3.0
_SERIES = ("#1565c0", "#ef6c00", "#2e7d32", "#c62828", "#6a1b9a", "#00838f", "#8d6e63", "#455a64")


def _ratio(score: float, threshold: float, direction: str) -> float:
    """How far a score is past its threshold, as a multiple where higher is worse (1 = the threshold):
    a distance over its threshold, a p-value's threshold over it."""
    if direction == "lower is worse":
        value = threshold / max(score, 1e-12)
    else:
        value = score / threshold if threshold > 0 else 0.0
    return min(value, _RATIO_CAP)


def _summary_ratios(summary: Mapping[str, Any]) -> dict[str, float]:
    """Score ÷ threshold per feature of a stored pass (none for rows from before thresholds were kept)."""
    scores = summary.get("feature_scores") or {}
    thresholds = summary.get("feature_thresholds") or {}
    directions = summary.get("feature_directions") or {}
    ratios = {
        name: _ratio(float(score), float(thresholds[name]), str(directions.get(name, "higher is worse")))
        for name, score in scores.items()
        if isinstance(score, int | float) and isinstance(thresholds.get(name), int | float)
    }
    relation_thresholds = summary.get("relation_thresholds") or {}
    for name, score in (summary.get("relation_scores") or {}).items():
        limit = relation_thresholds.get(name)
        if isinstance(score, int | float) and isinstance(limit, int | float):
            ratios[name] = _ratio(float(score), float(limit), "higher is worse")
    return ratios


def _decision_order(decision: str) -> int:
    return DECISIONS.index(decision) if decision in DECISIONS else len(DECISIONS)


def _decision_legend(decisions: Sequence[str]) -> str:
    items = "".join(
        f'<span style="background:{_COLOURS.get(d, "#333")};border-radius:50%"></span>{_e(d)}: '
        f"{_e(_MEANING.get(d, ''))}"
        for d in decisions
    )
    return f'<p class="legend">{items}</p>'


def _window_label(start: datetime, end: datetime) -> str:
    """A window as a short axis label: its day(s) when it covers whole UTC days, else its end."""
    length = end - start
    whole_days = length.days >= 1 and length == timedelta(days=length.days)
    if whole_days and start.hour == start.minute == start.second == 0:
        last = end - timedelta(days=1)
        return f"{start:%m-%d}" if length.days == 1 else f"{start:%m-%d}…{last:%m-%d}"
    return f"{end:%m-%d %H:%M}"


def _axis_title(x: float, y: float) -> str:
    return f'<text x="{x:.0f}" y="{y:.0f}" text-anchor="middle">monitored window (UTC)</text>'


def _axis_labels(labels: Sequence[str], xs: Sequence[float], height: int) -> list[str]:
    """At most ~10 labels, slanted so that long ones neither overlap nor run off the right edge."""
    every = max(1, -(-len(labels) // 10))
    out = []
    for i, (label, x) in enumerate(zip(labels, xs, strict=True)):
        if i % every == 0 or i == len(labels) - 1:
            y = height - 34
            out.append(
                f'<text x="{x:.1f}" y="{y}" text-anchor="end" transform="rotate(-30 {x:.1f} {y})">'
                f"{_e(label)}</text>"
            )
    return out


def _line_chart(points: Sequence[tuple[str, float, str]], threshold: float | None, *, css: str) -> str:
    width, height, left, top, bottom = 680, 210, 70, 14, 70
    inner_w, inner_h = width - left - 60, height - top - bottom
    top_value = max([1.0, *(p[1] for p in points)]) if threshold is not None else max(p[1] for p in points)
    low = 0.0 if threshold is not None else min(0.5, *(p[1] for p in points))
    span = (top_value - low) or 1.0
    step = inner_w / max(len(points) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + i * step, top + inner_h * (1 - (v - low) / span)

    svg = [
        f'<svg class="{css}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f'<line x1="{left}" y1="{top + inner_h}" x2="{left + inner_w}" y2="{top + inner_h}" stroke="#888"/>',
        f'<text x="{left - 6}" y="{top + 8}" text-anchor="end">{top_value:.2f}</text>'
        f'<text x="{left - 6}" y="{top + inner_h}" text-anchor="end">{low:.2f}</text>',
        _axis_title(left + inner_w / 2, height - 4),
    ]
    if threshold is not None:
        y = xy(0, threshold)[1]
        svg.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + inner_w}" y2="{y:.1f}" stroke="#c62828" '
            f'stroke-dasharray="4 3"><title>threshold {threshold:.2f}</title></line>'
            f'<text x="{left + inner_w}" y="{y - 4:.1f}" fill="#c62828" text-anchor="end">'
            f"threshold {threshold:.2f}</text>"
        )
    coords = [xy(i, p[1]) for i, p in enumerate(points)]
    if len(coords) > 1:
        svg.append(
            '<polyline fill="none" stroke="#555" points="'
            + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            + '"/>'
        )
    for (label, value, decision), (x, y) in zip(points, coords, strict=True):
        colour = _COLOURS.get(decision, "#333")
        svg.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}">'
            f"<title>{_e(label)}: {_e(decision)} {value:.3f}</title></circle>"
        )
    svg += _axis_labels([p[0] for p in points], [c[0] for c in coords], height)
    svg.append("</svg>")
    return "".join(svg)


def _ratio_chart(labels: Sequence[str], ratios: Sequence[Mapping[str, float]], names: Sequence[str]) -> str:
    """One line per feature: score ÷ threshold per pass, the threshold (1) dashed, a legend of names."""
    width, height, left, top, bottom = 680, 230, 70, 14, 70
    inner_w, inner_h = width - left - 60, height - top - bottom
    step = inner_w / max(len(labels) - 1, 1)
    top_value = max([1.5, *(v for r in ratios for v in r.values())])

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + i * step, top + inner_h * (1 - v / top_value)

    y1 = xy(0, 1.0)[1]
    svg = [
        '<svg class="feature-trend-chart" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f'<line x1="{left}" y1="{top + inner_h}" x2="{left + inner_w}" y2="{top + inner_h}" stroke="#888"/>',
        f'<text x="{left - 6}" y="{top + 8}" text-anchor="end">{top_value:.1f}×</text>'
        f'<text x="{left - 6}" y="{top + inner_h}" text-anchor="end">0</text>',
        f'<line x1="{left}" y1="{y1:.1f}" x2="{left + inner_w}" y2="{y1:.1f}" stroke="#c62828" '
        f'stroke-dasharray="4 3"/><text x="{left + inner_w}" y="{y1 - 4:.1f}" fill="#c62828" '
        'text-anchor="end">'
        "threshold</text>",
        _axis_title(left + inner_w / 2, height - 4),
    ]
    legend = []
    for k, name in enumerate(names):
        colour = _SERIES[k % len(_SERIES)]
        coords = [(xy(i, r[name]), r[name]) for i, r in enumerate(ratios) if name in r]
        if not coords:
            continue
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for (x, y), _ in coords)
            svg.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        svg.extend(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{_e(name)}: {v:.2f}× '
            "its threshold</title></circle>"
            for (x, y), v in coords
        )
        legend.append(f'<span style="background:{colour}"></span>{_e(name)}')
    svg += _axis_labels(labels, [xy(i, 0)[0] for i in range(len(labels))], height)
    svg.append("</svg>")
    return "".join(svg) + f'<p class="legend">{"".join(legend)}</p>'


def _feature_section(f: FeatureDrift, *, css: str = "feature-chart") -> str:
    verdict = '<span class="drifted">drifted</span>' if f.drifted else "no drift"
    if f.via is not None:
        verdict = f'<span class="drifted">drifted through the relation {_e(f.via)}</span>'
    relation = "p-value" if f.statistic == "p_value" else "distance"
    source = {
        "calibrated": "calibrated from the reference's clean chunks",
        "override": "set in monitoring.features",
        "configured": "configured",
    }[f.threshold_source]
    if f.clean_max is not None:
        source += f"; clean chunks scored up to {_num(f.clean_max)}"
    head = (
        f"<section><h3>{_e(f.name)}</h3><p>{_e(f.method)} {relation} {_num(f.score)} "
        f"({_e(f.direction)}; threshold {_num(f.threshold)}, {_e(source)}): {verdict}; "
        f"{f.current_n:,} values against {f.reference_n:,}"
        f"{f', {f.nulls:,} missing' if f.nulls else ''}{f', {f.invalid:,} invalid' if f.invalid else ''}</p>"
    )
    legend = (
        f'<p class="legend"><span style="background:{_REFERENCE}"></span>reference'
        f'<span style="background:{_CURRENT}"></span>current</p>'
    )
    return head + _bar_chart(f, css) + legend + "</section>"


def _bar_chart(f: FeatureDrift, css: str) -> str:
    """Reference vs current share of each bin (numeric) or category, side by side."""
    bins = f.bins or tuple(str(i) for i in range(len(f.reference_shares)))
    n = max(len(bins), 1)
    width, height, left, top, bottom = 640, 220, 40, 10, 70
    inner_w, inner_h = width - left - 10, height - top - bottom
    peak = max([0.01, *f.reference_shares, *f.current_shares])
    slot = inner_w / n
    bar = max(slot * 0.38, 1.0)
    svg = [
        f'<svg class="{css}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img"><title>{_e(f.name)}: reference vs current</title>',
        f'<line x1="{left}" y1="{top + inner_h}" x2="{width - 10}" y2="{top + inner_h}" stroke="#888"/>',
        f'<text x="2" y="{top + 8}">{peak:.0%}</text><text x="2" y="{top + inner_h}">0%</text>',
    ]
    for i, label in enumerate(bins):
        x0 = left + i * slot + slot * 0.1
        for j, (shares, colour, who) in enumerate(
            ((f.reference_shares, _REFERENCE, "reference"), (f.current_shares, _CURRENT, "current"))
        ):
            share = shares[i] if i < len(shares) else 0.0
            h = inner_h * share / peak
            svg.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{top + inner_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{_e(label)} {who}: {share:.1%}</title></rect>'
            )
        cx, cy = left + (i + 0.5) * slot, top + inner_h + 12
        svg.append(
            f'<text x="{cx:.1f}" y="{cy:.1f}" text-anchor="end" '
            f'transform="rotate(-35 {cx:.1f} {cy:.1f})">{_e(label)}</text>'
        )
    svg.append("</svg>")
    return "".join(svg)


def _quality(quality: Mapping[str, Any]) -> str:
    rows = []
    for name, q in quality.get("features", {}).items():
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{q['null_share']:.2%}</td><td>{q['max_null_share']:.2%}</td>"
            f"<td>{q['out_of_range_share']:.2%}</td><td>{q['invalid_share']:.2%}</td></tr>"
        )
    alarms = "".join(f"<li>{_e(x)}</li>" for x in quality.get("alarms", [])) or "<li>none</li>"
    return (
        "<h2>Data quality</h2><table><tr><th>feature</th><th>missing</th><th>limit</th>"
        f"<th>out of range</th><th>invalid</th></tr>{''.join(rows)}</table>"
        f"<p>{_num(quality.get('invalid_requests', 0))} refused requests, "
        f"{_num(quality.get('malformed', 0))} "
        f"malformed inputs, {_num(quality.get('fallback', 0))} fallback predictions.</p>"
        f"<h3>Alarms</h3><ul>{alarms}</ul>"
    )


def _performance(performance: Mapping[str, Any] | None) -> str:
    if performance is None:
        return "<h2>Performance</h2><p>No labels were read for this window.</p>"
    p = performance
    head = f"<h2>Performance</h2><p>{_num(p.get('labelled', 0))} labelled predictions."
    if not p.get("judged"):
        return head + f" Decay not judged: {_e(p.get('why') or 'not enough labels')}.</p>"
    verdict = '<span class="drifted">decayed</span>' if p.get("decayed") else "no decay"
    head += (
        f" {_e(p['metric'])} {_num(p.get('current'))} against the evaluation's "
        f"{_num(p.get('reference'))} (bar {_num(p.get('bar'))}): {verdict}.</p>"
    )
    metrics = p.get("metrics") or {}
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_num(v)}</td></tr>" for k, v in metrics.items())
    return head + (f"<table><tr><th>metric</th><th>window</th></tr>{body}</table>" if body else "")


def _label_sources(audit: Mapping[str, Any] | None) -> str:
    """Each label source's agreement with the model and verdict; conflicts and refused labels."""
    if audit is None:
        return ""
    rows = []
    for entry in audit["sources"]:
        verdict = '<span class="drifted">suspicious: left out</span>' if entry["suspicious"] else "kept"
        if not entry["judged"]:
            verdict = "kept (too few labels to judge)"
        rows.append(
            f"<tr><td>{_e(entry['source'])}</td><td>{_num(entry['labelled'])}</td>"
            f"<td>{_e(entry['statistic'] or '–')}</td><td>{_num(entry['value'])}</td>"
            f"<td>{_num(entry['z'])}</td><td>{verdict}</td></tr>"
        )
    why = "".join(
        f"<li>{_e(entry['source'])}: {_e(entry['why'])}</li>" for entry in audit["sources"] if entry["why"]
    )
    conflicts = "".join(
        f"<li>{_e(c['first'])} first, {_e(c['later'])} later: {_num(c['count'])}</li>"
        for c in audit["conflicts_by_source"]
    )
    invalid = ", ".join(f"{_e(source)} {_num(count)}" for source, count in audit["invalid"].items()) or "none"
    return (
        "<h2>Label sources</h2><table><tr><th>source</th><th>labelled</th><th>agreement</th><th>value</th>"
        f"<th>z against chance</th><th>verdict</th></tr>{''.join(rows)}</table>"
        + (f"<ul>{why}</ul>" if why else "")
        + f"<p>{_num(audit['conflicts'])} conflicting labels (a prediction labelled again differently; the "
        f"first label kept), {_num(audit['duplicates'])} repeated labels; labels must be "
        f"{_e(audit['label_set'])}, refused: {invalid}.</p>" + (f"<ul>{conflicts}</ul>" if conflicts else "")
    )
