"""The dashboard's charts as Plotly figures (plain ``{"data", "layout"}`` dicts, drawn in the browser by
the ``plotly.min.js`` the app serves itself).

Building the dicts here, rather than with ``plotly.graph_objects``, keeps the server free of Plotly's
figure validation on every page view; the shapes used are few and tests check that every chart has
data. Times are UTC, written ``YYYY-MM-DD HH:MM:SS`` (Plotly's date axis ignores offsets) and every
time axis says so.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from datetime import datetime

    from driftloop.dashboard.sources import AuditEntry, DriftPoint, DriftSeries, ShadowComparison, VersionView
    from driftloop.dashboard.traffic import Traffic
    from driftloop.monitoring.history import MonitorDecision
    from driftloop.scheduling.ledger import Guard, Trigger

__all__ = [
    "DECISION_COLOURS",
    "audit_timeline",
    "decision_timeline",
    "drift_chart",
    "guard_chart",
    "latency_chart",
    "requests_chart",
    "retraining_chart",
    "shadow_chart",
    "trigger_chart",
]

Figure = dict[str, Any]

# The monitoring report's colours (driftloop.monitoring.report), so a decision looks the same everywhere.
DECISION_COLOURS = {"OK": "#2e7d32", "WARN": "#ef6c00", "DRIFT": "#c62828", "DECAY": "#6a1b9a"}
_STATE_COLOURS = {
    "waiting": "#90a4ae",
    "training": "#1565c0",
    "shadow": "#00838f",
    "awaiting_approval": "#f9a825",
    "promoted": "#2e7d32",
    "kept": "#ef6c00",
    "failed": "#c62828",
    "notified": "#5e35b1",
    "suppressed": "#9e9e9e",
    "watching": "#1565c0",
    "passed": "#2e7d32",
    "rolled-back": "#c62828",
}
_OUTCOME_COLOURS = {"done": "#2e7d32", "refused": "#c62828", "given": "#1565c0"}
_WINDOW_AXIS = "monitored period end (UTC)"
# Tests whose score is a p-value: drift is a score *below* the threshold (the others are distances).
_P_VALUES = {"ks", "chisquare"}


def when(moment: datetime) -> str:
    """A UTC instant as Plotly's date axis reads it."""
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def _layout(title: str, x: str, y: str, **extra: Any) -> dict[str, Any]:
    return {
        # Left-aligned: Plotly's tool bar sits at the top right, over a centred long title.
        "title": {"text": title, "font": {"size": 15}, "x": 0.01, "xanchor": "left"},
        "xaxis": {"title": {"text": x}, "automargin": True},
        "yaxis": {"title": {"text": y}, "automargin": True},
        "legend": {"orientation": "h", "y": -0.25},
        "margin": {"t": 40, "r": 10, "b": 10, "l": 10},
        "height": 340,
        "hovermode": "closest",
        **extra,
    }


def _finite(values: Iterable[float | None]) -> list[float | None]:
    return [v if v is not None and math.isfinite(v) else None for v in values]


def drift_chart(series: DriftSeries, *, title: str | None = None, y_title: str | None = None) -> Figure:
    """A feature's (or the prediction's) drift score per monitoring window, its threshold as a dashed
    step line, and the windows judged drifted marked in red."""
    points = series.points
    x = [when(p.window_end) for p in points]
    methods = sorted({p.method for p in points if p.method})
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "score",
            "x": x,
            "y": _finite(p.score for p in points),
            "text": [p.method or "" for p in points],
            "hovertemplate": "%{x}<br>score %{y:.4g} (%{text})<extra></extra>",
            "line": {"color": "#1565c0"},
        }
    ]
    if any(p.threshold is not None for p in points):
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "threshold",
                "x": x,
                "y": _finite(p.threshold for p in points),
                "line": {"color": "#c62828", "dash": "dash", "shape": "hv"},
                "hovertemplate": "threshold %{y:.4g}<extra></extra>",
            }
        )
    drifted = [p for p in points if p.drifted]
    if drifted:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "drifted",
                "x": [when(p.window_end) for p in drifted],
                "y": _finite(p.score for p in drifted),
                "marker": {"color": "#c62828", "size": 11, "symbol": "x"},
                "hoverinfo": "skip",
            }
        )
    heading = title or series.name
    if methods and set(methods) <= _P_VALUES:
        heading += ": drift below the threshold"
    elif methods and not set(methods) & _P_VALUES:
        heading += ": drift above the threshold"
    label = y_title or (", ".join(methods) if methods else "score")
    return {"data": data, "layout": _layout(heading, _WINDOW_AXIS, label, height=300)}


