"""The service's request metrics expose what prometheus_client's own Counter and Histogram would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from driftloop.serving.metrics import _LATENCY_BUCKETS, ServiceMetrics
from driftloop.serving.model import ModelHolder


def _lines(text: bytes, prefix: str) -> list[str]:
    """The family's samples, without the optional ``_created`` timestamps (ours has none)."""
    return sorted(
        line for line in text.decode().splitlines() if line.startswith(prefix) and "_created" not in line
    )


def test_request_counts_and_latency_buckets_match_prometheus_client() -> None:
    observations = [
        ("/v1/predict", 200, 0.0004),
        ("/v1/predict", 200, 0.001),
        ("/v1/predict", 422, 0.0011),
        ("/invocations", 200, 0.02),
        ("/nowhere", 404, 3.0),
        ("/v1/predict", 200, 2.5),
        ("/health", 200, 0.0),
    ]
    ours = ServiceMetrics(ModelHolder(), None)
    registry = CollectorRegistry()
    requests = Counter("driftloop_requests_total", "HTTP requests", ["path", "status"], registry=registry)
    latency = Histogram(
        "driftloop_request_seconds", "Request latency", ["path"], registry=registry, buckets=_LATENCY_BUCKETS
    )
    for path, status, seconds in observations:
        ours.observe(path, status, seconds)
        label = "other" if path == "/nowhere" else path
        requests.labels(label, str(status)).inc()
        latency.labels(label).observe(seconds)
    text, _ = ours.render()
    reference = generate_latest(registry)
    for family in ("driftloop_requests_total{", "driftloop_request_seconds_"):
        assert _lines(text, family) == _lines(reference, family)
    assert 'driftloop_request_seconds_bucket{le="0.001",path="/v1/predict"} 2.0' in text.decode()
