"""The dashboard's data functions on hand-made rows: summaries of every shape, report thresholds, shadow
evidence, Prometheus text and its percentiles, the Basic-to-Bearer translation."""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from driftloop.core.triggers import TriggerState
from driftloop.dashboard import charts
from driftloop.dashboard.app import bearer
from driftloop.dashboard.sources import drift_series, report_thresholds, shadow_comparisons
from driftloop.dashboard.traffic import parse_metrics, quantile
from driftloop.monitoring.history import MonitorDecision
from driftloop.monitoring.live import SHADOW_EVIDENCE
from driftloop.scheduling.ledger import Trigger

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def _decision(i: int, summary: dict[str, object], decision: str = "OK") -> MonitorDecision:
    end = T0 + timedelta(days=i + 1)
    return MonitorDecision(
        id=i,
        model="m",
        version=1,
        start=(end - timedelta(days=1)).replace(tzinfo=None),  # SQLite hands back naive datetimes
        end=end.replace(tzinfo=None),
        decision=decision,
        reasons=("why",),
        summary=summary,
        report_uri=f"/store/monitoring/m/2026010{i}T000000.000000Z/report.html",
        created_at=end,
    )


def test_every_summary_shape_gives_the_score_and_the_threshold_where_recorded() -> None:
    history = [
        # Today's shape: a score per feature, no threshold (the report has it).
        _decision(
            0, {"feature_scores": {"torque_nm": 0.05}, "drift_share": 0.0, "drift_share_threshold": 0.5}
        ),
        # Scores with thresholds beside them.
        _decision(1, {"feature_scores": {"torque_nm": 0.2}, "feature_thresholds": {"torque_nm": 0.1}}),
        # A record per feature.
        _decision(2, {"feature_scores": {"torque_nm": {"score": 0.3, "threshold": 0.15, "method": "psi"}}}),
        # A list of feature results, as the report writes them; a non-number score is skipped.
        _decision(3, {"features": [{"name": "torque_nm", "score": 0.4, "threshold": 0.1, "drifted": True}]}),
        _decision(4, {"feature_scores": {"torque_nm": "n/a"}}),
    ]
    reports = {
        history[0].report_uri: {"features": {"torque_nm": {"threshold": 0.12, "method": "wasserstein"}}}
    }
    features, prediction, share = drift_series(history, lambda d: reports.get(d.report_uri, {}))
    [torque] = features
    assert [p.score for p in torque.points] == [0.05, 0.2, 0.3, 0.4]
    assert [p.threshold for p in torque.points] == [0.12, 0.1, 0.15, 0.1]
    assert [p.method for p in torque.points] == ["wasserstein", None, "psi", None]
    assert [p.drifted for p in torque.points] == [False, False, False, True]
    assert all(p.window_end.tzinfo is UTC for p in torque.points)  # naive rows read as UTC
    assert prediction.points == ()
    assert [(p.score, p.threshold) for p in share] == [(0.0, 0.5)]


def test_the_prediction_series_reads_its_score_and_the_reports_threshold() -> None:
    history = [_decision(0, {"prediction_score": 0.3, "prediction_drifted": True})]
    _, prediction, _ = drift_series(history, lambda d: {"prediction": {"threshold": 0.1, "method": "ks"}})
    [point] = prediction.points
    assert (point.score, point.threshold, point.method, point.drifted) == (0.3, 0.1, "ks", True)
    chart = charts.drift_chart(prediction)
    assert [trace["name"] for trace in chart["data"]] == ["score", "threshold", "drifted"]
    assert chart["layout"]["xaxis"]["title"]["text"] == "monitored period end (UTC)"


def test_a_recorded_period_places_the_pass_and_a_malformed_one_falls_back_to_the_window() -> None:
    day = {"start": "2030-03-01T00:00:00+00:00", "end": "2030-03-02T00:00:00"}  # a naive end reads as UTC
    scores = {"feature_scores": {"torque_nm": 0.1}}
    replayed, malformed = (
        _decision(0, {**scores, "period": day}),
        _decision(1, {**scores, "period": {"end": 3}}),
    )
    assert replayed.period == (datetime(2030, 3, 1, tzinfo=UTC), datetime(2030, 3, 2, tzinfo=UTC))
    assert malformed.period == (malformed.start, malformed.end)
    [torque], _, _ = drift_series([replayed, malformed])
    assert [p.window_end for p in torque.points] == [datetime(2030, 3, 2, tzinfo=UTC), T0 + timedelta(days=2)]
    timeline = charts.decision_timeline([replayed])
    assert timeline["data"][0]["x"] == [charts.when(datetime(2030, 3, 2, tzinfo=UTC))]


