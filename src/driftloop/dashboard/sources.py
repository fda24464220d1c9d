"""What the dashboard shows, read from where driftloop keeps it: the registry (versions, aliases), the
audit (transitions, approvals), the monitoring decisions and the loop's ledger (triggers, guards).

Every function only reads. Each returns plain frozen views, so the pages and the JSON endpoints share one
shape and neither touches a session or an MLflow object. Summaries of monitoring decisions are read
defensively: their per-feature part has had more than one shape (a score per feature; a record with
score, threshold and method) and older rows must keep drawing (decision 0058).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from driftloop.core.models import Stage
from driftloop.monitoring.history import decision_history
from driftloop.monitoring.live import SHADOW_EVIDENCE
from driftloop.registry.audit import AuditLog
from driftloop.scheduling.ledger import Ledger

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from driftloop.monitoring.history import MonitorDecision
    from driftloop.registry import Registry
    from driftloop.scheduling.ledger import Guard, Trigger
    from driftloop.storage.metadata import Database

__all__ = [
    "AuditEntry",
    "DriftPoint",
    "DriftSeries",
    "ShadowComparison",
    "VersionView",
    "audit_entries",
    "drift_series",
    "guards",
    "retrainings",
    "shadow_comparisons",
    "triggers",
    "versions",
]

_LINEAGE_TAGS = {
    "driftloop.run_id": "run",
    "driftloop.feature_version": "feature version",
    "driftloop.pipeline_run": "pipeline run",
    "driftloop.data_window": "data window",
}
_METRIC_PREFIX = "driftloop.metric."
_DECISIONS_SHOWN = 200  # monitoring passes on the drift and decision pages (the latest ones)


@dataclass(frozen=True)
class VersionView:
    """One registered version: its stage by the audit (the authority), its aliases in MLflow, its
    hold-out metrics and lineage tags, and the trigger whose retraining made it (if any)."""

    version: int
    stage: str
    aliases: tuple[str, ...]
    created_at: datetime
    metrics: dict[str, float]
    lineage: dict[str, str]
    trigger: int | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One audit row (a transition, or an approval): who did what to which version, when and why."""

    at: datetime
    version: int
    action: str
    move: str
    outcome: str
    actor: str
    why: str


@dataclass(frozen=True)
class DriftPoint:
    """One monitoring pass seen from one feature (or the prediction): its score and the threshold the
    score was judged against (None when the pass did not record one)."""

    window_end: datetime
    score: float
    threshold: float | None
    method: str | None
    drifted: bool


@dataclass(frozen=True)
class DriftSeries:
    """A feature's (or the prediction's) drift over the monitoring passes, oldest first."""

    name: str
    points: tuple[DriftPoint, ...] = field(default=())


@dataclass(frozen=True)
class ShadowComparison:
    """The shadow evidence a trigger's candidate collected against the champion (trigger detail)."""

    trigger: int
    challenger: int | None
    champion: int | None
    passed: bool | None
    pending: bool
    labelled: int
    challenger_brier: float | None
    champion_brier: float | None
    difference: tuple[float, float] | None
    margin: float | None
    detail: str


def versions(registry: Registry, db: Database, model: str) -> list[VersionView]:
    """Every version of ``model``, newest first (:class:`~driftloop.errors.NotFoundError` when it is not
    registered). Stages come from the audit, never adopted here: a reader does not write."""
    stages = AuditLog(db).stages(model)
    made_by = {t.candidate_version: t.id for t in Ledger(db).triggers(model) if t.candidate_version}
    out = []
    for v in registry.versions(model):
        metrics = {}
        for key, value in v.tags.items():
            number = _number(value) if key.startswith(_METRIC_PREFIX) else None
            if number is not None:
                metrics[key.removeprefix(_METRIC_PREFIX)] = number
        lineage = {label: _readable(v.tags[tag]) for tag, label in _LINEAGE_TAGS.items() if v.tags.get(tag)}
        out.append(
            VersionView(
                version=v.version,
                stage=stages.get(v.version, Stage.NONE).value,
                aliases=v.aliases,
                created_at=_utc(v.created_at),
                metrics=metrics,
                lineage=lineage,
                trigger=made_by.get(v.version),
            )
        )
    return out


