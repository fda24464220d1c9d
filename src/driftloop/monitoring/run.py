"""One monitoring pass end to end: resolve the production model, assess a window, persist everything.

:func:`monitor_once` is what ``driftloop monitor`` (and later the scheduler) calls. It reads the
model's reference profile and hold-out metrics from its MLflow run, streams the window's captures and
the labels known by ``as_of``, runs :func:`~driftloop.monitoring.assess.assess`, and then writes, in
this order so that a stored decision never points at a missing report:

1. ``monitoring/<model>/<UTC timestamp>/report.json`` and ``report.html`` on the object store;
2. ``monitoring/<model>/latest.prom``: the pass as Prometheus gauges (text exposition format), a file
   any exporter or the prediction service can serve as it is;
3. a row in the ``monitor_decisions`` table (``driftloop monitor history``);
4. best effort, an MLflow run named ``monitor <model> v<version>`` in the experiment
   ``<training experiment>/monitoring`` (driftloop.tracking.runs) with the two reports as artifacts
   and the drift share as metrics (a warning when MLflow refuses).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from driftloop.auth import run_origin
from driftloop.capture.landing import LANDING
from driftloop.core.labels import TASK_TAG, LabelSpec
from driftloop.core.transform import NumericInput, Transform
from driftloop.errors import DataError, DriftloopError, NotFoundError, UsageError
from driftloop.monitoring.assess import assess, judge
from driftloop.monitoring.history import decision_history, record_decision
from driftloop.monitoring.labels import read_label_book
from driftloop.monitoring.report import prometheus_text, render_html, summarize
from driftloop.monitoring.tally import WindowTally
from driftloop.monitoring.window import as_utc, count_rejections, iter_captures
from driftloop.registry import Registry
from driftloop.settings import ColumnSpec
from driftloop.storage import store_for
from driftloop.storage.metadata import open_metadata
from driftloop.tracking import Tracker
from driftloop.tracking.tracker import read_json

if TYPE_CHECKING:
    from collections.abc import Iterator

    from driftloop.core.models import ModelVersion
    from driftloop.monitoring.assess import Assessment
    from driftloop.monitoring.history import MonitorDecision
    from driftloop.monitoring.labels import LabelBook
    from driftloop.settings import Settings
    from driftloop.storage import ObjectStore

__all__ = ["PROFILE_ARTIFACT", "MonitorResult", "monitor_once"]

PROFILE_ARTIFACT = "reference_profile.json"
_HISTORY_IN_REPORT = 60  # earlier passes drawn in the report's trends
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorResult:
    """A finished pass: the assessment, the stored decision and where its files went.

    ``mlflow_run_id`` is None when logging to MLflow failed; ``warnings`` then says why.
    """

    assessment: Assessment
    decision: MonitorDecision
    report_uri: str  # the HTML report
    json_uri: str
    prometheus_uri: str
    mlflow_run_id: str | None
    labels: int
    warnings: tuple[str, ...] = ()


def monitor_once(
    settings: Settings,
    *,
    start: datetime,
    end: datetime,
    as_of: datetime | None = None,
    period: tuple[datetime, datetime] | None = None,
) -> MonitorResult:
    """Assess the production model's predictions captured in ``[start, end)`` with labels known by
    ``as_of`` (default: now), and record the outcome (see the module docstring for what is written).

    ``period`` is the time the traffic describes when that is not when it was captured — a replay of
    recorded data, the demo's simulated day. It is recorded with the decision and the report, and the
    report's and dashboard's time axes use it (:attr:`MonitorDecision.period`).

    Raises :class:`NotFoundError` when no version holds the ``production`` alias or its run has no
    reference profile, :class:`UsageError` for an empty window, :class:`DataError` when the window has
    no captured prediction, and the store's and database's errors.
    """
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise UsageError(f"empty monitoring window: {start.isoformat()} is not before {end.isoformat()}")
    shown, recorded = _period(period, (start, end))
    as_of = as_utc(as_of) if as_of is not None else datetime.now(UTC)
    name = settings.registry.model_name
    version = _production(settings, name)
    tracker = Tracker(settings, origin=run_origin(settings, "driftloop monitor", "JOB"))
    run_id = version.run_id
    if run_id is None:
        raise NotFoundError(f"{name}/{version.version} has no MLflow run, so no reference profile")
    try:
        profile = read_json(tracker, run_id, PROFILE_ARTIFACT)
    except NotFoundError:
        raise NotFoundError(
            f"{name}/{version.version} (run {run_id}) has no {PROFILE_ARTIFACT}; retrain it with this "
            "driftloop to monitor it"
        ) from None
    run = tracker.get_run(run_id)
    evaluation = _evaluation(run.metrics)
    # The labels the service accepts for this model are the ones the monitor believes: 0/1, or the
    # regression band (configured, else derived from the training target in the profile).
    serving = settings.serving
    spec = LabelSpec.derive(
        run.tags.get(TASK_TAG), profile, serving.label_ranges.get(name, serving.label_range)
    )

    store = store_for(settings)
    # The model's own input contract, not the configured raw schema: a model trained from any CSV is
    # monitored on its inputs, its category levels and its id column.
    transform = Transform.from_json(tracker.read_bytes(run_id, "transform.json"))
    columns = monitoring_schema(transform)
    labels = read_label_book(
        store,
        start,
        end,
        as_of=as_of,
        dataset=_label_dataset(store, settings.data.dataset),
        id_column=transform.id_column,
        target=transform.target or settings.data.target,
        spec=spec,
    )
    levels = {c.name: c.levels for c in transform.categorical}
    window = _Window(name, start, end, profile, columns, levels, labels, evaluation, spec)
    with _compaction_hint(store):
        assessment = _assess(settings, store, window)

    labelled = len(labels.merged())
    created = datetime.now(UTC)
    db = open_metadata(settings.database_url, echo=settings.database.echo)
    try:
        history = decision_history(db, name, limit=_HISTORY_IN_REPORT)
        prefix = f"monitoring/{name}/{created:%Y%m%dT%H%M%S.%fZ}"
        document = {
            "model": name,
            "version": version.version,
            "run_id": run_id,
            "window": {"start": start.isoformat(), "end": end.isoformat(), "as_of": as_of.isoformat()},
            **recorded,
            "created_at": created.isoformat(),
            "labels": labelled,
            **assessment.to_json(),
        }
        report_json = json.dumps(_finite(document), indent=2, sort_keys=True, default=str).encode()
        title = f"{name} v{version.version} — {shown[0]:%Y-%m-%d %H:%M} → {shown[1]:%Y-%m-%d %H:%M} UTC"
        report_html = render_html(assessment, history, title=title, window=shown).encode()
        store.write_bytes(f"{prefix}/report.json", report_json)
        store.write_bytes(f"{prefix}/report.html", report_html)
        prom_key = f"monitoring/{name}/latest.prom"
        store.write_bytes(
            prom_key, prometheus_text(assessment, model=name, version=version.version, at=created)
        )
        decision = record_decision(
            db,
            model=name,
            version=version.version,
            start=start,
            end=end,
            decision=assessment.decision,
            reasons=assessment.reasons,
            summary=_finite({**summarize(assessment), **recorded}),
            report_uri=store.uri(f"{prefix}/report.html"),
            created_at=created,
        )
    finally:
        db.dispose()
    warnings: list[str] = []
    mlflow_run = _log_to_mlflow(tracker, version, assessment, (report_json, report_html), warnings)
    return MonitorResult(
        assessment=assessment,
        decision=decision,
        report_uri=store.uri(f"{prefix}/report.html"),
        json_uri=store.uri(f"{prefix}/report.json"),
        prometheus_uri=store.uri(prom_key),
        mlflow_run_id=mlflow_run,
        labels=labelled,
        warnings=tuple(warnings),
    )


def _period(
    period: tuple[datetime, datetime] | None, window: tuple[datetime, datetime]
) -> tuple[tuple[datetime, datetime], dict[str, Any]]:
    """The period a pass shows (``period``, else the capture window) and what the decision records."""
    if period is None:
        return window, {}
    start, end = as_utc(period[0]), as_utc(period[1])
    if end <= start:
        raise UsageError(f"empty monitored period: {start.isoformat()} is not before {end.isoformat()}")
    return (start, end), {"period": {"start": start.isoformat(), "end": end.isoformat()}}


@dataclass(frozen=True)
class _Window:
    """What a pass assesses: the model's window, its reference and contract, the labels."""

    model: str
    start: datetime
    end: datetime
    profile: dict[str, Any]
    columns: tuple[ColumnSpec, ...]
    levels: dict[str, tuple[str, ...]]
    labels: LabelBook
    evaluation: dict[str, Any]
    spec: LabelSpec


