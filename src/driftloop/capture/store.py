"""The capture store: every prediction and feedback label, kept crash-safe and shipped to the object store.

**Durability guarantee.** An acknowledged record (its ``append`` returned) is in the local write-ahead
log (WAL): written to the file with "process" durability, written and fdatasynced with "fsync"
(docs/capture.md), so it survives ``kill -9``. It then reaches the object store at least once, and
because shipping is idempotent it appears there once. Nothing acknowledged is dropped: when the buffer
is full (``capture.max_buffer_bytes``) or the WAL cannot be written, ``append`` raises
(:class:`~driftloop.errors.CaptureFullError` or :class:`~driftloop.errors.StorageUnavailableError`, both
HTTP 503) and the record is not acknowledged.

:class:`CaptureStore` is a facade over the parts, each with its own lock: the
:class:`~driftloop.capture.writer.WalWriter` (the active segment), the strategy of the configured
durability (:mod:`driftloop.capture.durability`), the :class:`~driftloop.capture.shipper.Shipper`
(sealed segments → landed objects), the :class:`~driftloop.capture.compactor.Compactor` (landed objects →
Parquet, when idle) and the :class:`~driftloop.capture.buffer.Buffer` (backpressure).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from driftloop.capture.buffer import Buffer
from driftloop.capture.compactor import Compactor
from driftloop.capture.durability import durability_for
from driftloop.capture.frames import encode, encode_one
from driftloop.capture.helper import Helper
from driftloop.capture.outage import ShipperHealth
from driftloop.capture.records import from_trusted, normalize
from driftloop.capture.segments import lock_dir, recover, writer_id
from driftloop.capture.shipper import Shipper
from driftloop.capture.waiters import LoopGroups
from driftloop.capture.writer import WalWriter
from driftloop.errors import ConfigError, DriftloopError, StorageUnavailableError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping, Sequence
    from types import TracebackType

    from driftloop.capture.records import CaptureRecord
    from driftloop.capture.waiters import Group, Waiter
    from driftloop.settings import CaptureSettings
    from driftloop.storage import ObjectStore

__all__ = ["CaptureStats", "CaptureStore"]

log = logging.getLogger(__name__)


class CaptureStats(TypedDict):
    """What the service exports as metrics."""

    pending_bytes: int  # accepted but not shipped yet (WAL on disk plus appends being written)
    pending_segments: int
    shipped_records: int
    shipped_segments: int
    failures: int  # failed shipping attempts
    rejected: int  # appends refused with CaptureFullError
    landed_segments: int  # shipped segments not yet compacted into Parquet (docs/capture.md)
    compacted_segments: int
    last_error: str | None  # the most recent shipping or compaction failure
    store_reachable: bool  # the last shipping (or compaction) attempt succeeded
    outages: int  # times the object store stopped answering the shipper


class CaptureStore:
    """A crash-safe, append-only sink for capture records; see the module docstring for the guarantee.

    ``wal_dir`` is locked for the store's lifetime (one store per directory, across processes).
    """

    def __init__(self, store: ObjectStore, wal_dir: Path, cfg: CaptureSettings) -> None:
        self._dir = Path(wal_dir)
        self._process = cfg.durability == "process"
        self._lifecycle_lock = threading.Lock()  # guards _state and _lock_fd
        self._state: Literal["new", "running", "closing", "closed"] = "new"
        self._lock_fd: int | None = None
        self._released = threading.Event()  # set once a closed store has unlocked wal_dir
        self._helper = Helper(cfg.convert_in_subprocess)
        self._health = ShipperHealth(store.root)  # one log line per outage and one per recovery
        self._buffer = Buffer(cfg.max_buffer_bytes, store.root)
        self._compactor = Compactor(
            store, self._helper, self._health, cfg, backlog=lambda: self._shipper.backlog
        )
        self._shipper = Shipper(
            store, self._helper, self._buffer, self._health, cfg=cfg, on_landed=self._compactor.note_landed
        )
        self._writer = WalWriter(self._dir, cfg, on_sealed=self._shipper.put)
        self._durability = durability_for(cfg, self._writer, self._buffer)
        self._groups = LoopGroups(self._write_groups)  # "process" durability, from event loops

    def start(self) -> None:
        """Lock ``wal_dir``, recover what an earlier process left there and start the threads.

        Raises :class:`ConfigError` when the directory is unusable, :class:`ConflictError` when another
        store (in this or another process) holds it.
        """
        with self._lifecycle_lock:
            if self._state != "new":
                raise RuntimeError("a CaptureStore can be started once")
            try:
                self._dir.mkdir(parents=True, exist_ok=True)
                self._lock_fd = lock_dir(self._dir)
                ident = writer_id(self._dir)
                segments, last = recover(self._dir)
            except OSError as exc:
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None
                raise ConfigError(
                    f"capture.wal_dir {self._dir} is not usable: {exc.strerror or exc}"
                ) from exc
            if segments:
                size = sum(s.size for s in segments)
                log.info(
                    "capture: recovered %d segment(s), %d bytes, from %s", len(segments), size, self._dir
                )
            for segment in segments:
                self._buffer.add(segment.size)
                self._shipper.put(segment)
            self._writer.resume_after(last)
            self._shipper.writer_id = self._compactor.writer_id = ident
            self._helper.start()
            self._durability.start()
            self._shipper.start()
            self._compactor.start()
            self._state = "running"

    def append(self, record: Mapping[str, Any]) -> None:
        """Capture ``record``; return once it is acknowledged (durable as ``capture.durability`` says).
        Thread-safe.

        Raises ``ValueError`` naming the field for a malformed record, :class:`CaptureFullError` when
        the buffer is full, :class:`StorageUnavailableError` when the WAL cannot be written or the store
        is closed.
        """
        future: Future[None] = Future()
        future.set_running_or_notify_cancel()
        self._submit([record], future, check=True)
        future.result()

    async def append_async(self, record: Mapping[str, Any]) -> None:
        """:meth:`append` for the event loop: waits without blocking the loop."""
        await self.append_many_async([record])

    async def append_many_async(self, records: Sequence[Mapping[str, Any]], *, trusted: bool = False) -> None:
        """Capture ``records`` all or none (one buffer check, one write, one wait).

        ``trusted``: the records were built by driftloop itself and are already normalised (``ts`` in UTC
        ISO-8601 with microseconds): no per-field checks. With "process" durability the appends of one
        event-loop iteration share one frame and one ``write`` at the next iteration (``LoopGroups``).
        """
        if not records:
            return
        if self._process:
            await self._groups.join(asyncio.get_running_loop(), _group(records, trusted=trusted))
            return
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._submit(records, (loop, future), check=not trusted)
        await future

    def append_nowait(
        self, records: Sequence[Mapping[str, Any]], *, trusted: bool = False
    ) -> Awaitable[None] | None:
        """:meth:`append_many_async` for a caller on the event loop that has a whole batch at once (the
        service's micro-batch): with "process" durability the records are written right here (raises
        what the awaitable would) and None is returned; with "fsync" durability, the awaitable."""
        if not self._process:
            return self.append_many_async(records, trusted=trusted)
        self._write_frame(encode(_group(records, trusted=trusted)), 1)  # ValueError: refused, unwritten
        return None

    def flush(self, timeout: float, *, compact: bool = True) -> bool:
        """Seal the active segment and ship everything, then (``compact``) compact what landed into
        Parquet; True once all that is done within ``timeout``."""
        if self._state == "new":
            raise RuntimeError("CaptureStore.start() was not called")
        deadline = time.monotonic() + timeout
        while self._buffer.used:
            self._durability.request_seal()
            self._shipper.kick()  # retry a failed segment now rather than after its backoff
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._buffer.wait_shrink(left)
        return not compact or self._compactor.compact_now(max(deadline - time.monotonic(), 0.0))

    def close(self, timeout: float = 10.0, *, compact: bool = True) -> None:
        """Refuse new appends, ship what can be shipped and (``compact``) compact what landed within
        ``timeout``, stop the threads.

        Compacting at a clean stop is what lets a `driftloop monitor` right after it see the service's
        last records (monitoring reads Parquet only, decision 0050). Whatever is not shipped stays in
        the WAL for the next :meth:`start`, whatever is not compacted stays landed; nothing is deleted.
        """
        with self._lifecycle_lock:
            if self._state != "running":
                self._state = "closed"
                return
            self._state = "closing"
        deadline = time.monotonic() + timeout
        self.flush(timeout, compact=compact)
        self._durability.stop()  # accepted records still get their write and sync
        self._writer.close()
        compactor_done = self._compactor.stop(max(deadline - time.monotonic(), 1.0))
        shipper_done = self._shipper.stop(max(deadline - time.monotonic(), 1.0))
        with self._lifecycle_lock:
            self._state = "closed"
        if shipper_done and compactor_done:
            self._release()
        else:
            # A thread still in its last attempt may yet ship (and delete) a segment: the directory stays
            # locked until it has ended, or a store started next on it would ship the same segment.
            threading.Thread(target=self._release_when_stopped, name="capture-release", daemon=True).start()
        pending, segments = self._buffer.used, self._shipper.backlog
        if pending:
            log.warning(
                "capture: %d bytes in %d segment(s) stay in %s for the next start",
                pending,
                segments,
                self._dir,
            )

    def wait_released(self, timeout: float) -> bool:
        """True once a closed store has let go of ``wal_dir`` (its threads ended) within ``timeout``."""
        return self._released.wait(timeout)

    def _release_when_stopped(self) -> None:
        self._compactor.stop(None)
        self._shipper.stop(None)
        self._release()

    def _release(self) -> None:
        self._helper.shutdown()
        with self._lifecycle_lock:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None
        self._released.set()

    def stats(self) -> CaptureStats:
        """A snapshot of the counters (each part's own, read one after the other)."""
        shipper, health = self._shipper, self._health
        return CaptureStats(
            pending_bytes=self._buffer.used,
            pending_segments=shipper.backlog + self._writer.has_active,
            shipped_records=shipper.shipped_records,
            shipped_segments=shipper.shipped_segments,
            failures=shipper.failures,
            rejected=self._buffer.rejected,
            landed_segments=self._compactor.landed,
            compacted_segments=self._compactor.compacted,
            last_error=health.last_error,
            store_reachable=health.reachable,
            outages=health.outages,
        )

    def __enter__(self) -> CaptureStore:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _submit(self, records: Sequence[Mapping[str, Any]], waiter: Waiter, *, check: bool) -> None:
        typed = [normalize(r) for r in records] if check else [from_trusted(r) for r in records]
        frame = encode_one(typed[0]) if check and len(typed) == 1 else encode(typed)
        self._admit(len(frame), 1)
        try:
            self._durability.submit(frame, waiter)
        except BaseException:
            self._buffer.release(len(frame))
            raise

    def _admit(self, size: int, appends: int) -> None:
        """Refuse ``size`` more bytes when closed, broken or over the buffer limit; else reserve them."""
        state = self._state  # read without the lock: close() refuses stragglers again further down
        if state == "new":
            raise RuntimeError("CaptureStore.start() was not called")
        broken = self._durability.broken
        if state != "running" or broken:
            raise StorageUnavailableError(f"the capture store refuses records: {broken or 'it is closed'}")
        self._buffer.reserve(size, appends)
        self._compactor.last_append = time.monotonic()

    def _write_groups(self, groups: list[Group]) -> list[BaseException | None]:
        """ "process" durability: one event-loop iteration's appends as one frame and one write; per group,
        None or why it was refused. A group that cannot be encoded is refused alone."""
        outcomes: list[BaseException | None] = [None] * len(groups)
        try:
            frame = encode([record for group in groups for record in group])
        except ValueError:
            frames = []
            for i, group in enumerate(groups):
                try:
                    frames.append(encode(group))
                except ValueError as exc:
                    outcomes[i] = exc
            frame = b"".join(frames)
        accepted = outcomes.count(None)
        if accepted:
            try:
                self._write_frame(frame, accepted)
            except DriftloopError as exc:
                outcomes = [exc if outcome is None else outcome for outcome in outcomes]
        return outcomes

    def _write_frame(self, frame: bytes, appends: int) -> None:
        """ "process" durability: ``appends`` appends' frame, admitted and written, or refused whole."""
        self._admit(len(frame), appends)
        try:
            self._durability.submit(frame, None)
        except BaseException:
            self._buffer.release(len(frame))
            raise


def _group(records: Sequence[Mapping[str, Any]], *, trusted: bool) -> list[CaptureRecord]:
    """The records as written: trusted ones translated as they are, others checked field by field."""
    if trusted:
        return [from_trusted(r) for r in records]
    return [normalize(r) for r in records]