def audit_entries(db: Database, model: str) -> list[AuditEntry]:
    """Transitions and approvals of ``model``, interleaved by time, oldest first."""
    audit = AuditLog(db)
    entries = [
        AuditEntry(
            at=_utc(t.at),
            version=t.version,
            action=t.action,
            move=f"{t.from_stage.value} → {t.to_stage.value}",
            outcome=t.outcome,
            actor=t.actor,
            why="; ".join(t.reasons) + (f" — {t.comment}" if t.comment else ""),
        )
        for t in audit.history(model)
    ]
    entries += [
        AuditEntry(_utc(a.at), a.version, "approve", f"for {a.stage.value}", "given", a.actor, a.comment)
        for a in audit.approvals(model)
    ]
    return sorted(entries, key=lambda e: e.at)


def decisions(db: Database, model: str) -> list[MonitorDecision]:
    """The latest monitoring decisions of ``model``, oldest first."""
    return decision_history(db, model, limit=_DECISIONS_SHOWN)


def drift_series(
    history: list[MonitorDecision], thresholds: Callable[[MonitorDecision], Mapping[str, Any]] | None = None
) -> tuple[list[DriftSeries], DriftSeries, list[DriftPoint]]:
    """Per-feature series, the prediction's series and the dataset's drift share over ``history``.

    A pass whose summary does not record a feature's threshold takes it from ``thresholds(decision)``
    (the pass's full report), when given: ``{"features": {name: {...}}, "prediction": {...}}``."""
    features: dict[str, list[DriftPoint]] = {}
    prediction: list[DriftPoint] = []
    share: list[DriftPoint] = []
    for d in history:
        summary = d.summary
        end = _utc(d.period[1])
        recorded = _feature_records(summary)
        pred = _prediction_record(summary)
        records = [*recorded.values(), *([pred] if pred is not None else [])]
        fallback: Mapping[str, Any] = {}
        if thresholds is not None and any(r.get("threshold") is None for r in records):
            fallback = thresholds(d)
        drifted = set(summary.get("drifted_features") or ())
        for name, record in recorded.items():
            point = _point(end, record, (fallback.get("features") or {}).get(name), name in drifted)
            if point is not None:
                features.setdefault(name, []).append(point)
        if pred is not None:
            point = _point(end, pred, fallback.get("prediction"), bool(summary.get("prediction_drifted")))
            if point is not None:
                prediction.append(point)
        value = _number(summary.get("drift_share"))
        if value is not None:
            limit = _number(summary.get("drift_share_threshold"))
            share.append(DriftPoint(end, value, limit, None, limit is not None and value >= limit))
    series = [DriftSeries(name, tuple(points)) for name, points in sorted(features.items())]
    return series, DriftSeries("prediction", tuple(prediction)), share


def report_thresholds(read: Callable[[str], bytes], decision: MonitorDecision) -> dict[str, Any]:
    """The thresholds of ``decision``'s pass from its JSON report beside the HTML one (``read`` gets a
    store key); ``{}`` when the report cannot be read or parsed: the chart then draws no line."""
    uri = decision.report_uri
    marker = f"monitoring/{decision.model}/"
    if marker not in uri or not uri.endswith(".html"):
        return {}
    key = uri[uri.rindex(marker) :].removesuffix(".html") + ".json"
    try:
        document = json.loads(read(key))
    except Exception:  # a missing, moved or unreadable report only costs the line, never the page
        return {}
    features = {
        f["name"]: {"threshold": f.get("threshold"), "method": f.get("method")}
        for f in document.get("features") or ()
        if isinstance(f, dict) and "name" in f
    }
    prediction = document.get("prediction") or {}
    return {
        "features": features,
        "prediction": {"threshold": prediction.get("threshold"), "method": prediction.get("method")},
    }


def triggers(db: Database, model: str) -> list[Trigger]:
    """The loop's triggers of ``model`` (drift, decay, schedule, manual), oldest first."""
    return Ledger(db).triggers(model, limit=500)


