"""What the capture shipper says about the object store: one line when it stops answering, one when it is
back, never a line per retry.

An outage used to log a warning per failed attempt (a storm at the initial backoff), and, once MLflow had
silenced the root logger, nothing at all (``driftloop.logs``). Here a failure while the store was
reachable is one warning; further failures are debug lines; the first success starts a recovery, which
is announced (info, with the records shipped since) once the backlog buffered during the outage is
shipped. A failure during the recovery returns to the outage without a new warning: one warning and one
recovery line per outage. The state and the number of outages are exported as metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Literal

__all__ = ["ShipperHealth"]

log = logging.getLogger(__name__)


class ShipperHealth:
    """The object store as the shipper and the compactor see it (both report attempts); other threads
    read :attr:`reachable`, :attr:`outages` and :attr:`last_error`."""

    def __init__(self, root: str) -> None:
        self._root = root
        self._report_lock = threading.Lock()  # guards the state: two threads report
        self._state: Literal["up", "down", "recovering"] = "up"
        self._since = 0.0  # monotonic: when the outage began
        self._attempts = 0  # failed attempts in this outage
        self._recovered = 0  # records shipped since the store answered again
        self.reachable = True
        self.outages = 0
        self.last_error: str | None = None  # the most recent failure

    def failed(self, message: str, *, pending_bytes: int, bug: bool = False) -> None:
        """A shipping or compaction attempt failed with ``message``; ``bug``: not a storage error (the
        warning then carries the traceback of the exception being handled)."""
        with self._report_lock:
            self._failed(message, pending_bytes=pending_bytes, bug=bug)

    def _failed(self, message: str, *, pending_bytes: int, bug: bool) -> None:
        self.reachable = False
        self.last_error = message
        self._attempts += 1
        if self._state == "up":
            self._state, self._since, self._attempts, self._recovered = "down", time.monotonic(), 1, 0
            self.outages += 1
            log.warning(
                "capture: %s unreachable, buffering locally (%d bytes pending) and retrying; one line "
                "again once it is back: %s",
                self._root,
                pending_bytes,
                message,
                exc_info=bug,
            )
            return
        self._state = "down"
        log.debug("capture: %s still unreachable (attempt %d): %s", self._root, self._attempts, message)

    def succeeded(self, records: int, *, backlog: int) -> None:
        """An attempt succeeded, shipping ``records``; ``backlog``: sealed segments still to ship."""
        with self._report_lock:
            self._succeeded(records, backlog=backlog)

    def _succeeded(self, records: int, *, backlog: int) -> None:
        self.reachable = True
        if self._state == "up":
            return
        self._state = "recovering"
        self._recovered += records
        if backlog:
            return
        self._state = "up"
        log.info(
            "capture: %s reachable again after %.1f s and %d failed attempt(s), %d buffered record(s) "
            "shipped",
            self._root,
            time.monotonic() - self._since,
            self._attempts,
            self._recovered,
        )
