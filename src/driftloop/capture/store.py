"""The capture store: every prediction and feedback label, kept crash-safe and shipped as Parquet.

**Durability guarantee.** :meth:`CaptureStore.append` returns only once the record is in the local
write-ahead log (WAL) *and* the WAL has been ``fsync``-ed, so an acknowledged record survives ``kill -9``
and, on a disk that honours ``fsync``, a power loss; it then reaches the object store at least once,
and because shipping is idempotent it appears there once. Nothing acknowledged is dropped: when the
local buffer is full (``capture.max_buffer_bytes``) or the WAL cannot be written, ``append`` raises
(:class:`~driftloop.errors.CaptureFullError` or :class:`~driftloop.errors.StorageUnavailableError`,
both HTTP 503) and the record is not acknowledged; such a record may or may not be captured.

How (docs/capture.md has the details and every failure case): the WAL is a series of segments
``seg-<20-digit sequence>.wal`` of framed records, sealed by size or age; a shipper thread lands each
sealed segment in the object store, deletes it only then, retries failures with backoff (saying so once
per outage: :mod:`driftloop.capture.outage`) and compacts what landed into Parquet once the service is
idle (:mod:`driftloop.capture.landing`). :meth:`CaptureStore.start` recovers an earlier process's segments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from driftloop.capture.landing import compact, land, landed_objects, landing_key
from driftloop.capture.outage import ShipperHealth
from driftloop.capture.records import encode, normalize
from driftloop.capture.wal import (
    Active,
    Group,
    Helper,
    LoopGroups,
    Segment,
    Waiter,
    lock_dir,
    recover,
    settle,
    wal_error,
    write_all,
    writer_id,
)
from driftloop.errors import (
    CaptureFullError,
    ConfigError,
    DriftloopError,
    StorageUnavailableError,
)
from driftloop.storage import fsync_dir

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping, Sequence
    from types import TracebackType

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
    last_error: str | None  # the most recent shipping failure
    store_reachable: bool  # the last shipping (or compaction) attempt succeeded
    outages: int  # times the object store stopped answering the shipper


class CaptureStore:
    """A crash-safe, append-only sink for capture records; see the module docstring for the guarantee.

    ``wal_dir`` is locked for the store's lifetime (one store per directory, across processes).
    """

    def __init__(self, store: ObjectStore, wal_dir: Path, cfg: CaptureSettings) -> None:
        self._store = store
        self._dir = Path(wal_dir)
        self._cfg = cfg
        self._lock = threading.RLock()  # reentrant: a failed request-path write seals under it
        self._work = threading.Condition(self._lock)  # writer: records queued, seal or stop requested
        self._ship = threading.Condition(self._lock)  # shipper: segment sealed, retry kicked, stop
        self._done = threading.Condition(self._lock)  # flush: the buffer shrank
        self._state: Literal["new", "running", "closing", "closed"] = "new"
        self._queue: list[tuple[bytes, Waiter]] = []
        self._queue_bytes = 0
        self._first_queued = 0.0
        self._active: Active | None = None
        self._unsynced = False  # "process" durability: written since the last fdatasync
        self._sealed: deque[Segment] = deque()
        self._sealed_bytes = 0
        self._seal_requested = self._kick = self._stop_writer = self._stop_shipper = False
        self._writer_error: str | None = None
        self._last_seq = 0
        self._writer_id = ""
        self._lock_fd: int | None = None
        self._threads: list[threading.Thread] = []
        self._helper = Helper(cfg.convert_in_subprocess)  # where segments are landed and compacted
        self._shipped_records = self._shipped_segments = self._failures = self._rejected = 0
        # Compaction of landed segments (driftloop.capture.landing), by the shipper thread when idle.
        self._landed = 0  # segments this store landed and has not compacted
        self._leftovers = True  # an earlier process may have left some: the first compaction looks
        self._compacted = 0
        self._compact_requested = False  # flush: compact now, idle or not
        self._compact_retry_at = 0.0  # monotonic; after a failed compaction
        self._last_append = 0.0  # monotonic
        self._last_error: str | None = None
        self._health = ShipperHealth(store.root)  # one log line per outage and one per recovery
        self._groups = LoopGroups(self._write_groups)  # "process" durability, from event loops

    def start(self) -> None:
        """Lock ``wal_dir``, recover what an earlier process left there and start the threads.

        Raises :class:`ConfigError` when the directory is unusable, :class:`ConflictError` when another
        store (in this or another process) holds it.
        """
        with self._lock:
            if self._state != "new":
                raise RuntimeError("a CaptureStore can be started once")
            try:
                self._dir.mkdir(parents=True, exist_ok=True)
                self._lock_fd = lock_dir(self._dir)
                self._writer_id = writer_id(self._dir)
                self._recover()
            except OSError as exc:
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None
                raise ConfigError(
                    f"capture.wal_dir {self._dir} is not usable: {exc.strerror or exc}"
                ) from exc
            self._helper.start()
            for name, target in (("writer", self._write_loop), ("shipper", self._ship_loop)):
                thread = threading.Thread(target=target, name=f"capture-{name}", daemon=True)
                thread.start()
                self._threads.append(thread)
            self._state = "running"

    def append(self, record: Mapping[str, Any]) -> None:
        """Capture ``record``; return once it is fsynced to the WAL. Thread-safe.

        Raises ``ValueError`` naming the field for a malformed record, :class:`CaptureFullError` when
        the buffer is full, :class:`StorageUnavailableError` when the WAL cannot be written or the store
        is closed.
        """
        future: Future[None] = Future()
        future.set_running_or_notify_cancel()
        self._submit([record], future)
        future.result()

    async def append_async(self, record: Mapping[str, Any]) -> None:
        """:meth:`append` for the event loop: waits for the fsync without blocking the loop."""
        await self.append_many_async([record])

    async def append_many_async(self, records: Sequence[Mapping[str, Any]], *, trusted: bool = False) -> None:
        """Capture ``records`` all or none (one buffer check, one write, one fsync wait).

        ``trusted``: the records were built by driftloop itself and are already normalised (``ts`` in UTC
        ISO-8601 with microseconds): no per-field checks. With "process" durability the appends of one
        event-loop iteration share one frame and one ``write`` at the next iteration (``LoopGroups``).
        """
        if not records:
            return
        if self._cfg.durability == "process":
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
        if self._cfg.durability != "process":
            return self.append_many_async(records, trusted=trusted)
        self._write_frame(encode(_group(records, trusted=trusted)), 1)  # ValueError: refused, unwritten
        return None

    def flush(self, timeout: float, *, compact: bool = True) -> bool:
        """Seal the active segment and ship everything, then (``compact``) compact what landed into Parquet;
        True once all that is done within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._state == "new":
                raise RuntimeError("CaptureStore.start() was not called")
            while self._pending_bytes():
                if self._active is not None or self._queue:
                    self._seal_requested = True
                    self._work.notify()
                self._kick = True  # retry a failed segment now rather than after its backoff
                self._ship.notify()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._done.wait(left)
            while compact and (self._landed or self._leftovers):
                self._compact_requested = True
                self._ship.notify()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._done.wait(left)
            return True

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new appends, ship what can be shipped within ``timeout``, stop the threads.

        Whatever is not shipped stays in the WAL for the next :meth:`start`; nothing is deleted.
        """
        with self._lock:
            if self._state != "running":
                self._state = "closed"
                return
            self._state = "closing"
        deadline = time.monotonic() + timeout
        self.flush(timeout, compact=False)  # compaction can wait for the next start or a reader
        with self._lock:
            self._stop_writer = True
            self._work.notify()
        self._threads[0].join()  # accepted records still get their write and fsync
        with self._lock:
            self._stop_shipper = True
            self._ship.notify()
        self._threads[1].join(max(deadline - time.monotonic(), 1.0))
        if not self._threads[1].is_alive():
            self._helper.shutdown()
        with self._lock:
            self._state = "closed"
            pending, segments = self._pending_bytes(), len(self._sealed)
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None
        if pending:
            log.warning("capture: %d bytes in %d segment(s) stay in %s for the next start",
                        pending, segments, self._dir)  # fmt: skip

    def stats(self) -> CaptureStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return CaptureStats(
                pending_bytes=self._pending_bytes(),
                pending_segments=len(self._sealed) + (self._active is not None),
                shipped_records=self._shipped_records,
                shipped_segments=self._shipped_segments,
                failures=self._failures,
                rejected=self._rejected,
                landed_segments=self._landed,
                compacted_segments=self._compacted,
                last_error=self._last_error,
                store_reachable=self._health.reachable,
                outages=self._health.outages,
            )

    def __enter__(self) -> CaptureStore:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- request path ---------------------------------------------------------------------------------

    def _submit(
        self, records: Sequence[Mapping[str, Any]], waiter: Waiter | None, *, check: bool = True
    ) -> None:
        if check:
            frame = b"".join(encode(normalize(record)) for record in records)
        else:  # trusted: already normalised; one frame for all of them
            frame = encode(_group(records, trusted=True))
        with self._lock:
            self._admit(len(frame), 1)
            if self._cfg.durability == "process":
                self._write_now(frame)
                if waiter is not None:
                    settle([waiter], None)
                return
            if waiter is None:
                raise RuntimeError("a group-commit append needs a waiter")
            if not self._queue:
                self._first_queued = time.monotonic()
                self._work.notify()
            self._queue.append((frame, waiter))
            self._queue_bytes += len(frame)

    def _admit(self, size: int, appends: int) -> None:
        """Under the lock: refuse ``size`` more bytes when closed, broken or over the buffer limit."""
        if self._state == "new":
            raise RuntimeError("CaptureStore.start() was not called")
        if self._state != "running" or self._writer_error:
            reason = self._writer_error or "it is closed"
            raise StorageUnavailableError(f"the capture store refuses records: {reason}")
        pending = self._pending_bytes()
        if pending + size > self._cfg.max_buffer_bytes:
            self._rejected += appends
            raise CaptureFullError(
                f"capture buffer full: {pending} bytes wait to be shipped to {self._store.root} "
                f"(capture.max_buffer_bytes = {self._cfg.max_buffer_bytes}); retry later"
            )
        self._last_append = time.monotonic()

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
        with self._lock:
            self._admit(len(frame), appends)
            self._write_now(frame)

    def _write_now(self, frame: bytes) -> None:
        """ "process" durability: the frame goes into the WAL file (the kernel's page cache) right here,
        under the lock, before the caller acknowledges anything; the writer thread syncs it soon after."""
        try:
            if self._active is None:
                self._active = self._open_segment()
            write_all(self._active.fd, frame)
        except Exception as exc:  # disk full, I/O error: refuse this record, keep the ones before it
            error = wal_error(self._dir, exc)
            log.error("capture: %s", error.headline)
            self._abandon_active()
            raise error from exc
        self._active.size += len(frame)
        if not self._unsynced:
            self._unsynced = True
            self._work.notify()

    def _pending_bytes(self) -> int:
        return self._queue_bytes + self._sealed_bytes + (self._active.size if self._active else 0)

    # -- writer thread: group commit into the WAL -----------------------------------------------------

    def _write_loop(self) -> None:
        try:
            self._write_until_stopped()
        except BaseException as exc:  # a bug: refuse new records rather than let appends hang forever
            log.exception("capture writer stopped")
            with self._lock:
                self._writer_error = f"the WAL writer stopped: {exc!r}"
                batch, self._queue, self._queue_bytes = self._queue, [], 0
            error = StorageUnavailableError(f"capture: {self._writer_error}")
            settle([waiter for _, waiter in batch], error)

    def _write_until_stopped(self) -> None:
        window = self._cfg.group_commit_ms / 1000
        while True:
            with self._lock:
                while not (self._queue or self._seal_requested or self._stop_writer or self._rotation_due()):
                    if self._unsynced:
                        break
                    self._work.wait(self._rotation_wait())
                if self._unsynced and not (self._seal_requested or self._stop_writer):
                    # "process" durability: let writes gather for up to sync_interval_ms, then one sync.
                    self._work.wait(self._cfg.sync_interval_ms / 1000)
                # Group commit: appends arriving within the window share this write and fsync.
                while self._queue and not self._stop_writer:
                    left = self._first_queued + window - time.monotonic()
                    if left <= 0:
                        break
                    self._work.wait(left)
                batch, self._queue = self._queue, []
                waiters = [waiter for _, waiter in batch]
                seal, self._seal_requested = self._seal_requested, False
                stop = self._stop_writer
            if batch:
                self._write(b"".join(frame for frame, _ in batch), waiters)
            self._sync_written()
            if seal or stop or self._rotation_due():
                self._seal()
            if stop:
                return

    def _write(self, data: bytes, waiters: list[Waiter]) -> None:
        try:
            if self._active is None:
                self._active = self._open_segment()
            write_all(self._active.fd, data)
            # fdatasync: the data and the size that makes it readable, not the timestamps (~40 % cheaper).
            os.fdatasync(self._active.fd)
        except Exception as exc:  # disk full, I/O error, or a bug: the waiters must hear of it either way
            error = wal_error(self._dir, exc)
            log.error("capture: %s", error.headline)
            self._abandon_active()
            with self._lock:
                self._queue_bytes -= len(data)
            settle(waiters, error)
            return
        with self._lock:
            self._queue_bytes -= len(data)
            self._active.size += len(data)
        settle(waiters, None)

    def _sync_written(self) -> None:
        """ "process" durability: fdatasync what the request path wrote (outside the lock)."""
        with self._lock:
            active, unsynced, self._unsynced = self._active, self._unsynced, False
            if active is None or not unsynced:
                return
            fd = os.dup(active.fd)  # stays valid even if the segment is sealed meanwhile
        try:
            os.fdatasync(fd)
        except OSError as exc:
            log.error("capture: cannot sync the write-ahead log in %s: %s", self._dir, exc)
        finally:
            os.close(fd)

    def _open_segment(self) -> Active:
        # Nanosecond clock, never reused: keys stay unique after every segment has been shipped.
        self._last_seq = max(time.time_ns(), self._last_seq + 1)
        path = self._dir / f"seg-{self._last_seq:020d}.wal"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            fsync_dir(self._dir)  # the name must be durable before any record in it is acknowledged
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return Active(path=path, size=0, fd=fd, opened=time.monotonic())

    def _abandon_active(self) -> None:
        # A failed write may have left part of a record: cut back to the last fsynced size and seal, so
        # no later record lands behind garbage (recovery would stop there and lose it).
        if self._active is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._active.fd, self._active.size)
            self._seal()

    def _seal(self) -> None:
        with self._lock:  # under the lock: the request path may be writing to this segment
            active = self._active
            if active is None:
                return
            with contextlib.suppress(OSError):
                os.fdatasync(active.fd)  # a no-op when every write was already synced ("fsync" mode)
            with contextlib.suppress(OSError):
                os.close(active.fd)
            self._active = None
            if active.size:
                self._sealed.append(Segment(active.path, active.size))
                self._sealed_bytes += active.size
                self._ship.notify()
            self._done.notify_all()
        if not active.size:
            with contextlib.suppress(OSError):
                active.path.unlink()

    def _rotation_due(self) -> bool:
        active = self._active
        return active is not None and (
            active.size >= self._cfg.segment_max_bytes
            or time.monotonic() - active.opened >= self._cfg.segment_max_age_s
        )

    def _rotation_wait(self) -> float | None:
        if self._active is None:
            return None
        return max(self._active.opened + self._cfg.segment_max_age_s - time.monotonic(), 0.0)

    def _recover(self) -> None:
        for path, size, seq in recover(self._dir):
            self._last_seq = max(self._last_seq, seq)
            if size:
                self._sealed.append(Segment(path, size))
                self._sealed_bytes += size
        if self._sealed:
            log.info("capture: recovered %d segment(s), %d bytes, from %s",
                     len(self._sealed), self._sealed_bytes, self._dir)  # fmt: skip

    # -- shipper thread: sealed segments → the object store; landed segments → Parquet when idle ------

    def _ship_loop(self) -> None:
        delay = self._cfg.retry_initial_s
        while True:
            with self._lock:
                while not self._sealed and not self._stop_shipper:
                    wait = self._compaction_wait()
                    if wait == 0:
                        break
                    self._ship.wait(wait)
                if self._stop_shipper:
                    return
                segment = self._sealed[0] if self._sealed else None
                self._kick = False
            if segment is None:
                self._compact_landed()
                continue
            try:
                count = self._ship_segment(segment)
            except Exception as exc:  # storage down, or a bug: either way the segment stays
                message = _message(exc)
                with self._lock:
                    self._failures += 1
                    self._last_error, pending = message, self._pending_bytes()
                bug = not isinstance(exc, DriftloopError | OSError)
                self._health.failed(message, pending_bytes=pending, bug=bug)
                with self._lock:
                    self._ship.wait_for(lambda: self._kick or self._stop_shipper, timeout=delay)
                delay = min(delay * 2, self._cfg.retry_max_s)
                continue
            delay = self._cfg.retry_initial_s
            with self._lock:
                self._sealed.popleft()
                self._sealed_bytes -= segment.size
                self._shipped_records += count
                self._shipped_segments += 1
                self._done.notify_all()
                backlog = len(self._sealed)
            self._health.succeeded(count, backlog=backlog)

    def _ship_segment(self, segment: Segment) -> int:
        """Land the segment as it is (compressed): its conversion to Parquet waits for an idle moment."""
        try:
            count, body = self._helper(land, segment.path.absolute())
        except FileNotFoundError:
            log.error("capture: segment %s vanished before it was shipped", segment.path)
            return 0
        self._store.write_bytes(landing_key(f"{self._writer_id}-{segment.path.stem}"), body)
        segment.path.unlink(missing_ok=True)  # only now: it is in the object store
        with self._lock:
            self._landed += 1
        return count

    def _compaction_wait(self) -> float | None:
        """Under the lock: seconds until the shipper should compact (0: now), None: no reason to."""
        idle = self._cfg.compact_idle_s
        if not (self._landed or self._leftovers) or not (self._compact_requested or idle):
            return None
        due = max(self._compact_retry_at, 0 if self._compact_requested else self._last_append + idle)
        return max(due - time.monotonic(), 0.0)

    def _compact_landed(self) -> None:
        """Compact this writer's landed segments, one at a time, while nothing else wants the CPU."""

        def proceed() -> bool:
            with self._lock:
                return not (self._sealed or self._stop_shipper) and self._compaction_wait() == 0

        try:
            done = compact(self._store, writer=self._writer_id, proceed=proceed,
                           convert=lambda data, stem: self._helper(landed_objects, data, stem))  # fmt: skip
        except Exception as exc:  # storage down, or a bug: the landed segments stay; retry later
            with self._lock:
                self._compact_retry_at = time.monotonic() + self._cfg.retry_max_s
                self._last_error, pending = _message(exc), self._pending_bytes()
            bug = not isinstance(exc, DriftloopError | OSError)
            self._health.failed(f"compacting: {_message(exc)}", pending_bytes=pending, bug=bug)
            return
        with self._lock:
            self._compacted += done.segments
            # Complete: everything listed is compacted (nothing landed meanwhile: this thread lands).
            self._landed = 0 if done.complete else max(self._landed - done.segments, 0)
            self._leftovers = self._leftovers and not done.complete
            if not (self._landed or self._leftovers):
                self._compact_requested = False
            self._done.notify_all()
            backlog = len(self._sealed)
        self._health.succeeded(0, backlog=backlog)


def _message(exc: Exception) -> str:
    return exc.headline if isinstance(exc, DriftloopError) else f"{type(exc).__name__}: {exc}"


def _group(records: Sequence[Mapping[str, Any]], *, trusted: bool) -> Group:
    """The records as written: trusted ones as they are (as dicts), others normalised and checked."""
    if trusted:
        return [r if isinstance(r, dict) else dict(r) for r in records]
    return [normalize(r) for r in records]