def _assess(settings: Settings, store: ObjectStore, window: _Window) -> Assessment:
    """The window counted here (``monitoring.engine = "local"``) or on the Ray cluster, then judged."""
    cfg = settings.monitoring
    name, start, end, columns = window.model, window.start, window.end, window.columns
    profile, labels, evaluation, levels = window.profile, window.labels, window.evaluation, window.levels
    refused = count_rejections(store, model=name, start=start, end=end)  # the service's 422s
    if cfg.engine == "ray":
        # Counted with Ray Data (driftloop[ray]) into the same accumulators, judged here (docs/ray.md).
        from driftloop.monitoring.ray_window import tally_on_ray

        tally = WindowTally(profile, columns, levels=levels, labels=labels, label_spec=window.spec)
        tally = tally_on_ray(
            store,
            tally,
            address=settings.ray.address,
            model=name,
            start=start,
            end=end,
            chunk_rows=cfg.chunk_rows,
            fields=columns,
        )
        return judge(tally, cfg=cfg, evaluation=evaluation, invalid_requests=refused)
    chunks = iter_captures(store, model=name, start=start, end=end, chunk_rows=cfg.chunk_rows, fields=columns)
    return assess(
        profile,
        chunks,
        schema=columns,
        cfg=cfg,
        labels=labels,
        evaluation=evaluation,
        invalid_requests=refused,
        levels=levels,
        label_spec=window.spec,
    )


