"""One ``GET /metrics`` for ``driftloop serve --workers N``: prometheus_client's multiprocess mode.

Each uvicorn worker is a process of its own, so a scrape reaches one of them; with a registry per worker,
Prometheus saw whichever worker answered (decision 0072). ``serve`` makes a fresh directory per run and
exports it as ``PROMETHEUS_MULTIPROC_DIR`` before the workers start (:func:`worker_metrics_dir`), which
switches prometheus_client's counters, gauges and histograms to per-process files there; the worker that
answers ``/metrics`` merges every worker's files (:func:`merged`).

Two kinds of numbers are not prometheus_client metrics updated in place, and a worker publishes them to its
files itself (:class:`PublishedValues`), once a second and whenever it is scraped: the request counts and
latency histogram (plain integers on the hot path, ``serving.metrics``), and the gauges read from the model
holder and the capture store. So another worker's requests show up in a scrape at most
:data:`PUBLISH_INTERVAL_S` late. A worker that stops cleanly marks itself dead (its ``live*`` gauges go);
one killed is noticed at the next scrape (:func:`forget_dead`). Counters of dead workers stay in the sum,
so totals do not fall when uvicorn replaces a worker.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from driftloop.runtime.holders import process_gone

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = [
    "MULTIPROC_ENV",
    "PUBLISH_INTERVAL_S",
    "PublishedValues",
    "check_multiprocess",
    "forget_dead",
    "merged",
    "worker_metrics_dir",
    "worker_stopped",
]

# prometheus_client reads it when it is imported: it must be set before a worker process starts.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PUBLISH_INTERVAL_S = 1.0
_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


@contextlib.contextmanager
def worker_metrics_dir() -> Iterator[Path]:
    """A fresh, empty directory exported as ``PROMETHEUS_MULTIPROC_DIR`` (for the worker processes started
    inside the block to inherit), removed with its files afterwards and the variable restored.

    Always a fresh one, even when the variable is already set: files left by an earlier run would be
    added to this run's counters."""
    path = Path(tempfile.mkdtemp(prefix="driftloop-metrics-"))
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


def check_multiprocess(directory: Path) -> None:
    """Raise unless this process's prometheus_client writes its metrics to files in ``directory``."""
    if not getattr(values.ValueClass, "_multiprocess", False) or os.environ.get(MULTIPROC_ENV) != str(
        directory
    ):
        raise RuntimeError(
            f"prometheus_client is not in multiprocess mode on {directory}: {MULTIPROC_ENV} must be set "
            "before prometheus_client is first imported in the worker process"
        )


def merged(directory: Path) -> bytes:
    """Every worker's metrics in ``directory``, merged, as Prometheus text (dead workers forgotten first)."""
    forget_dead(directory)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]  # untyped upstream
    return generate_latest(registry)


def forget_dead(directory: Path) -> list[int]:
    """``mark_process_dead`` for every worker with ``live*`` gauge files in ``directory`` that no longer
    runs (a worker killed cannot mark itself); returns their pids."""
    gone = set()
    for entry in os.scandir(directory):
        found = _LIVE_FILE.match(entry.name)
        if found is not None and process_gone(int(found.group(1))):
            gone.add(int(found.group(1)))
    for pid in sorted(gone):
        mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]  # untyped upstream
    return sorted(gone)


def worker_stopped(directory: Path) -> None:
    """This worker stops: its ``live*`` gauges leave the merge (its counters stay in the totals)."""
    mark_process_dead(os.getpid(), str(directory))  # type: ignore[no-untyped-call]  # untyped upstream


class PublishedValues:
    """Absolute values this process sets in its own files of the multiprocess directory (``<type>_<pid>-
    published.db``, apart from prometheus_client's own ``<type>_<pid>.db``, which another writer must not
    share), merged like any counter or histogram; for numbers kept elsewhere and published now and then."""

    def __init__(self) -> None:
        identify = lambda: f"{os.getpid()}-published"  # noqa: E731 — the file name's "pid" part
        self._value_class = values.MultiProcessValue(identify)  # type: ignore[no-untyped-call]
        # prometheus_client's MmapedValue, by sample and labels
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}

    def set(self, sample: str, labels: Mapping[str, str], value: float, *, kind: str, help_text: str) -> None:
        """``sample`` (``<metric>_total``, ``<metric>_bucket``, ``<metric>_sum``) of a metric of ``kind``
        ("counter", "histogram") with ``labels`` is now ``value``. A histogram's buckets are set one by
        one, not cumulatively (the merge accumulates them)."""
        key = (sample, tuple(labels.items()))
        value_of = self._values.get(key)
        if value_of is None:
            metric = sample.rsplit("_", 1)[0]
            value_of = self._values[key] = self._value_class(
                kind, metric, sample, tuple(labels), tuple(labels.values()), help_text
            )
        value_of.set(value)
