"""Local-directory backend: atomic writes through a temporary file and ``os.replace``."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from driftloop.errors import NotFoundError, StorageError
from driftloop.storage.contract import ObjectInfo, validate_key

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pyarrow.fs

# In-flight files carry this marker; ``list`` hides them and a crash leaves only these behind.
_TMP_MARK = ".tmp-driftloop-"


class LocalStore:
    """A directory on the local filesystem. Writes are durable (fsync) and atomic (rename)."""

    def __init__(self, root: str) -> None:
        self._root = Path(root).expanduser().resolve()

    @property
    def root(self) -> str:
        return str(self._root)

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def read_bytes(self, key: str) -> bytes:
        with self.open_read(key) as fh:
            return fh.read()

    def write_bytes(self, key: str, data: bytes) -> None:
        with self.open_write(key) as fh:
            fh.write(data)

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{_TMP_MARK}", dir=path.parent)
        except OSError as exc:
            raise _error("write", path, exc) from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise _error("write", path, exc) from exc
            raise
        fsync_dir(path.parent)

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise _error("read", path, exc) from exc
        with fh:
            yield fh

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Walk only the deepest directory the prefix names, then filter by the remaining key prefix.
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._root / directory if directory else self._root
        if not base.is_dir():
            return
        found = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if _TMP_MARK in name:
                    continue
                full = Path(dirpath, name)
                key = full.relative_to(self._root).as_posix()
                if key.startswith(prefix):
                    found.append((key, full))
        for key, full in sorted(found):
            try:
                st = full.stat()
            except FileNotFoundError:  # deleted while listing
                continue
            yield ObjectInfo(key=key, size=st.st_size, modified=datetime.fromtimestamp(st.st_mtime, UTC))

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise _error("delete", path, exc) from exc

    def arrow_filesystem(self) -> tuple[pyarrow.fs.FileSystem, str]:
        import pyarrow.fs

        return pyarrow.fs.LocalFileSystem(), str(self._root)

    def _path(self, key: str) -> Path:
        return self._root / validate_key(key)

    def __repr__(self) -> str:
        return f"LocalStore({self.root!r})"


def fsync_dir(directory: Path) -> None:
    """Make entries created or renamed in ``directory`` durable (a power cut can forget them otherwise)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _error(action: str, path: Path, exc: OSError) -> StorageError | NotFoundError:
    if isinstance(exc, FileNotFoundError) and action == "read":
        return NotFoundError(f"no such object: {path}")
    if isinstance(exc, IsADirectoryError | NotADirectoryError):
        return StorageError(f"cannot {action} {path}: a directory is in the way")
    reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
    return StorageError(f"cannot {action} {path}: {reason}")
