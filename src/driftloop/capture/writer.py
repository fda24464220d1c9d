"""The WAL writer: the active segment, written by the durability strategy, sealed into the shipper's queue."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from driftloop.capture.segments import Active, Segment, open_segment, wal_error, write_all
from driftloop.errors import StorageUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from driftloop.settings import CaptureSettings

__all__ = ["WalWriter"]

log = logging.getLogger(__name__)


class WalWriter:
    """Frames go into the active segment; a segment is sealed by size, age or on request, and handed to
    ``on_sealed``. Thread-safe: the request path ("process" durability) and the strategy's thread both
    write and seal."""

    def __init__(self, directory: Path, cfg: CaptureSettings, on_sealed: Callable[[Segment], None]) -> None:
        self._dir = directory
        self._max_bytes = cfg.segment_max_bytes
        self._max_age = cfg.segment_max_age_s
        self._on_sealed = on_sealed
        self._segment_lock = threading.Lock()  # guards _active, _last_seq and _closed
        self._active: Active | None = None
        self._last_seq = 0
        self._closed = False

    def resume_after(self, seq: int) -> None:
        """Never reuse a sequence up to ``seq`` (an earlier process's segments)."""
        with self._segment_lock:
            self._last_seq = max(self._last_seq, seq)

    @property
    def has_active(self) -> bool:
        return self._active is not None

    def write(self, frame: bytes, *, sync: bool) -> None:
        """Append ``frame`` to the active segment (opening one if needed) and, with ``sync``, fdatasync it.

        On failure the segment is cut back to its last whole record and sealed, so no later record lands
        behind garbage, and :class:`CaptureFullError` (disk full) or :class:`StorageUnavailableError` is
        raised; the records before it are kept.
        """
        with self._segment_lock:
            if self._closed:
                raise StorageUnavailableError("the capture store refuses records: it is closed")
            try:
                if self._active is None:
                    self._active = open_segment(self._dir, self._last_seq)
                    self._last_seq = int(self._active.path.stem.removeprefix("seg-"))
                write_all(self._active.fd, frame)
                if sync:
                    # fdatasync: the data and the size that makes it readable, not the timestamps (~40 %
                    # cheaper).
                    os.fdatasync(self._active.fd)
            except Exception as exc:  # disk full, I/O error: refuse this frame, keep the ones before it
                error = wal_error(self._dir, exc)
                log.error("capture: %s", error.headline)
                if self._active is not None:
                    with contextlib.suppress(OSError):
                        os.ftruncate(self._active.fd, self._active.size)
                sealed = self._seal_locked()
                self._hand_over(sealed)
                raise error from exc
            self._active.size += len(frame)

    def sync(self) -> None:
        """fdatasync what was written without ``sync`` (outside the lock: writes go on meanwhile)."""
        with self._segment_lock:
            if self._active is None:
                return
            fd = os.dup(self._active.fd)  # stays valid even if the segment is sealed meanwhile
        try:
            os.fdatasync(fd)
        except OSError as exc:
            log.error("capture: cannot sync the write-ahead log in %s: %s", self._dir, exc)
        finally:
            os.close(fd)

    def seal(self) -> None:
        """Sync and close the active segment and hand it to ``on_sealed`` (an empty one is deleted)."""
        with self._segment_lock:
            sealed = self._seal_locked()
        self._hand_over(sealed)

    def close(self) -> None:
        """Seal the active segment and refuse further writes."""
        with self._segment_lock:
            self._closed = True
            sealed = self._seal_locked()
        self._hand_over(sealed)

    def rotation_due(self) -> bool:
        active = self._active
        return active is not None and (
            active.size >= self._max_bytes or time.monotonic() - active.opened >= self._max_age
        )

    def rotation_wait(self) -> float | None:
        """Seconds until the active segment is due for sealing by age; None: no active segment."""
        active = self._active
        if active is None:
            return None
        return max(active.opened + self._max_age - time.monotonic(), 0.0)

    def _seal_locked(self) -> Active | None:
        active, self._active = self._active, None
        if active is not None:
            with contextlib.suppress(OSError):
                os.fdatasync(active.fd)  # a no-op when every write was already synced
            with contextlib.suppress(OSError):
                os.close(active.fd)
        return active

    def _hand_over(self, sealed: Active | None) -> None:
        if sealed is None:
            return
        if sealed.size:
            self._on_sealed(Segment(sealed.path, sealed.size))
        else:
            with contextlib.suppress(OSError):
                sealed.path.unlink()
