"""The write-ahead log's file and wake-up primitives, shared by the capture store's threads, and the
entry points of its conversion helper process."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import gc
import logging
import multiprocessing
import os
import re
import signal
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from driftloop.capture.records import decode, parquet_objects
from driftloop.errors import CaptureFullError, ConflictError, StorageUnavailableError
from driftloop.storage import fsync_dir

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = [
    "Active",
    "Helper",
    "LoopGroups",
    "Segment",
    "Waiter",
    "in_helper",
    "init_helper",
    "lock_dir",
    "recover",
    "settle",
    "settle_here",
    "wal_error",
    "warm_up",
    "write_all",
    "writer_id",
]

_T = TypeVar("_T")
log = logging.getLogger(__name__)
_WRITER_ID = re.compile(r"^[0-9a-f]{12}$")


def init_helper(parent: int) -> None:
    """In the conversion helper: yield the CPU to requests (background work), and exit when the service
    dies, even by ``kill -9`` (Linux), never linger."""
    with contextlib.suppress(OSError):
        os.nice(10)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(0)


# Who waits for an append: a thread (a running concurrent Future) or a coroutine (its loop and future).
Waiter: TypeAlias = Future[None] | tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]


def settle(waiters: list[Waiter], error: BaseException | None) -> None:
    """Wake every waiter of a group: one ``call_soon_threadsafe`` per event loop, not one per append."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for waiter in waiters:
        if isinstance(waiter, Future):
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)
        else:
            by_loop.setdefault(waiter[0], []).append(waiter[1])
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(settle_here, futures, error)


def settle_here(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if not future.done():  # cancelled: the client went away
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


Group: TypeAlias = "list[dict[str, Any]]"  # the records of one append, all or none


class LoopGroups:
    """Appends made on an event loop during one of its iterations, written together at the next.

    Under load the requests of a micro-batch finish in the same loop iteration; each used to pay a
    ``write`` system call (~10 µs in the service) and a lock. :meth:`join` files an append and returns
    a future of its own (a cancelled waiter never cancels the others'); the first append of an
    iteration schedules :attr:`write` for the next one, which gets every group filed meanwhile and
    returns, per group, None (written) or the exception that group's waiter gets.
    """

    def __init__(self, write: Callable[[list[Group]], list[BaseException | None]]) -> None:
        self.write = write
        self._open: dict[asyncio.AbstractEventLoop, tuple[list[Group], list[asyncio.Future[None]]]] = {}

    def join(self, loop: asyncio.AbstractEventLoop, group: Group) -> asyncio.Future[None]:
        pending = self._open.get(loop)
        if pending is None:
            pending = self._open[loop] = ([], [])
            loop.call_soon(self._close, loop)
        future = loop.create_future()
        pending[0].append(group)
        pending[1].append(future)
        return future

    def _close(self, loop: asyncio.AbstractEventLoop) -> None:
        groups, futures = self._open.pop(loop)
        try:
            outcomes = self.write(groups)
        except Exception as exc:  # a bug in writing: every waiter hears of it rather than hang
            outcomes = [exc] * len(groups)
        for future, outcome in zip(futures, outcomes, strict=True):
            if not future.done():  # cancelled: the client went away
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def lock_dir(directory: Path) -> int:
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConflictError(
            f"capture.wal_dir {directory} is in use by another capture store; give each process its own"
        ) from None
    return fd


def writer_id(directory: Path) -> str:
    """This WAL's name in object keys: stable across restarts, distinct between hosts sharing a store."""
    path = directory / "writer-id"
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text().strip()
        if _WRITER_ID.match(text):
            return text
    ident = uuid.uuid4().hex[:12]
    tmp = directory / "writer-id.tmp"
    with tmp.open("w") as fh:
        fh.write(ident)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(directory)
    return ident


def wal_error(directory: Path, exc: Exception) -> StorageUnavailableError:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return CaptureFullError(f"the capture write-ahead log in {directory} is out of disk space")
    return StorageUnavailableError(f"cannot write the capture write-ahead log in {directory}: {exc}")


def in_helper(task: Callable[..., _T], *args: Any) -> _T:
    """``task(*args)`` in the helper process (landing a segment, compacting one), with the
    cyclic collector paused: a segment's records are ~200,000 containers (none in cycles), and the
    collections they set off were half of the conversion's CPU time. The helper runs only these, so
    pausing it there affects nothing else."""
    gc.disable()
    try:
        return task(*args)
    finally:
        gc.enable()


def warm_up() -> None:
    """The helper's first task: load what conversion needs before the first segment arrives (Arrow
    imports pandas at its first array: ~1 s of CPU that would otherwise land under load)."""
    ts = "2026-01-01T00:00:00.000000+00:00"
    batch = {"kind": "prediction_batch", "ts": ts, "model_name": "m", "model_version": 1,
             "latency_ms": 1.0, "fallback": False, "endpoint": "/", "inputs": [{}],
             "outputs": [{"id": "0", "score": 0.5}]}  # fmt: skip
    requests = {"kind": "request_batch", "ts": ts, "model_name": "m", "model_version": 1, "fallback": False,
                "threshold": 0.5, "ids": ["1"], "scores": [0.5], "rows": [1], "latency_ms": [1.0],
                "endpoints": ["/v1/predict"], "bodies": [b'{"instances": [{}]}']}  # fmt: skip
    feedback = {"kind": "feedback", "prediction_id": "0", "ts": ts, "label": 1.0, "source": "api"}
    rejection = {"kind": "rejection", "ts": ts, "model_name": "m", "endpoint": "/", "rows": 1, "errors": []}
    for _ in parquet_objects([batch, requests, feedback, rejection], "warm-up"):
        pass


_SEGMENT = re.compile(r"^seg-(\d{20})\.wal$")


def recover(directory: Path) -> list[tuple[Path, int, int]]:
    """An earlier process's segments in ``directory``, in order: (path, bytes of whole records, sequence
    number). Each is cut back to its first torn or corrupt record; one with no whole record is deleted
    (size 0; its sequence number still counts, so it is never reused)."""
    found = []
    for path in sorted(directory.glob("seg-*.wal")):
        match = _SEGMENT.match(path.name)
        if match is None:
            continue
        data = path.read_bytes()
        records, end = decode(data)
        if end < len(data):
            log.warning("capture: %s ends in %d bytes of torn or corrupt record; truncated at %d",
                        path, len(data) - end, end)  # fmt: skip
            with path.open("r+b") as fh:
                fh.truncate(end)
                os.fsync(fh.fileno())
        if not records:
            path.unlink()
            end = 0
        found.append((path, end, int(match.group(1))))
    return found


@dataclass
class Segment:
    """A sealed WAL segment of the capture store."""

    path: Path
    size: int  # bytes of whole records (what accounting and recovery trust)


@dataclass
class Active(Segment):
    """The segment being written."""

    fd: int
    opened: float  # monotonic


class Helper:
    """The capture store's helper process, where segments are landed and compacted (pure-Python-heavy
    work that would otherwise take the GIL from the requests); or, when not ``enabled``, the caller's
    thread. A helper that died is replaced on the next task."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Spawn the process now (interpreter, pyarrow: ~1 s of CPU) rather than under load."""
        if self.enabled and self._pool is None:
            self._pool = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=init_helper,
                initargs=(os.getpid(),),
            )  # fmt: skip
            self._pool.submit(warm_up)

    def __call__(self, task: Callable[..., _T], *args: Any) -> _T:
        if not self.enabled:
            return task(*args)
        self.start()
        assert self._pool is not None
        try:
            return self._pool.submit(in_helper, task, *args).result()
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            raise

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