def share_chart(points: Sequence[DriftPoint]) -> Figure:
    """The dataset's drifted share per window, with the share that makes the dataset drift."""
    series = _as_series("drift share", points)
    return drift_chart(series, title="share of features drifted", y_title="share drifted")


def _as_series(name: str, points: Sequence[DriftPoint]) -> DriftSeries:
    from driftloop.dashboard.sources import DriftSeries

    return DriftSeries(name, tuple(points))


def decision_timeline(history: Sequence[MonitorDecision]) -> Figure:
    """Each monitoring pass at its window's end, one colour (and legend entry) per decision; the y axis
    is the pass's drifted share."""
    data = []
    for state, colour in DECISION_COLOURS.items():
        chosen = [d for d in history if d.decision == state]
        if not chosen:
            continue
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": state,
                "x": [when(d.period[1]) for d in chosen],
                "y": [_share(d) for d in chosen],
                "text": ["<br>".join(d.reasons[:3]) for d in chosen],
                "hovertemplate": "%{x}<br>drift share %{y:.2f}<br>%{text}<extra>" + state + "</extra>",
                "marker": {"color": colour, "size": 12},
            }
        )
    return {
        "data": data,
        "layout": _layout("monitoring decisions", _WINDOW_AXIS, "share of features drifted"),
    }


def _share(d: MonitorDecision) -> float | None:
    value = d.summary.get("drift_share")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def audit_timeline(entries: Sequence[AuditEntry], versions: Sequence[VersionView]) -> Figure:
    """Versions registered and every audited stage change or approval, by time and version."""
    data: list[dict[str, Any]] = []
    if versions:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "registered",
                "x": [when(v.created_at) for v in versions],
                "y": [v.version for v in versions],
                "marker": {"color": "#607d8b", "symbol": "diamond", "size": 10},
                "hovertemplate": "v%{y} registered %{x}<extra></extra>",
            }
        )
    for outcome in sorted({e.outcome for e in entries}):
        chosen = [e for e in entries if e.outcome == outcome]
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": outcome,
                "x": [when(e.at) for e in chosen],
                "y": [e.version for e in chosen],
                "text": [f"{e.action} {e.move} by {e.actor}" for e in chosen],
                "hovertemplate": "v%{y} %{text}<br>%{x}<extra></extra>",
                "marker": {"color": _OUTCOME_COLOURS.get(outcome, "#455a64"), "size": 10},
            }
        )
    layout = _layout("versions and their audit history", "time (UTC)", "version")
    layout["yaxis"]["dtick"] = 1
    return {"data": data, "layout": layout}


def requests_chart(traffic: Traffic) -> Figure:
    """Requests since the service started, by route, stacked by status."""
    paths = sorted({p for p, _ in traffic.requests})
    data = [
        {
            "type": "bar",
            "name": status,
            "x": paths,
            "y": [traffic.requests.get((p, status), 0.0) for p in paths],
        }
        for status in sorted({s for _, s in traffic.requests})
    ]
    layout = _layout("requests by route and status (since the service started)", "route", "requests")
    return {"data": data, "layout": layout | {"barmode": "stack"}}


def latency_chart(traffic: Traffic) -> Figure:
    """Latency percentiles per route, estimated from the service's histogram buckets."""
    paths = sorted(traffic.latency)
    data = [
        {
            "type": "bar",
            "name": f"p{q * 100:g}",
            "x": paths,
            "y": _finite(traffic.latency[p][q] * 1000 for p in paths),
        }
        for q in sorted({q for per in traffic.latency.values() for q in per})
    ]
    layout = _layout("latency percentiles by route", "route", "milliseconds")
    return {"data": data, "layout": layout | {"barmode": "group"}}


