"""The write-ahead log's file and wake-up primitives, shared by the capture store's threads."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import os
import re
import signal
import uuid
from concurrent.futures import Future
from typing import TYPE_CHECKING, TypeAlias

from driftloop.errors import CaptureFullError, ConflictError, StorageUnavailableError
from driftloop.storage import fsync_dir

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "Waiter",
    "init_helper",
    "lock_dir",
    "settle",
    "settle_here",
    "wal_error",
    "write_all",
    "writer_id",
]

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
