"""The HTML report, the stored decisions and the Prometheus gauges of a monitoring pass."""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from driftloop.core.profile import build_profile
from driftloop.monitoring.assess import Assessment, assess
from driftloop.monitoring.history import decision_history, record_decision
from driftloop.monitoring.report import prometheus_text, render_html, summarize
from driftloop.monitoring.window import CaptureChunk
from driftloop.settings import MonitoringSettings
from driftloop.storage.metadata import open_metadata

if TYPE_CHECKING:
    from driftloop.monitoring.history import MonitorDecision

EVIL = "<script>alert('x')</script>"
CFG = MonitoringSettings(min_labels=50)
T0 = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)


def _assessment() -> Assessment:
    """x drifts, y does not; the categorical feature has a hostile category in the window."""
    rng = np.random.default_rng(0)
    n = 2000
    reference = {
        "x": rng.normal(0, 1, n),
        "y": rng.normal(5, 2, n),
        "kind": rng.choice(np.array(["a", "b"], dtype=object), n),
    }
    profile = build_profile(reference, numeric=["x", "y"], categorical=["kind"], scores=rng.uniform(0, 1, n))
    kind = rng.choice(np.array(["a", "b"], dtype=object), n)
    kind[:300] = EVIL
    current = {"x": rng.normal(1.0, 1, n), "y": rng.normal(5, 2, n), "kind": kind}
    ts = np.datetime64("2026-01-10T00:00:00", "us") + np.arange(n).astype("timedelta64[s]")
    chunk = CaptureChunk.from_columns(current, rng.uniform(0, 1, n), ts=ts)
    labels = {str(i): float(rng.uniform() < 0.3) for i in range(n)}
    return assess(profile, [chunk], schema=(), cfg=CFG, labels=labels, evaluation={"roc_auc": 0.9})


def _earlier(decision: str, share: float, day: int) -> MonitorDecision:
    from driftloop.monitoring.history import MonitorDecision

    at = T0 - dt.timedelta(days=day)
    return MonitorDecision(
        id=day,
        model="m",
        version=1,
        start=at - dt.timedelta(days=1),
        end=at,
        decision=decision,
        reasons=(f"reason {EVIL}",),
        summary={"drift_share": share, "performance": {"current": 0.8}},
        report_uri="file:///r",
        created_at=at,
    )


def test_html_is_self_contained_escaped_and_has_one_chart_per_feature() -> None:
    a = _assessment()
    assert {f.name for f in a.features if f.drifted} >= {"x"}
    page = render_html(a, [_earlier("OK", 0.0, 2), _earlier("WARN", 0.33, 1)], title=f"model {EVIL}")
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page  # neither the category, the title nor a reason leaked markup
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert not re.search(r"\b(src|href)=", page)  # nothing is loaded from anywhere
    assert page.count('class="feature-chart"') == len(a.features) == 3
    assert page.count('class="prediction-chart"') == 1
    assert page.count('class="trend-chart"') == 1
    assert page.count('class="performance-chart"') == 1  # the history and this pass carry performance
    assert a.decision in page
    for reason in a.reasons:
        assert html.escape(reason) in page


def test_html_without_history_or_labels() -> None:
    a = _assessment()
    bare = Assessment(**{**a.__dict__, "performance": None})
    page = render_html(bare)
    assert page.count('class="trend-chart"') == 1
    assert "performance-chart" not in page
    assert "No labels were read" in page


def test_prometheus_gauges_one_per_state() -> None:
    a = _assessment()
    text = prometheus_text(a, model="plant", version=3, at=T0).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    states = {
        dict(labels)["state"]: value
        for (name, labels), value in samples.items()
        if name == "driftloop_monitor_decision"
    }
    assert states == {s: float(s == a.decision) for s in ("OK", "WARN", "DRIFT", "DECAY", "INSUFFICIENT")}
    base = (("model", "plant"), ("version", "3"))
    assert samples[("driftloop_monitor_rows", base)] == a.rows
    assert samples[("driftloop_monitor_drift_share", base)] == a.dataset.share


def test_decisions_round_trip_oldest_first(db_url: str) -> None:
    db = open_metadata(db_url)
    try:
        a = _assessment()
        for day in (3, 1, 2):
            record_decision(
                db,
                model="m",
                version=day,
                start=T0,
                end=T0 + dt.timedelta(days=day),
                decision=a.decision,
                reasons=a.reasons,
                summary=summarize(a),
                report_uri=f"s3://b/monitoring/m/{day}/report.html",
                created_at=T0 + dt.timedelta(days=day),
            )
        record_decision(
            db,
            model="other",
            version=1,
            start=T0,
            end=T0 + dt.timedelta(days=1),
            decision="OK",
            reasons=(),
            summary={},
            report_uri="x",
            created_at=T0,
        )
        history = decision_history(db, "m", limit=2)
        assert [h.version for h in history] == [2, 3]
        assert history[-1].summary["drifted_features"] == list(a.dataset.drifted_features)
        assert history[-1].reasons == a.reasons
        assert history[-1].end.tzinfo is not None
    finally:
        db.dispose()
