"""Live traffic from the prediction service's Prometheus ``GET /metrics``: requests by route and status,
latency percentiles, fallbacks and refusals.

The dashboard scrapes the service each time the page (or ``/api/traffic``) is asked for, with the
caller's own credentials, so a viewer sees the service exactly as their token lets them. A service that
is down, refuses, or answers something that is not Prometheus text is a :class:`Traffic` with
``reachable`` False and the reason: the page says so instead of failing.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["QUANTILES", "Traffic", "parse_metrics", "quantile", "scrape"]

QUANTILES = (0.5, 0.9, 0.99)
_TIMEOUT_S = 3.0
# Statuses the service answers when it refuses a request, by what they mean (docs/serving.md, auth.md).
REFUSALS = {
    "401": "unauthenticated",
    "403": "forbidden",
    "413": "too large",
    "422": "invalid input",
    "429": "rate limited",
    "503": "unavailable",
}


@dataclass(frozen=True)
class Traffic:
    """One scrape of the service. ``requests`` maps (route, status) to a count; ``latency`` maps a route
    to its estimated percentiles (:data:`QUANTILES`, seconds) and ``counters`` holds the plain gauges and
    counters (fallbacks, model version, capture state) by metric name."""

    url: str
    reachable: bool
    reason: str = ""
    requests: dict[tuple[str, str], float] = field(default_factory=dict)
    latency: dict[str, dict[float, float]] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)

    def refusals(self) -> dict[str, float]:
        """Refused requests by reason, over every route (statuses in :data:`REFUSALS`)."""
        out: dict[str, float] = {}
        for (_, status), count in self.requests.items():
            if status in REFUSALS:
                out[REFUSALS[status]] = out.get(REFUSALS[status], 0.0) + count
        return out


def scrape(service_url: str, authorization: str | None) -> Traffic:
    """``GET {service_url}/metrics`` with ``authorization`` forwarded (None: none sent), parsed."""
    url = service_url.rstrip("/") + "/metrics"
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never via a proxy
    try:
        with opener.open(request, timeout=_TIMEOUT_S) as response:
            text = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return Traffic(url, False, f"the service answered {exc.code} to {url}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Traffic(url, False, f"service not reachable at {url}: {reason}")
    try:
        return parse_metrics(url, text)
    except ValueError as exc:
        return Traffic(url, False, f"{url} did not answer Prometheus text: {exc}")


def parse_metrics(url: str, text: str) -> Traffic:
    """The service's metrics text as a :class:`Traffic` (:class:`ValueError` when it is not Prometheus
    text)."""
    requests: dict[tuple[str, str], float] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    counters: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "driftloop_requests_total":
                key = (sample.labels.get("path", "?"), sample.labels.get("status", "?"))
                requests[key] = requests.get(key, 0.0) + sample.value
            elif sample.name == "driftloop_request_seconds_bucket":
                bound = float(sample.labels.get("le", "+Inf"))
                buckets.setdefault(sample.labels.get("path", "?"), []).append((bound, sample.value))
            elif sample.name == "driftloop_model_version" or not (
                sample.labels or sample.name.endswith(("_created", "_bucket"))
            ):
                counters[sample.name] = sample.value
    latency = {
        path: {q: quantile(q, points) for q in QUANTILES}
        for path, points in sorted(buckets.items())
        if points and max(count for _, count in points) > 0
    }
    return Traffic(url, True, "", requests, latency, counters)


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """The ``q`` quantile of a cumulative histogram ``(upper bound, count ≤ bound)``, interpolated
    linearly inside the bucket as Prometheus's ``histogram_quantile`` does; in the +Inf bucket, the
    largest finite bound. NaN for an empty histogram."""
    points = sorted(buckets)
    if not points or points[-1][1] <= 0:
        return math.nan
    rank = q * points[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in points:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound
