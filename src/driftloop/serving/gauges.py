"""The latest monitoring pass's gauges on the service's ``GET /metrics``, read in the background.

``driftloop monitor`` writes its gauges to ``monitoring/<model>/latest.prom`` on the object store, and the
service appends them to its own metrics, so Prometheus scrapes the monitor's decision where it already
scrapes the service. Reading the object on the request path held every scrape behind the object store:
during an S3 outage boto's retries kept ``/metrics`` waiting 14–28 s (behind a lock, so every scraper
waited). :class:`MonitorGauges` reads it in a thread of its own instead; a scrape serves the last copy
read, plus ``driftloop_monitor_gauges_age_seconds`` (since the last successful read; ``+Inf`` before the
first), and an outage is one warning when it starts and one info line when it ends.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from driftloop.errors import DriftloopError, NotFoundError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["MonitorGauges"]

log = logging.getLogger(__name__)

_AGE = (
    b"# HELP driftloop_monitor_gauges_age_seconds Seconds since the monitor's gauges were last read\n"
    b"# TYPE driftloop_monitor_gauges_age_seconds gauge\n"
    b"driftloop_monitor_gauges_age_seconds %s\n"
)


class MonitorGauges:
    """``read()`` (the object's bytes; :class:`~driftloop.errors.NotFoundError` when no pass has written
    it yet) called every ``interval_s`` by :meth:`start`'s thread; calling the object returns the last
    copy with its age, without I/O."""

    def __init__(self, read: Callable[[], bytes], *, name: str, interval_s: float = 10.0) -> None:
        self._read = read
        self._name = name  # what the log lines call it
        self._interval = interval_s
        self._text = b""
        self._read_at: float | None = None  # monotonic, of the last successful read
        self._failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self) -> bytes:
        read_at = self._read_at
        age = b"+Inf" if read_at is None else b"%.3f" % (time.monotonic() - read_at)
        return self._text + _AGE % age

    def start(self) -> None:
        """Read now and every ``interval_s`` in a daemon thread, until :meth:`stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="monitor-gauges", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop reading. A read stuck behind storage retries is not waited for: the thread is a daemon."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def refresh(self) -> bool:
        """One read; True when it succeeded (the copy is current). Failures keep the last copy."""
        try:
            text = self._read()
        except NotFoundError:
            text = b""  # no monitoring pass yet: nothing to add, and nothing wrong
        except Exception as exc:  # storage down, or a bug: the service's own metrics stand either way
            if not self._failing:
                self._failing = True
                reason = exc.headline if isinstance(exc, DriftloopError) else f"{type(exc).__name__}: {exc}"
                log.warning(
                    "monitor gauges: cannot read %s, /metrics serves the last copy (see "
                    "driftloop_monitor_gauges_age_seconds) until it can: %s",
                    self._name,
                    reason,
                    exc_info=not isinstance(exc, DriftloopError),
                )
            return False
        self._text, self._read_at = text, time.monotonic()
        if self._failing:
            self._failing = False
            log.info("monitor gauges: %s readable again", self._name)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self._interval)
