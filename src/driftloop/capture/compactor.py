"""The service's compactor: its own landed segments → Parquet, preferably while the service is idle.

It compacts once no capture has been appended for ``capture.compact_idle_s`` (0: not on idleness), once
a segment has waited ``capture.compact_max_delay_s`` since it landed, busy or not (0: no such bound), or
at once when :meth:`Compactor.compact_now` asks; one segment at a time in the helper. It stops between
segments when appends resume (unless a segment is overdue) or the shipper has segments to ship. A
failure waits ``capture.retry_max_s``. The delay bound is what keeps a service under a load that never
pauses visible to monitoring, which reads Parquet only (decision 0050).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from driftloop.capture.landing import compact, landed_objects
from driftloop.capture.shipper import describe
from driftloop.errors import DriftloopError

if TYPE_CHECKING:
    from collections.abc import Callable

    from driftloop.capture.helper import Helper
    from driftloop.capture.outage import ShipperHealth
    from driftloop.settings import CaptureSettings
    from driftloop.storage import ObjectStore

__all__ = ["Compactor"]


class Compactor:
    """One thread; ``backlog`` says how many segments the shipper has to ship (compaction waits for 0)."""

    def __init__(
        self,
        store: ObjectStore,
        helper: Helper,
        health: ShipperHealth,
        cfg: CaptureSettings,
        backlog: Callable[[], int],
    ) -> None:
        self._store = store
        self._helper = helper
        self._health = health
        self._idle = cfg.compact_idle_s
        self._max_delay = cfg.compact_max_delay_s
        self._retry_after = cfg.retry_max_s
        self._backlog = backlog
        self.writer_id = ""  # whose landed segments: set by the store before start()
        # Written on every append without a lock: a float store is atomic, and a stale read only makes
        # one wait end early, after which the wait is computed again.
        self.last_append = 0.0  # monotonic
        self._state_lock = threading.Lock()  # guards everything below
        # Landed (which is also when the shipper's backlog shrinks), asked, done or stopping.
        self._changed = threading.Condition(self._state_lock)
        self._landed = 0  # segments this store landed and has not compacted
        self._leftovers = True  # an earlier process may have left some: the first pass looks
        # Monotonic time since which segments have been waiting (the oldest landed one, or the start for
        # leftovers); None: nothing waits.
        self._waiting_since: float | None = time.monotonic()
        self._requested = False  # compact now, idle or not
        self._retry_at = 0.0  # monotonic; after a failed pass
        self._stopping = False
        self.compacted = 0
        self._thread = threading.Thread(target=self._run, name="capture-compactor", daemon=True)

    @property
    def landed(self) -> int:
        """Segments landed and not compacted yet (as far as this store knows)."""
        return self._landed

    def note_landed(self) -> None:
        with self._state_lock:
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
            self._landed += 1
            self._changed.notify_all()

    def compact_now(self, timeout: float) -> bool:
        """Compact everything this store landed (and what an earlier process left); True once done within
        ``timeout``."""
        with self._state_lock:
            self._requested = True
            self._changed.notify_all()
            return self._changed.wait_for(lambda: not (self._landed or self._leftovers), timeout)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None) -> bool:
        """Stop after the segment being compacted;
        True once the thread has ended within ``timeout`` (None: however long that takes)."""
        with self._state_lock:
            self._stopping = True
            self._changed.notify_all()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _due_in(self) -> float | None:
        """Under the lock: seconds until a pass should start (0: now); None: no reason for one."""
        if not (self._landed or self._leftovers):
            return None
        candidates = []
        if self._requested:
            candidates.append(0.0)
        if self._idle:
            candidates.append(self.last_append + self._idle)
        if self._max_delay and self._waiting_since is not None:
            candidates.append(self._waiting_since + self._max_delay)
        if not candidates:
            return None
        due = max(self._retry_at, min(candidates))
        return max(due - time.monotonic(), 0.0)

    def _proceed(self) -> bool:
        with self._state_lock:
            return not (self._stopping or self._backlog()) and self._due_in() == 0

    def _run(self) -> None:
        while True:
            with self._state_lock:
                while not self._stopping and (self._due_in() != 0 or self._backlog()):
                    self._changed.wait(None if self._backlog() else self._due_in())
                if self._stopping:
                    return
            self._pass()

    def _pass(self) -> None:
        """Compact this writer's landed segments, one at a time, while nothing else wants the CPU."""
        with self._state_lock:
            # Landed before the listing below (the shipper notes a segment after writing it): a
            # complete pass compacts all of these; those noted later are counted for the next pass.
            noted = self._landed
        try:
            done = compact(
                self._store,
                writer=self.writer_id,
                proceed=self._proceed,
                convert=lambda data, stem: self._helper(landed_objects, data, stem),
            )
        except Exception as exc:  # storage down, or a bug: the landed segments stay; retry later
            with self._state_lock:
                self._retry_at = time.monotonic() + self._retry_after
            bug = not isinstance(exc, DriftloopError | OSError)
            self._health.failed(f"compacting: {describe(exc)}", pending_bytes=0, bug=bug)
            return
        with self._state_lock:
            self.compacted += done.segments
            if done.complete:
                self._landed -= noted
                self._leftovers = False
            else:
                self._landed = max(self._landed - done.segments, 0)
            if not (self._landed or self._leftovers):
                self._requested = False
                self._waiting_since = None
            elif done.complete:  # only segments landed during the pass wait: from about now
                self._waiting_since = time.monotonic()
            self._changed.notify_all()
        self._health.succeeded(0, backlog=self._backlog())
