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


class WriteThenSync:
    """ "process" durability: written by the caller, synced by a thread soon after."""

    def __init__(self, writer: WalWriter, interval: float) -> None:
        self._writer = writer
        self._interval = interval
        self._sync_lock = threading.Lock()  # guards the three flags below
        self._due = threading.Condition(self._sync_lock)  # something to sync or seal, or stop
        self._unsynced = self._seal_requested = self._stopping = False
        self._thread = threading.Thread(target=self._run, name="capture-sync", daemon=True)
        self._broken: str | None = None

    @property
    def broken(self) -> str | None:
        return self._broken

    def start(self) -> None:
        self._thread.start()

    def submit(self, frame: bytes, waiter: Waiter | None) -> None:
        # Written into the kernel's page cache here, before the caller acknowledges anything.
        self._writer.write(frame, sync=False)
        with self._sync_lock:
            if not self._unsynced:
                self._unsynced = True
                self._due.notify()
        if waiter is not None:
            settle([waiter], None)

    def request_seal(self) -> None:
        with self._sync_lock:
            self._seal_requested = True
            self._due.notify()

    def stop(self) -> None:
        with self._sync_lock:
            self._stopping = True
            self._due.notify()
        self._thread.join()

    def _run(self) -> None:
        try:
            self._sync_until_stopped()
        except BaseException as exc:  # a bug: refuse new records rather than leave them unsynced
            log.exception("capture sync thread stopped")
            self._broken = f"the WAL sync thread stopped: {exc!r}"

    def _sync_until_stopped(self) -> None:
        writer = self._writer
        while True:
            with self._sync_lock:
                while not (self._unsynced or self._seal_requested or self._stopping or writer.rotation_due()):
                    self._due.wait(writer.rotation_wait())
                if self._unsynced and not (self._seal_requested or self._stopping):
                    self._due.wait(self._interval)  # let writes gather, then one sync for all of them
                seal, stop = self._seal_requested, self._stopping
                self._unsynced = self._seal_requested = False
            writer.sync()
            if seal or writer.rotation_due():
                writer.seal()
            if stop:
                return


class GroupCommit:
    """ "fsync" durability: queued frames written and fdatasynced as one group by a thread."""

    def __init__(self, writer: WalWriter, buffer: Buffer, window: float) -> None:
        self._writer = writer
        self._buffer = buffer
        self._window = window  # capture.group_commit_ms: hold a group open this long for more
        self._queue_lock = threading.Lock()  # guards the queue and the flags
        self._queued = threading.Condition(self._queue_lock)  # frames queued, seal or stop asked
        self._queue: list[tuple[bytes, Waiter]] = []
        self._first_queued = 0.0  # monotonic
        self._seal_requested = self._stopping = False
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._broken: str | None = None

    @property
    def broken(self) -> str | None:
        return self._broken

    def start(self) -> None:
        self._thread.start()

    def submit(self, frame: bytes, waiter: Waiter | None) -> None:
        if waiter is None:
            raise RuntimeError("a group-commit append needs a waiter")
        with self._queue_lock:
            if self._stopping or self._broken:
                raise StorageUnavailableError(
                    f"the capture store refuses records: {self._broken or 'it is closed'}"
                )
            if not self._queue:
                self._first_queued = time.monotonic()
                self._queued.notify()
            self._queue.append((frame, waiter))

    def request_seal(self) -> None:
        with self._queue_lock:
            self._seal_requested = True
            self._queued.notify()

    def stop(self) -> None:
        with self._queue_lock:
            self._stopping = True
            self._queued.notify()
        self._thread.join()

    def _run(self) -> None:
        try:
            self._commit_until_stopped()
        except BaseException as exc:  # a bug: refuse new records rather than let appends hang forever
            log.exception("capture writer stopped")
            with self._queue_lock:
                self._broken = f"the WAL writer stopped: {exc!r}"
                batch, self._queue = self._queue, []
            self._buffer.release(sum(len(frame) for frame, _ in batch))
            settle([waiter for _, waiter in batch], StorageUnavailableError(f"capture: {self._broken}"))

    def _commit_until_stopped(self) -> None:
        writer = self._writer
        while True:
            with self._queue_lock:
                while not (self._queue or self._seal_requested or self._stopping or writer.rotation_due()):
                    self._queued.wait(writer.rotation_wait())
                # Group commit: appends arriving within the window share this write and fdatasync.
                while self._queue and not self._stopping:
                    left = self._first_queued + self._window - time.monotonic()
                    if left <= 0:
                        break
                    self._queued.wait(left)
                batch, self._queue = self._queue, []
                seal, stop = self._seal_requested, self._stopping
                self._seal_requested = False
            if batch:
                self._commit(batch)
            if seal or writer.rotation_due():
                writer.seal()
            if stop:
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
