"""Prometheus metrics of the service: requests by status, latency, model version, capture, fallbacks.

With several workers (``serving.worker_metrics``) every worker writes its metrics to files of a shared
directory and ``GET /metrics`` merges them: each gauge says how (``multiprocess_mode``): "sum" for counts
since the service started (a replaced worker's stay), "livesum"/"livemin" for the state of the workers
running now, "liveall" for the model version (one series per worker, with a ``pid`` label, so a swap
half done shows). One process: the same metrics, from this process's registry as before.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from driftloop.serving.worker_metrics import PublishedValues, check_multiprocess, merged

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from prometheus_client.metrics_core import Metric

    from driftloop.serving.model import ModelHolder

__all__ = ["ServiceMetrics"]

_PATHS = {
    "/v1/predict",
    "/invocations",
    "/ping",
    "/version",
    "/v1/feedback",
    "/health",
    "/ready",
    "/v1/model",
    "/metrics",
}
_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BOUNDS = (*map(floatToGoString, _LATENCY_BUCKETS), "+Inf")
_REQUESTS_HELP = "HTTP requests"
_LATENCY_HELP = "Request latency"


class _Requests(Collector):
    """``driftloop_requests_total{path,status}`` and ``driftloop_request_seconds{path}``, counted in
    plain integers by the event loop's thread and turned into Prometheus families when scraped.

    prometheus_client's Counter and Histogram take a lock per update and scan the buckets; at
    thousands of requests a second that was ~5 % of a request. Only the event loop observes
    requests (``serving.observed``), so the counts need no lock; a scrape runs on that loop too.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = {}
        self.buckets: dict[str, list[int]] = {}  # per path: observations per bucket (last: +Inf)
        self.sums: dict[str, float] = {}

    def observe(self, label: str, status: int, seconds: float) -> None:
        key = (label, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        buckets = self.buckets.get(label)
        if buckets is None:
            buckets = self.buckets[label] = [0] * (len(_LATENCY_BUCKETS) + 1)
            self.sums[label] = 0.0
        buckets[bisect_left(_LATENCY_BUCKETS, seconds)] += 1  # the first bound >= seconds: "le"
        self.sums[label] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("driftloop_requests", _REQUESTS_HELP, labels=["path", "status"])
        for (label, status), count in sorted(self.counts.items()):
            requests.add_metric([label, str(status)], count)
        yield requests
        latency = HistogramMetricFamily("driftloop_request_seconds", _LATENCY_HELP, labels=["path"])
        for label, counts in sorted(self.buckets.items()):
            cumulative, total = [], 0
            for bound, count in zip(_BOUNDS, counts, strict=True):
                total += count
                cumulative.append((bound, total))
            latency.add_metric([label], cumulative, self.sums[label])
        yield latency

    def publish(self, published: PublishedValues) -> None:
        """This process's counts so far into its multiprocess files (on the event loop's thread)."""
        for (label, status), count in self.counts.items():
            labels = {"path": label, "status": str(status)}
            published.set("driftloop_requests_total", labels, count, kind="counter", help_text=_REQUESTS_HELP)
        latency = {"kind": "histogram", "help_text": _LATENCY_HELP}
        for label, counts in self.buckets.items():
            for bound, count in zip(_BOUNDS, counts, strict=True):
                bucket = {"path": label, "le": bound}
                published.set("driftloop_request_seconds_bucket", bucket, count, **latency)
            published.set("driftloop_request_seconds_sum", {"path": label}, self.sums[label], **latency)


class ServiceMetrics:
    """One registry per app (tests create many apps in one process). With ``multiprocess_dir`` (the
    ``PROMETHEUS_MULTIPROC_DIR`` of ``serve --workers N``, set before prometheus_client was imported),
    :meth:`render` answers for every worker: call :meth:`publish` every
    :data:`~driftloop.serving.worker_metrics.PUBLISH_INTERVAL_S` and when the worker stops."""

    def __init__(
        self, holder: ModelHolder, capture: Any | None, *, multiprocess_dir: Path | None = None
    ) -> None:
        if multiprocess_dir is not None:
            check_multiprocess(multiprocess_dir)
        self.multiprocess_dir = multiprocess_dir
        self._published = PublishedValues() if multiprocess_dir is not None else None
        self.registry = CollectorRegistry()
        self._holder = holder
        self._capture = capture
        r = self.registry
        self._requests = _Requests()
        r.register(self._requests)
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
        self.model_version = Gauge(
            "driftloop_model_version",
            "Serving model version",
            ["model"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.swaps = Gauge(
            "driftloop_model_swaps", "Model installs since start", registry=r, multiprocess_mode="sum"
        )
        self.load_failures = Gauge(
            "driftloop_model_load_failures",
            "Versions that failed to load",
            registry=r,
            multiprocess_mode="sum",
        )
        self.capture_pending = Gauge(
            "driftloop_capture_pending_bytes",
            "Captured bytes not yet shipped",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.capture_shipped = Gauge(
            "driftloop_capture_shipped_records",
            "Captured records shipped",
            registry=r,
            multiprocess_mode="sum",
        )
        self.capture_landed = Gauge(
            "driftloop_capture_landed_segments",
            "Shipped capture segments not yet compacted to Parquet",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.capture_failures = Gauge(
            "driftloop_capture_ship_failures", "Failed shipping attempts", registry=r, multiprocess_mode="sum"
        )
        self.capture_reachable = Gauge(
            "driftloop_capture_store_reachable",
            "1 while the capture shipper reaches the object store, 0 in an outage (captures buffer locally)",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.capture_outages = Gauge(
            "driftloop_capture_store_outages",
            "Times the object store stopped answering the shipper",
            registry=r,
            multiprocess_mode="sum",
        )
        self.capture_rejected = Gauge(
            "driftloop_capture_rejected",
            "Predictions refused (503) because the capture buffer was full",
            registry=r,
            multiprocess_mode="sum",
        )

    def observe_batch(self, requests: int, rows: int) -> None:
        self.batch_requests.observe(requests)
        self.batch_rows.observe(rows)

    def observe(self, path: str, status: int, seconds: float) -> None:
        """One HTTP request (on the event loop's thread); unknown paths count as "other"."""
        self._requests.observe(path if path in _PATHS else "other", status, seconds)

    def render(self) -> tuple[bytes, str]:
        """Prometheus text of this process, or with several workers of all of them."""
        if self.multiprocess_dir is None:
            self._refresh()
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        self.publish()
        return merged(self.multiprocess_dir), CONTENT_TYPE_LATEST

    def publish(self) -> None:
        """With several workers: this worker's current numbers into its files (on the event loop's
        thread, where the request counts are kept). Nothing to do in one process."""
        if self._published is not None:
            self._refresh()
            self._requests.publish(self._published)

    def _refresh(self) -> None:
        """The gauges read from the model holder and the capture store, as they are now."""
        current = self._holder.current
        if current is not None:
            self.model_version.labels(current.name).set(current.version)
        self.swaps.set(self._holder.swaps)
        self.load_failures.set(self._holder.load_failures)
        if self._capture is not None:
            stats: Mapping[str, Any] = self._capture.stats()
            self.capture_pending.set(float(stats.get("pending_bytes", 0)))
            self.capture_shipped.set(float(stats.get("shipped_records", 0)))
            self.capture_landed.set(float(stats.get("landed_segments", 0)))
            self.capture_failures.set(float(stats.get("failures", 0)))
            self.capture_rejected.set(float(stats.get("rejected", 0)))
            self.capture_reachable.set(float(stats.get("store_reachable", True)))
            self.capture_outages.set(float(stats.get("outages", 0)))
