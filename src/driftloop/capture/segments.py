"""WAL segment files: naming, opening, the directory's lock and writer id, and recovery after a crash.

A segment is ``seg-<20-digit sequence>.wal`` of frames (:mod:`driftloop.capture.frames`). Sequences come
from the nanosecond clock and are never reused, so object keys stay unique after every segment has been
shipped and deleted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from driftloop.capture.frames import whole_frames
from driftloop.errors import CaptureFullError, ConflictError, StorageUnavailableError
from driftloop.storage import fsync_dir

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Active", "Segment", "lock_dir", "open_segment", "recover", "wal_error", "write_all", "writer_id"]

log = logging.getLogger(__name__)
_WRITER_ID = re.compile(r"^[0-9a-f]{12}$")
_SEGMENT = re.compile(r"^seg-(\d{20})\.wal$")


@dataclass
class Segment:
    """A sealed segment: written, synced, waiting to be shipped."""

    path: Path
    size: int  # bytes of whole records (what accounting and recovery trust)


@dataclass
class Active(Segment):
    """The segment being written."""

    fd: int
    opened: float  # monotonic


def open_segment(directory: Path, after: int) -> Active:
    """A new, empty segment whose sequence is above ``after``; its name is durable before it returns
    (no record in it may be acknowledged before that). Raises ``OSError``."""
    seq = max(time.time_ns(), after + 1)
    path = directory / f"seg-{seq:020d}.wal"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
    try:
        fsync_dir(directory)
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    return Active(path=path, size=0, fd=fd, opened=time.monotonic())


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def wal_error(directory: Path, exc: Exception) -> StorageUnavailableError:
    """What an append hears when the WAL cannot take its record (both are HTTP 503)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return CaptureFullError(f"the capture write-ahead log in {directory} is out of disk space")
    return StorageUnavailableError(f"cannot write the capture write-ahead log in {directory}: {exc}")


def lock_dir(directory: Path) -> int:
    """Hold ``directory`` for this process (the lock goes with the returned descriptor); ConflictError
    when another store holds it."""
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


def recover(directory: Path) -> tuple[list[Segment], int]:
    """An earlier process's segments in ``directory``, in order, and the highest sequence seen.

    Each is cut back to its first torn or corrupt frame (bad length or CRC); one without a whole frame is
    deleted (its sequence still counts, so it is never reused). Frames are not parsed here: a frame that
    is whole but not a record is the compactor's to quarantine, never a reason to cut what follows.
    """
    found, last = [], 0
    for path in sorted(directory.glob("seg-*.wal")):
        match = _SEGMENT.match(path.name)
        if match is None:
            continue
        last = max(last, int(match.group(1)))
        data = path.read_bytes()
        end = 0
        for _, frame_end in whole_frames(data):
            end = frame_end
        if end < len(data):
            log.warning(
                "capture: %s ends in %d bytes of torn or corrupt record; truncated at %d",
                path,
                len(data) - end,
                end,
            )
            with path.open("r+b") as fh:
                fh.truncate(end)
                os.fsync(fh.fileno())
        if end:
            found.append(Segment(path, end))
        else:
            path.unlink()
    return found, last
