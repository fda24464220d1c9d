"""The shipper: sealed WAL segments → ``captures/_landing/`` on the object store, oldest first.

A segment is deleted locally only once its landed object is written. A failure leaves it in place; the
shipper tries again after a backoff (``capture.retry_initial_s`` doubling to ``capture.retry_max_s``) or
at once when :meth:`Shipper.kick` asks. That is the only loop around the object store here: each
attempt is one call, whose client already retries transient errors its own way (botocore's standard
retries for S3), so an outage costs one log line (:mod:`driftloop.capture.outage`), not a storm.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TYPE_CHECKING

from driftloop.capture.landing import land, landing_key
from driftloop.errors import DriftloopError

if TYPE_CHECKING:
    from collections.abc import Callable

    from driftloop.capture.buffer import Buffer
    from driftloop.capture.helper import Helper
    from driftloop.capture.outage import ShipperHealth
    from driftloop.capture.segments import Segment
    from driftloop.settings import CaptureSettings
    from driftloop.storage import ObjectStore

__all__ = ["Shipper", "describe"]

log = logging.getLogger(__name__)


def describe(exc: Exception) -> str:
    """One line for a failed attempt: the headline of a driftloop error, else the type and message."""
    return exc.headline if isinstance(exc, DriftloopError) else f"{type(exc).__name__}: {exc}"


class Shipper:
    """One thread landing sealed segments; :meth:`put` queues one (the writer's ``on_sealed``)."""

    def __init__(
        self,
        store: ObjectStore,
        helper: Helper,
        buffer: Buffer,
        health: ShipperHealth,
        *,
        cfg: CaptureSettings,
        on_landed: Callable[[], None],
    ) -> None:
        self._store = store
        self._helper = helper
        self._buffer = buffer
        self._health = health
        self._retry = (cfg.retry_initial_s, cfg.retry_max_s)
        self._on_landed = on_landed
        self.writer_id = ""  # this WAL's name in keys; set by the store before start()
        self._queue_lock = threading.Lock()  # guards the queue, the flags and the counters
        self._changed = threading.Condition(self._queue_lock)  # a segment queued, a retry kicked, stop
        self._sealed: deque[Segment] = deque()
        self._kicked = self._stopping = False
        self.shipped_records = self.shipped_segments = self.failures = 0
        self._thread = threading.Thread(target=self._run, name="capture-shipper", daemon=True)

    @property
    def backlog(self) -> int:
        """Sealed segments waiting to be shipped."""
        return len(self._sealed)

    def put(self, segment: Segment) -> None:
        with self._queue_lock:
            self._sealed.append(segment)
            self._changed.notify()

    def kick(self) -> None:
        """Retry a failed segment now rather than after its backoff."""
        with self._queue_lock:
            self._kicked = True
            self._changed.notify()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None) -> bool:
        """Stop after the segment being shipped;
        True once the thread has ended within ``timeout`` (None: however long that takes)."""
        with self._queue_lock:
            self._stopping = True
            self._changed.notify()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        delay = self._retry[0]
        while True:
            with self._queue_lock:
                while not (self._sealed or self._stopping):
                    self._changed.wait()
                if self._stopping:
                    return
                segment = self._sealed[0]
                self._kicked = False
            try:
                count = self._ship(segment)
            except Exception as exc:  # storage down, or a bug: either way the segment stays
                with self._queue_lock:
                    self.failures += 1
                bug = not isinstance(exc, DriftloopError | OSError)
                self._health.failed(describe(exc), pending_bytes=self._buffer.used, bug=bug)
                with self._queue_lock:  # the next attempt: after the backoff, or when kicked
                    self._changed.wait_for(lambda: self._kicked or self._stopping, timeout=delay)
                delay = min(delay * 2, self._retry[1])
                continue
            delay = self._retry[0]
            with self._queue_lock:
                self._sealed.popleft()
                self.shipped_records += count
                self.shipped_segments += 1
            self._buffer.release(segment.size)
            self._on_landed()  # after the backlog shrank: the compactor waits for it to be empty
            self._health.succeeded(count, backlog=self.backlog)

    def _ship(self, segment: Segment) -> int:
        """Land the segment as it is (compressed); its conversion to Parquet is the compactor's."""
        try:
            count, body = self._helper(land, segment.path.absolute())
        except FileNotFoundError:
            log.error("capture: segment %s vanished before it was shipped", segment.path)
            return 0
        self._store.write_bytes(landing_key(f"{self.writer_id}-{segment.path.stem}"), body)
        segment.path.unlink(missing_ok=True)  # only now: it is in the object store
        return count
