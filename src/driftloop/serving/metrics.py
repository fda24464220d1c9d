"""Prometheus metrics of the service: requests by status, latency, model version, capture, fallbacks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from collections.abc import Mapping

    from driftloop.serving.model import ModelHolder

__all__ = ["ServiceMetrics"]

_PATHS = {"/v1/predict", "/invocations", "/v1/feedback", "/health", "/ready", "/v1/model", "/metrics"}


class ServiceMetrics:
    """One registry per app (tests create many apps in one process)."""

    def __init__(self, holder: ModelHolder, capture: Any | None) -> None:
        self.registry = CollectorRegistry()
        self._holder = holder
        self._capture = capture
        r = self.registry
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        self.requests = Counter("driftloop_requests_total", "HTTP requests", ["path", "status"], registry=r)
        self.latency = Histogram(
            "driftloop_request_seconds", "Request latency", ["path"], registry=r,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )  # fmt: skip
        self.fallbacks = Counter(
            "driftloop_fallbacks_total", "Predictions answered by the fallback model", registry=r
        )
        self.invalid_fields = Counter(
            "driftloop_invalid_fields_total", "Fields rejected with 422", registry=r
        )
        sizes = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
        self.batch_requests = Histogram(
            "driftloop_batch_requests", "Requests per model call (micro-batching)", registry=r, buckets=sizes
        )
        self.batch_rows = Histogram("driftloop_batch_rows", "Rows per model call", registry=r, buckets=sizes)
        self.model_version = Gauge("driftloop_model_version", "Serving model version", ["model"], registry=r)
        self.swaps = Gauge("driftloop_model_swaps", "Model installs since start", registry=r)
        self.load_failures = Gauge(
            "driftloop_model_load_failures", "Versions that failed to load", registry=r
        )
        self.capture_pending = Gauge(
            "driftloop_capture_pending_bytes", "Captured bytes not yet shipped", registry=r
        )
        self.capture_shipped = Gauge(
            "driftloop_capture_shipped_records", "Captured records shipped", registry=r
        )
        self.capture_failures = Gauge(
            "driftloop_capture_ship_failures", "Failed shipping attempts", registry=r
        )
        self.capture_rejected = Gauge(
            "driftloop_capture_rejected", "Predictions refused (503) because the capture buffer was full",
            registry=r,
        )  # fmt: skip

    def observe_batch(self, requests: int, rows: int) -> None:
        self.batch_requests.observe(requests)
        self.batch_rows.observe(rows)

    def observe(self, path: str, status: int, seconds: float) -> None:
        label = path if path in _PATHS else "other"  # keyed by label: unknown paths cannot grow the cache
        children = self._children.get((label, status))
        if children is None:  # labels() takes a lock and builds a key: once per (path, status), not per call
            children = (self.requests.labels(label, str(status)), self.latency.labels(label))
            self._children[label, status] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> tuple[bytes, str]:
        current = self._holder.current
        if current is not None:
            self.model_version.labels(current.name).set(current.version)
        self.swaps.set(self._holder.swaps)
        self.load_failures.set(self._holder.load_failures)
        if self._capture is not None:
            stats: Mapping[str, Any] = self._capture.stats()
            self.capture_pending.set(float(stats.get("pending_bytes", 0)))
            self.capture_shipped.set(float(stats.get("shipped_records", 0)))
            self.capture_failures.set(float(stats.get("failures", 0)))
            self.capture_rejected.set(float(stats.get("rejected", 0)))
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