def monitoring_schema(transform: Transform) -> tuple[ColumnSpec, ...]:
    """The transform's inputs (types, bounds, closed category lists) and its id column as columns."""
    columns = []
    for spec in transform.inputs:
        if isinstance(spec, NumericInput):
            kind = "int" if spec.integer else "float"
            columns.append(
                ColumnSpec(name=spec.name, type=kind, nullable=spec.nullable, min=spec.min, max=spec.max)
            )
        elif spec.boolean:
            columns.append(ColumnSpec(name=spec.name, type="bool", nullable=spec.nullable))
        else:
            allowed = None if spec.open else spec.levels
            columns.append(
                ColumnSpec(name=spec.name, type="category", nullable=spec.nullable, allowed=allowed)
            )
    if transform.id_column is not None:
        columns.append(ColumnSpec(name=transform.id_column, type="string", role="id"))
    return tuple(columns)


def _production(settings: Settings, name: str) -> ModelVersion:
    version = Registry(settings).by_alias(name, "production")
    if version is None:
        raise NotFoundError(
            f"no production version of {name}: promote one first (driftloop promote {name} VERSION "
            "--to production)"
        )
    return version


def _evaluation(metrics: dict[str, float]) -> dict[str, Any]:
    """The run's hold-out metrics (``holdout_roc_auc`` → ``roc_auc``), the decision threshold included."""
    return {k.removeprefix("holdout_"): v for k, v in metrics.items() if k.startswith("holdout_")}


def _label_dataset(store: ObjectStore, dataset: str) -> str | None:
    """``dataset`` when the store has delayed label files for it (the simulator's), else None."""
    return dataset if next(iter(store.list(f"labels/{dataset}/")), None) is not None else None


def _log_to_mlflow(
    tracker: Tracker,
    version: ModelVersion,
    assessment: Assessment,
    reports: tuple[bytes, bytes],
    warnings: list[str],
) -> str | None:
    # A run of its own per pass, not artifacts on the model's training run: the training run stays as
    # it was evaluated, and the passes line up as runs whose metrics MLflow can chart over time.
    run_id: str | None = None
    try:
        run_id = tracker.start_run(
            f"monitor {version.name} v{version.version}",
            kind="monitoring",  # its own experiment, <training experiment>/monitoring (decision 0064)
            tags={
                "driftloop.model": version.name,
                "driftloop.model_version": str(version.version),
                "driftloop.model_run": version.run_id or "",
                "driftloop.decision": assessment.decision,
            },
        )
        performance = assessment.performance or {}
        current = performance.get("current")
        metric = f"window_{performance.get('metric', 'metric')}"
        tracker.log_metrics(
            run_id,
            {
                "drift_share": assessment.dataset.share,
                "rows": float(assessment.rows),
                "drifted_features": float(len(assessment.dataset.drifted_features)),
                "quality_alarms": float(len(assessment.quality["alarms"])),
                metric: current if isinstance(current, int | float) else None,
            },
        )
        tracker.log_bytes(run_id, "monitoring/report.json", reports[0])
        tracker.log_bytes(run_id, "monitoring/report.html", reports[1])
        tracker.end_run(run_id)
    except DriftloopError as exc:
        warnings.append(f"the report was not logged to MLflow: {exc.headline}")
        _log.warning("monitoring report not logged to MLflow: %s", exc.headline)
        if run_id is not None:
            with contextlib.suppress(DriftloopError):
                tracker.end_run(run_id, failed=True)
        return None
    return run_id


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: strict JSON, and what PostgreSQL's JSONB accepts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@contextlib.contextmanager
def _compaction_hint(store: ObjectStore) -> Iterator[None]:
    """The window reads Parquet only (decision 0050): a data error names shipped segments not in it yet."""
    try:
        yield
    except DataError as exc:
        waiting = sum(1 for _ in store.list(LANDING))
        if not waiting:
            raise
        raise DataError(
            f"{exc}; {waiting} shipped capture segment(s) are not compacted yet: "
            "run `driftloop capture compact`, then monitor again"
        ) from exc
