"""The dashboard's pages: for each, the data it reads and its HTML. A page and its JSON endpoint
(``/api/<page>``) come from one :class:`Page`, so what the browser draws is what the API returns.

A source that cannot be read (MLflow down, a model not registered yet) is a warning line in its section,
never a failed page: the other sections still show what they can.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from driftloop.dashboard import charts, sources
from driftloop.dashboard.html import chart, note, table
from driftloop.dashboard.traffic import QUANTILES, scrape
from driftloop.errors import DriftloopError

if TYPE_CHECKING:
    from collections.abc import Callable

    from driftloop.monitoring.history import MonitorDecision
    from driftloop.registry import Registry
    from driftloop.settings import Settings
    from driftloop.storage import ObjectStore
    from driftloop.storage.metadata import Database

__all__ = ["Page", "Views"]

_KEY_METRICS = ("roc_auc", "pr_auc", "f1", "brier", "accuracy")
_REPORTS_CACHED = 512  # thresholds of this many monitoring reports kept in memory (reports never change)


@dataclass
class Page:
    """A rendered page: its title, its HTML body and the same data as JSON-ready values."""

    title: str
    body: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    charts: int = 0

    def add(self, html: str) -> None:
        self.body += html

    def plot(self, figure: dict[str, Any]) -> None:
        self.charts += 1
        self.body += chart(figure, self.charts)

    def failed(self, what: str, exc: DriftloopError) -> None:
        self.body += note(f"{what}: {exc.headline}", kind="warn")
        self.data.setdefault("errors", []).append({"source": what, "error": exc.headline})


class Views:
    """The pages over one platform: its metadata database, registry and store, and the service whose
    ``/metrics`` the traffic page reads (``service_url``)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        registry: Registry,
        store: ObjectStore,
        service_url: str,
    ) -> None:
        self.settings = settings
        self.db = db
        self.registry = registry
        self.store = store
        self.service_url = service_url
        self._reports: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._reports_lock = threading.Lock()  # pages are built in the server's worker threads

    def render(self, name: str, model: str, authorization: str | None) -> Page:
        """Page ``name`` (a key of :data:`driftloop.dashboard.html.PAGES` without its slash) of ``model``."""
        builders: dict[str, Callable[[str], Page]] = {
            "models": self.models,
            "traffic": lambda _model: self.traffic(authorization),
            "drift": self.drift,
            "decisions": self.decisions,
            "triggers": self.triggers,
            "retrainings": self.retrainings,
            "shadow": self.shadow,
            "guards": self.guards,
        }
        return builders[name](model)

    def models(self, model: str) -> Page:
        page = Page("Models")
        try:
            versions = sources.versions(self.registry, self.db, model)
            entries = sources.audit_entries(self.db, model)
        except DriftloopError as exc:
            page.failed("registry", exc)
            return page
        page.data = {"versions": _json(versions), "audit": _json(entries)}
        page.plot(charts.audit_timeline(entries, versions))
        page.add("<h2>Versions</h2>")
        page.add(
            table(
                ("version", "stage (audit)", "aliases", "metrics", "created (UTC)", "lineage", "made by"),
                (
                    (
                        f"v{v.version}",
                        v.stage,
                        ", ".join(v.aliases) or "-",
                        "  ".join(f"{k} {v.metrics[k]:.4g}" for k in _key_metrics(v.metrics)) or "-",
                        charts.when(v.created_at),
                        "; ".join(f"{k} {val}" for k, val in v.lineage.items()) or "-",
                        f"trigger {v.trigger}" if v.trigger else "-",
                    )
                    for v in versions
                ),
                empty=f"{model} has no versions",
            )
        )
        page.add("<h2>Audit history</h2>")
        page.add(
            table(
                ("at (UTC)", "version", "action", "move", "outcome", "by", "why"),
                (
                    (charts.when(a.at), f"v{a.version}", a.action, a.move, a.outcome, a.actor, a.why)
                    for a in reversed(entries)
                ),
                empty="no stage change recorded",
            )
        )
        return page

    def traffic(self, authorization: str | None) -> Page:
        page = Page("Live traffic")
        seen = scrape(self.service_url, authorization)
        page.data = {
            "url": seen.url,
            "reachable": seen.reachable,
            "reason": seen.reason,
            "requests": [{"path": p, "status": s, "count": c} for (p, s), c in sorted(seen.requests.items())],
            "latency_seconds": {
                p: {f"p{q * 100:g}": v for q, v in per.items()} for p, per in seen.latency.items()
            },
            "counters": seen.counters,
            "refusals": seen.refusals(),
        }
        if not seen.reachable:
            page.add(note(seen.reason, kind="warn"))
            return page
        version = seen.counters.get("driftloop_model_version")
        serving = f"serving v{version:g}" if version is not None else "no model loaded"
        total = sum(seen.requests.values())
        percentiles = ", ".join(f"p{q * 100:g}" for q in QUANTILES)
        page.add(
            note(f"{seen.url}: {serving}; {total:,.0f} requests since it started (latency {percentiles})")
        )
        page.plot(charts.requests_chart(seen))
        if seen.latency:
            page.plot(charts.latency_chart(seen))
        page.plot(charts.outcomes_chart(seen))
        return page

    def drift(self, model: str) -> Page:
        page = Page("Drift over time")
        try:
            history = sources.decisions(self.db, model)
        except DriftloopError as exc:
            page.failed("monitoring decisions", exc)
            return page
        features, prediction, share = sources.drift_series(history, self._thresholds)
        page.data = {
            "features": _json(features),
            "prediction": _json(prediction),
            "drift_share": _json(share),
        }
        if not history:
            page.add(note(f"no monitoring pass recorded for {model} (driftloop monitor)"))
            return page
        if share:
            page.plot(charts.share_chart(share))
        if prediction.points:
            page.plot(charts.drift_chart(prediction, title="prediction"))
        page.add('<h2>Features</h2><div class="grid">')
        for series in features:
            page.plot(charts.drift_chart(series))
        page.add("</div>")
        return page

    def decisions(self, model: str) -> Page:
        return _listing(
            "Monitoring decisions",
            ("monitoring decisions", lambda: sources.decisions(self.db, model)),
            key="decisions",
            empty=f"no monitoring pass recorded for {model} (driftloop monitor)",
            draw=charts.decision_timeline,
            columns=("period (UTC)", "version", "decision", "rows", "reasons"),
            row=lambda d: (
                f"{charts.when(d.period[0])} → {charts.when(d.period[1])}",
                f"v{d.version}",
                d.decision,
                d.summary.get("rows", "-"),
                "; ".join(d.reasons),
            ),
        )

    def triggers(self, model: str) -> Page:
        return _listing(
            "Triggers",
            ("loop ledger", lambda: sources.triggers(self.db, model)),
            key="triggers",
            empty=f"no trigger recorded for {model}",
            draw=charts.trigger_chart,
            columns=("id", "at (UTC)", "kind", "mode", "state", "decision", "why"),
            row=lambda t: (
                t.id,
                charts.when(t.created_at),
                t.kind,
                t.mode,
                t.state.value,
                t.decision_id or "-",
                str(t.detail.get("why") or t.reason),
            ),
        )

    def retrainings(self, model: str) -> Page:
        return _listing(
            "Retrainings",
            ("loop ledger", lambda: sources.retrainings(sources.triggers(self.db, model))),
            key="retrainings",
            empty=f"no retraining started for {model}",
            draw=charts.retraining_chart,
            columns=(
                "trigger",
                "started (UTC)",
                "last change (UTC)",
                "pipeline run",
                "candidate",
                "outcome",
                "why",
            ),
            row=lambda t: (
                t.id,
                charts.when(t.created_at),
                charts.when(t.updated_at),
                t.pipeline_run,
                f"v{t.candidate_version}" if t.candidate_version else "-",
                t.state.value,
                str(t.detail.get("why") or "-"),
            ),
        )

    def shadow(self, model: str) -> Page:
        return _listing(
            "Shadow comparisons",
            ("loop ledger", lambda: sources.shadow_comparisons(sources.triggers(self.db, model))),
            key="comparisons",
            empty=f"no candidate of {model} has been compared in shadow yet",
            draw=charts.shadow_chart,
            columns=("trigger", "challenger", "champion", "labelled", "verdict", "detail"),
            row=lambda c: (
                c.trigger,
                f"v{c.challenger}",
                f"v{c.champion}",
                c.labelled,
                "pending" if c.pending else ("passed" if c.passed else "failed"),
                c.detail,
            ),
        )

    def guards(self, model: str) -> Page:
        margin = self.settings.policy.guard_margin
        return _listing(
            "Rollback guards",
            ("loop ledger", lambda: sources.guards(self.db, model)),
            key="guards",
            extra={"margin": margin},
            empty=f"no rollback guard has watched {model} yet",
            draw=lambda found: charts.guard_chart(found, margin),
            columns=(
                "version",
                "previous",
                "baseline",
                "state",
                "until (UTC)",
                "requests",
                "error rate",
                "verdict",
            ),
            row=lambda g: (
                f"v{g.version}",
                f"v{g.previous_version}" if g.previous_version else "-",
                f"{g.baseline:.4f}",
                g.state,
                charts.when(g.until),
                g.verdict.get("requests", "-"),
                _rate(g.verdict.get("error_rate")),
                "; ".join(g.verdict.get("reasons", [])) or str(g.verdict.get("note", "")) or "-",
            ),
        )

    def _thresholds(self, decision: MonitorDecision) -> dict[str, Any]:
        """The thresholds of ``decision``'s pass, from its report (read once, then remembered)."""
        key = decision.report_uri
        with self._reports_lock:
            found = self._reports.get(key)
        if found is None:  # two threads may both read it: the same bytes, harmless
            found = sources.report_thresholds(self.store.read_bytes, decision)
            with self._reports_lock:
                self._reports[key] = found
                if len(self._reports) > _REPORTS_CACHED:
                    self._reports.popitem(last=False)
        return found


