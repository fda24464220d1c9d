"""The local buffer's accounting: bytes accepted and not shipped yet, against ``capture.max_buffer_bytes``."""

from __future__ import annotations

import threading

from driftloop.errors import CaptureFullError

__all__ = ["Buffer"]


class Buffer:
    """Reserve bytes when an append is accepted, release them once they are shipped (or were never
    written). ``used`` covers appends being written, the active segment and sealed segments alike, so
    backpressure does not depend on where the bytes are."""

    def __init__(self, limit: int, where: str) -> None:
        self._limit = limit
        self._where = where  # the object store, named in the refusal
        self._bytes_lock = threading.Lock()  # guards _used and rejected
        self._shrank = threading.Condition(self._bytes_lock)  # flush waits for the buffer to empty
        self._used = 0
        self.rejected = 0  # appends refused because the buffer was full

    @property
    def used(self) -> int:
        return self._used

    def reserve(self, size: int, appends: int) -> None:
        """Take ``size`` bytes for ``appends`` appends, or raise :class:`CaptureFullError` (HTTP 503)."""
        with self._bytes_lock:
            if self._used + size > self._limit:
                self.rejected += appends
                raise CaptureFullError(
                    f"capture buffer full: {self._used} bytes wait to be shipped to {self._where} "
                    f"(capture.max_buffer_bytes = {self._limit}); retry later"
                )
            self._used += size

    def add(self, size: int) -> None:
        """Count bytes an earlier process left (recovered segments): over the limit or not, they are kept."""
        with self._bytes_lock:
            self._used += size

    def release(self, size: int) -> None:
        """``size`` bytes are shipped, or were refused before they reached the WAL."""
        with self._bytes_lock:
            self._used -= size
            self._shrank.notify_all()

    def wait_shrink(self, timeout: float) -> None:
        """Block until some bytes are released or ``timeout`` seconds pass."""
        with self._bytes_lock:
            if self._used:
                self._shrank.wait(timeout)