def test_thresholds_come_from_the_json_report_beside_the_html_one_and_a_missing_one_costs_only_the_line() -> (
    None
):
    decision = _decision(0, {})
    document = {
        "features": [{"name": "torque_nm", "threshold": 0.1, "method": "wasserstein"}],
        "prediction": {"threshold": 0.2, "method": "wasserstein"},
    }
    read: dict[str, bytes] = {
        "monitoring/m/20260100T000000.000000Z/report.json": json.dumps(document).encode()
    }
    found = report_thresholds(lambda key: read[key], decision)
    assert found["features"] == {"torque_nm": {"threshold": 0.1, "method": "wasserstein"}}
    assert found["prediction"]["threshold"] == 0.2
    assert report_thresholds(lambda key: read["nothing"], decision) == {}


def test_shadow_evidence_is_read_from_the_triggers_detail() -> None:
    evidence = {
        "champion_version": 1,
        "challenger_version": 2,
        "labelled": 240,
        "brier_difference": [-0.02, 0.004],
        "challenger_brier": 0.05,
        "champion_brier": 0.06,
        "margin": 0.01,
        "pending": False,
    }
    check = {"name": SHADOW_EVIDENCE, "passed": True, "detail": "no worse", "evidence": evidence}
    common = {"model": "m", "kind": "drift", "reason": "r", "mode": "automated", "decision_id": None}
    times = {"created_at": T0, "updated_at": T0, "pipeline_run": "run-1", "shadow_since": T0}
    triggers = [
        Trigger(
            id=1,
            state=TriggerState.PROMOTED,
            candidate_version=2,
            detail={SHADOW_EVIDENCE: check},
            **common,
            **times,
        ),
        Trigger(id=2, state=TriggerState.KEPT, candidate_version=3, detail={}, **common, **times),
    ]
    [found] = shadow_comparisons(triggers)
    assert (found.trigger, found.challenger, found.champion, found.passed) == (1, 2, 1, True)
    assert found.difference == (-0.02, 0.004)
    assert charts.shadow_chart([found])["data"][0]["y"] == [0.05]


METRICS = """\
# HELP driftloop_requests_total HTTP requests
# TYPE driftloop_requests_total counter
driftloop_requests_total{path="/v1/predict",status="200"} 90.0
driftloop_requests_total{path="/v1/predict",status="422"} 6.0
driftloop_requests_total{path="/v1/predict",status="401"} 4.0
# HELP driftloop_request_seconds Request latency
# TYPE driftloop_request_seconds histogram
driftloop_request_seconds_bucket{le="0.001",path="/v1/predict"} 0.0
driftloop_request_seconds_bucket{le="0.01",path="/v1/predict"} 50.0
driftloop_request_seconds_bucket{le="0.1",path="/v1/predict"} 100.0
driftloop_request_seconds_bucket{le="+Inf",path="/v1/predict"} 100.0
driftloop_request_seconds_count{path="/v1/predict"} 100.0
driftloop_request_seconds_sum{path="/v1/predict"} 1.5
# HELP driftloop_fallbacks_total Predictions answered by the fallback model
# TYPE driftloop_fallbacks_total counter
driftloop_fallbacks_total 3.0
# HELP driftloop_model_version Serving model version
# TYPE driftloop_model_version gauge
driftloop_model_version{model="m"} 2.0
"""


def test_metrics_text_gives_requests_percentiles_fallbacks_and_refusals() -> None:
    traffic = parse_metrics("http://x/metrics", METRICS)
    assert traffic.reachable
    assert traffic.requests[("/v1/predict", "422")] == 6.0
    assert traffic.counters["driftloop_fallbacks_total"] == 3.0
    assert traffic.counters["driftloop_model_version"] == 2.0
    assert traffic.refusals() == {"invalid input": 6.0, "unauthenticated": 4.0}
    p50, p90 = traffic.latency["/v1/predict"][0.5], traffic.latency["/v1/predict"][0.9]
    assert p50 == pytest.approx(0.01)  # the 50th of 100 is the last of the (0.001, 0.01] bucket
    assert p90 == pytest.approx(0.01 + 0.09 * 40 / 50)


def test_quantiles_follow_prometheus_histogram_quantile() -> None:
    buckets = [(0.1, 0.0), (0.2, 10.0), (math.inf, 20.0)]
    assert quantile(0.25, buckets) == pytest.approx(0.15)
    assert quantile(0.99, buckets) == 0.2  # in the +Inf bucket: the largest finite bound
    assert math.isnan(quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]))


def test_basic_credentials_carry_the_token_as_password_or_user_and_bearer_passes_unchanged() -> None:
    def basic(text: str) -> str:
        return "Basic " + base64.b64encode(text.encode()).decode()

    assert bearer(basic("anyone:dl_secret")) == "Bearer dl_secret"
    assert bearer(basic("dl_secret:")) == "Bearer dl_secret"
    assert bearer("Bearer dl_x") == "Bearer dl_x"
    assert bearer(None) is None
    assert bearer("Basic !!!") == "Basic (malformed)"