def _listing(
    title: str,
    source: tuple[str, Callable[[], list[Any]]],
    *,
    key: str,
    empty: str,
    draw: Callable[[list[Any]], dict[str, Any]],
    columns: tuple[str, ...],
    row: Callable[[Any], tuple[Any, ...]],
    extra: dict[str, Any] | None = None,
) -> Page:
    """A page listing one kind of record read from ``source`` (its name, its reader): a chart of them,
    then a table, newest first; ``data[key]`` (plus ``extra``) is what the page shows."""
    page = Page(title)
    name, read = source
    try:
        found = read()
    except DriftloopError as exc:
        page.failed(name, exc)
        return page
    page.data = {key: _json(found), **(extra or {})}
    if not found:
        page.add(note(empty))
        return page
    page.plot(draw(found))
    page.add(table(columns, (row(item) for item in reversed(found))))
    return page


def _key_metrics(metrics: dict[str, float]) -> list[str]:
    """The hold-out metrics a version's row shows: the ones promotion and decay judge first."""
    preferred = [k for k in _KEY_METRICS if k in metrics]
    return (preferred + sorted(k for k in metrics if k not in preferred))[:4]


def _rate(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "-"


def _json(value: Any) -> Any:
    """Dataclasses (and lists of them) as plain dicts; orjson writes the datetimes and enums."""
    if isinstance(value, list):
        return [_json(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value