def outcomes_chart(traffic: Traffic) -> Figure:
    """Predictions answered by the fallback, refused requests by reason, captures refused."""
    values = {"fallbacks": traffic.counters.get("driftloop_fallbacks_total", 0.0)}
    values |= {f"refused: {k}": v for k, v in sorted(traffic.refusals().items())}
    values["capture full (503)"] = traffic.counters.get("driftloop_capture_rejected", 0.0)
    data = [{"type": "bar", "name": "count", "x": list(values), "y": list(values.values())}]
    return {"data": data, "layout": _layout("fallbacks and refusals", "", "requests")}


def trigger_chart(all_triggers: Sequence[Trigger]) -> Figure:
    """Each trigger at its time, by kind, one colour (and legend entry) per state."""
    data = _by_state(
        all_triggers,
        y=lambda t: t.kind,
        text=lambda t: f"trigger {t.id}: {t.reason[:120]}",
        marker={"size": 12},
    )
    return {"data": data, "layout": _layout("triggers", "recorded (UTC)", "kind")}


def retraining_chart(started: Sequence[Trigger]) -> Figure:
    """Each retraining at its trigger's time (the loop's clock, simulated in the demo), by the candidate
    it produced, one colour (and legend entry) per outcome."""
    data = _by_state(
        started,
        y=lambda t: f"v{t.candidate_version}" if t.candidate_version else "no candidate",
        text=lambda t: f"trigger {t.id} ({t.kind}), pipeline run {t.pipeline_run}",
        marker={"size": 14, "symbol": "square"},
    )
    layout = _layout("retrainings by candidate and outcome", "triggered (UTC)", "candidate version")
    return {"data": data, "layout": layout}


def _by_state(
    triggers: Sequence[Trigger],
    *,
    y: Callable[[Trigger], Any],
    text: Callable[[Trigger], str],
    marker: dict[str, Any],
) -> list[dict[str, Any]]:
    """One marker trace per trigger state (its colour and legend entry), each trigger at its time."""
    data = []
    for state in sorted({t.state.value for t in triggers}):
        chosen = [t for t in triggers if t.state.value == state]
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": state,
                "x": [when(t.created_at) for t in chosen],
                "y": [y(t) for t in chosen],
                "text": [text(t) for t in chosen],
                "hovertemplate": "%{text}<br>%{x}<extra>" + state + "</extra>",
                "marker": {"color": _STATE_COLOURS.get(state, "#455a64"), **marker},
            }
        )
    return data


def shadow_chart(comparisons: Sequence[ShadowComparison]) -> Figure:
    """Challenger vs champion Brier loss on the same labelled shadow requests (lower is better)."""
    labels = [f"#{c.trigger}: v{c.challenger} vs v{c.champion}" for c in comparisons]
    data = [
        {
            "type": "bar",
            "name": name,
            "x": labels,
            "y": _finite(getattr(c, attr) for c in comparisons),
            "marker": {"color": colour},
        }
        for name, attr, colour in (
            ("challenger (shadow)", "challenger_brier", "#00838f"),
            ("champion (production)", "champion_brier", "#607d8b"),
        )
    ]
    layout = _layout("shadow comparisons: Brier loss (lower is better)", "trigger", "Brier loss")
    return {"data": data, "layout": layout | {"barmode": "group"}}


def guard_chart(all_guards: Sequence[Guard], margin: float) -> Figure:
    """Each guard's baseline (the replaced version's live ROC AUC, or the new one's offline one), the
    floor ``baseline - margin`` (``policy.guard_margin``) below which it rolls back, and the live ROC AUC
    its verdict saw."""
    labels = [f"v{g.version} (guard {g.id})" for g in all_guards]
    live = [g.verdict.get("roc_auc") for g in all_guards]
    data = [
        {"type": "bar", "name": "baseline", "x": labels, "y": _finite(g.baseline for g in all_guards)},
        {
            "type": "bar",
            "name": "live ROC AUC",
            "x": labels,
            "y": _finite(v if isinstance(v, int | float) else None for v in live),
        },
        {
            "type": "scatter",
            "mode": "markers",
            "name": "rollback floor",
            "x": labels,
            "y": _finite(g.baseline - margin for g in all_guards),
            "marker": {"symbol": "line-ew-open", "size": 40, "color": "#c62828", "line": {"width": 3}},
        },
    ]
    layout = _layout("rollback guards", "guarded version", "ROC AUC")
    return {"data": data, "layout": layout | {"barmode": "group"}}
