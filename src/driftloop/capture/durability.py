"""When an append is acknowledged: one strategy per ``capture.durability`` (docs/capture.md).

* :class:`WriteThenSync` ("process"): the caller writes its frame into the WAL file itself and is
  acknowledged at once (the kernel holds the data: it survives ``kill -9``); a thread fdatasyncs within
  ``capture.sync_interval_ms``.
* :class:`GroupCommit` ("fsync"): frames are queued for a thread that writes and fdatasyncs them as one
  group, then wakes their waiters (it survives a power loss too).

Both seal the active segment by age or size, or when :meth:`request_seal` asks, and stop with
:meth:`stop`, after which :class:`~driftloop.capture.writer.WalWriter` is closed by the store.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Protocol

from driftloop.capture.waiters import settle
from driftloop.errors import DriftloopError, StorageUnavailableError

if TYPE_CHECKING:
    from driftloop.capture.buffer import Buffer
    from driftloop.capture.waiters import Waiter
    from driftloop.capture.writer import WalWriter
    from driftloop.settings import CaptureSettings

__all__ = ["Durability", "GroupCommit", "WriteThenSync", "durability_for"]

log = logging.getLogger(__name__)


class Durability(Protocol):
    """How accepted frames reach the WAL and when their waiters hear so."""

    @property
    def broken(self) -> str | None:
        """Why the strategy's thread stopped unexpectedly (then every append is refused), or None."""
        ...

    def start(self) -> None: ...

    def submit(self, frame: bytes, waiter: Waiter | None) -> None:
        """Write ``frame`` and settle ``waiter`` once it is as durable as the strategy promises.

        Raises (the frame is then not written) when the WAL refuses it there and then.
        """
        ...

    def request_seal(self) -> None: ...

    def stop(self) -> None:
        """Write and sync what was accepted, then stop the thread; new frames are refused."""
        ...


def durability_for(cfg: CaptureSettings, writer: WalWriter, buffer: Buffer) -> Durability:
    if cfg.durability == "fsync":
        return GroupCommit(writer, buffer, cfg.group_commit_ms / 1000)
    return WriteThenSync(writer, cfg.sync_interval_ms / 1000)


class _WalThread:
    """What both strategies' threads share: one lock and its wake-up condition, the seal and stop
    requests, and why the thread broke. A subclass runs :meth:`_rounds` and guards its own state with
    the same lock."""

    _what = "thread"  # for the broken message

    def __init__(self, writer: WalWriter, name: str) -> None:
        self._writer = writer
        self._lock = threading.Lock()  # guards the flags here and the subclass's state
        self._wake = threading.Condition(self._lock)  # work queued, a seal or a stop asked
        self._seal_requested = self._stopping = False
        self._broken: str | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def broken(self) -> str | None:
        return self._broken

    def start(self) -> None:
        self._thread.start()

    def request_seal(self) -> None:
        with self._lock:
            self._seal_requested = True
            self._wake.notify()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify()
        self._thread.join()

    def _run(self) -> None:
        try:
            self._rounds()
        except BaseException as exc:  # a bug: refuse new records rather than leave them unsynced
            log.exception("%s stopped", self._thread.name)
            with self._lock:
                self._broken = f"the WAL {self._what} stopped: {exc!r}"
            self._crashed()

    def _idle(self, pending: bool) -> bool:
        """Under the lock: nothing to do until woken (or the segment's rotation is due)."""
        return not (pending or self._seal_requested or self._stopping or self._writer.rotation_due())

    def _seal_or_stop(self, seal: bool, stop: bool) -> bool:
        """After a round: seal when asked or due; True once the thread should end."""
        if seal or self._writer.rotation_due():
            self._writer.seal()
        return stop

    def _rounds(self) -> None:
        raise NotImplementedError

    def _crashed(self) -> None:
        """After the thread broke: release whatever still waits on it."""


class WriteThenSync(_WalThread):
    """ "process" durability: written by the caller, synced by a thread soon after."""

    _what = "sync thread"

    def __init__(self, writer: WalWriter, interval: float) -> None:
        super().__init__(writer, "capture-sync")
        self._interval = interval
        self._unsynced = False  # written since the last sync

    def submit(self, frame: bytes, waiter: Waiter | None) -> None:
        # Written into the kernel's page cache here, before the caller acknowledges anything.
        self._writer.write(frame, sync=False)
        with self._lock:
            if not self._unsynced:
                self._unsynced = True
                self._wake.notify()
        if waiter is not None:
            settle([waiter], None)

    def _rounds(self) -> None:
        while True:
            with self._lock:
                while self._idle(self._unsynced):
                    self._wake.wait(self._writer.rotation_wait())
                if self._unsynced and not (self._seal_requested or self._stopping):
                    self._wake.wait(self._interval)  # let writes gather, then one sync for all of them
                seal, stop = self._seal_requested, self._stopping
                self._unsynced = self._seal_requested = False
            self._writer.sync()
            if self._seal_or_stop(seal, stop):
                return


class GroupCommit(_WalThread):
    """ "fsync" durability: queued frames written and fdatasynced as one group by a thread."""

    _what = "writer"

    def __init__(self, writer: WalWriter, buffer: Buffer, window: float) -> None:
        super().__init__(writer, "capture-writer")
        self._buffer = buffer
        self._window = window  # capture.group_commit_ms: hold a group open this long for more
        self._queue: list[tuple[bytes, Waiter]] = []
        self._first_queued = 0.0  # monotonic

    def submit(self, frame: bytes, waiter: Waiter | None) -> None:
        if waiter is None:
            raise RuntimeError("a group-commit append needs a waiter")
        with self._lock:
            if self._stopping or self._broken:
                raise StorageUnavailableError(
                    f"the capture store refuses records: {self._broken or 'it is closed'}"
                )
            if not self._queue:
                self._first_queued = time.monotonic()
                self._wake.notify()
            self._queue.append((frame, waiter))

    def _crashed(self) -> None:
        # Appends waiting on this thread would hang forever: refuse them.
        with self._lock:
            batch, self._queue = self._queue, []
        self._buffer.release(sum(len(frame) for frame, _ in batch))
        settle([waiter for _, waiter in batch], StorageUnavailableError(f"capture: {self._broken}"))

    def _rounds(self) -> None:
        while True:
            with self._lock:
                while self._idle(bool(self._queue)):
                    self._wake.wait(self._writer.rotation_wait())
                # Group commit: appends arriving within the window share this write and fdatasync.
                while self._queue and not self._stopping:
                    left = self._first_queued + self._window - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
                batch, self._queue = self._queue, []
                seal, stop = self._seal_requested, self._stopping
                self._seal_requested = False
            if batch:
                self._commit(batch)
            if self._seal_or_stop(seal, stop):
                return

    def _commit(self, batch: list[tuple[bytes, Waiter]]) -> None:
        data = b"".join(frame for frame, _ in batch)
        waiters = [waiter for _, waiter in batch]
        try:
            self._writer.write(data, sync=True)
        except DriftloopError as error:  # the writer cut the segment back: none of these was kept
            self._buffer.release(len(data))
            settle(waiters, error)
            return
        settle(waiters, None)