def retrainings(all_triggers: list[Trigger]) -> list[Trigger]:
    """The triggers that started a retraining (a pipeline run), oldest first."""
    return [t for t in all_triggers if t.pipeline_run]


def guards(db: Database, model: str) -> list[Guard]:
    """The rollback guards of ``model``, oldest first."""
    return Ledger(db).guards(model)


def shadow_comparisons(all_triggers: list[Trigger]) -> list[ShadowComparison]:
    """The shadow evidence recorded on each trigger whose candidate was served in shadow."""
    out = []
    for t in all_triggers:
        check = t.detail.get(SHADOW_EVIDENCE)
        if not isinstance(check, dict):
            continue
        evidence = check.get("evidence") or {}
        low_high = evidence.get("brier_difference")
        interval = None
        if isinstance(low_high, list) and len(low_high) == 2:
            low, high = _number(low_high[0]), _number(low_high[1])
            interval = (low, high) if low is not None and high is not None else None
        out.append(
            ShadowComparison(
                trigger=t.id,
                challenger=evidence.get("challenger_version", t.candidate_version),
                champion=evidence.get("champion_version"),
                passed=check.get("passed"),
                pending=bool(evidence.get("pending")),
                labelled=int(evidence.get("labelled") or 0),
                challenger_brier=_number(evidence.get("challenger_brier")),
                champion_brier=_number(evidence.get("champion_brier")),
                difference=interval,
                margin=_number(evidence.get("margin")),
                detail=str(check.get("detail", "")),
            )
        )
    return out


def _feature_records(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{feature: {"score", "threshold", "method", ...}}`` from any summary shape: ``feature_scores`` as
    numbers or as records, optional ``feature_thresholds``/``feature_methods``, or a ``features`` list."""
    records: dict[str, dict[str, Any]] = {}
    listed = summary.get("features")
    if isinstance(listed, list):
        for item in listed:
            if isinstance(item, dict) and "name" in item:
                records[str(item["name"])] = dict(item)
    scores = summary.get("feature_scores")
    if isinstance(scores, dict):
        for name, value in scores.items():
            record = dict(value) if isinstance(value, dict) else {"score": value}
            records[str(name)] = records.get(str(name), {}) | record
    for key, field_name in (("feature_thresholds", "threshold"), ("feature_methods", "method")):
        extra = summary.get(key)
        if isinstance(extra, dict):
            for name, value in extra.items():
                records.setdefault(str(name), {}).setdefault(field_name, value)
    return records


def _prediction_record(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    value = summary.get("prediction")
    if isinstance(value, dict):
        return dict(value)
    if summary.get("prediction_score") is None:
        return None
    record: dict[str, Any] = {"score": summary.get("prediction_score")}
    for key in ("prediction_threshold", "prediction_method"):
        if key in summary:
            record[key.removeprefix("prediction_")] = summary[key]
    return record


def _point(
    end: datetime, record: Mapping[str, Any], fallback: Mapping[str, Any] | None, drifted: bool
) -> DriftPoint | None:
    score = _number(record.get("score"))
    if score is None:
        return None
    threshold = _number(record.get("threshold"))
    method = record.get("method")
    if threshold is None and fallback:
        threshold = _number(fallback.get("threshold"))
        method = method or fallback.get("method")
    return DriftPoint(
        end, score, threshold, str(method) if method else None, bool(record.get("drifted", drifted))
    )


def _readable(tag: str) -> str:
    """A lineage tag for people: the training data window (JSON) as ``start → end (labels as of …)``."""
    if not tag.startswith("{"):
        return tag
    try:
        window = json.loads(tag)
    except ValueError:
        return tag
    if not isinstance(window, dict):
        return tag
    if window.get("prefix"):
        return f"prefix {window['prefix']}"
    return f"{window.get('start') or '…'} → {window.get('end') or '…'} (labels as of {window.get('as_of')})"


def _number(value: Any) -> float | None:
    """A finite float from a number or numeric text; None for anything else (bools included)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything driftloop stores is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
