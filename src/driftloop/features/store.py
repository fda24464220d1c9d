"""Feature snapshots versioned with DVC.

Layout under the storage root (local or S3)::

    features/dvc/files/md5/ab/cdef…            DVC remote: the content-addressed CSV bytes
    features/versions/<md5>/features.csv.dvc   the DVC pointer (the seed's ``.csv.dvc``)
    features/versions/<md5>/version.json       rows, columns, created, lineage
    features/versions/<md5>/transform.json     the fitted transform the model and the service reuse

A local DVC workspace (``<home>/dvc``, no git) does the hashing, caching and transfers; the object store
holds the truth, so any machine with the same configuration can pull any version. Publishing is
idempotent: the same bytes give the same version and nothing is rewritten.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.core.features import FeatureVersion
from driftloop.errors import NotFoundError, StorageError, UsageError
from driftloop.storage import join_key, open_store

if TYPE_CHECKING:
    from collections.abc import Iterator

    from driftloop.settings import S3Settings, Settings
    from driftloop.storage import ObjectStore

__all__ = ["FeatureStore", "feature_store_for"]

VERSIONS = "features/versions"
REMOTE = "features/dvc"
_CSV = "features.csv"
_REMOTE_NAME = "driftloop"


class FeatureStore:
    """Publish, list and pull feature versions. ``workspace`` is a local directory DVC may own."""

    def __init__(self, store: ObjectStore, workspace: Path, s3: S3Settings | None = None) -> None:
        self._store = store
        self._workspace = workspace
        self._s3 = s3

    def publish(self, csv_path: Path, *, transform_json: str, lineage: dict[str, Any]) -> FeatureVersion:
        """Version the CSV at ``csv_path`` (its bytes are the version) and push it to the remote."""
        import pandas as pd

        with self._repo() as repo:
            stage_dir = self._workspace / "publish"
            shutil.rmtree(stage_dir, ignore_errors=True)
            stage_dir.mkdir(parents=True)
            target = stage_dir / _CSV
            shutil.copyfile(csv_path, target)
            repo.add(str(target))
            pointer = (stage_dir / f"{_CSV}.dvc").read_text()
            md5 = _md5_of(pointer)
            existing = self._find(md5)
            if existing is not None:
                return existing
            repo.push(targets=[str(target)], remote=_REMOTE_NAME)
        columns = tuple(pd.read_csv(csv_path, nrows=0).columns)
        rows = _count_rows(csv_path)
        version = FeatureVersion(
            id=md5,
            rows=rows,
            size=csv_path.stat().st_size,
            columns=columns,
            created_at=datetime.now(UTC),
            lineage=lineage,
        )
        base = join_key(VERSIONS, md5)
        self._store.write_bytes(join_key(base, "transform.json"), transform_json.encode())
        self._store.write_bytes(join_key(base, f"{_CSV}.dvc"), pointer.encode())
        # version.json last: its presence is what makes the version visible to list/get.
        self._store.write_bytes(join_key(base, "version.json"), _encode(version))
        return version

    def list(self) -> list[FeatureVersion]:
        """Every published version, newest first."""
        versions = [
            _decode(self._store.read_bytes(info.key))
            for info in self._store.list(VERSIONS + "/")
            if info.key.endswith("/version.json")
        ]
        return sorted(versions, key=lambda v: v.created_at, reverse=True)

    def get(self, version: str) -> FeatureVersion:
        """The version whose id is ``version`` or starts with it (at least 6 characters)."""
        return _decode(self._store.read_bytes(join_key(VERSIONS, self.resolve(version), "version.json")))

    def resolve(self, version: str) -> str:
        """The full id for an id or unambiguous prefix; :class:`NotFoundError` otherwise."""
        if len(version) < 6 or not all(c in "0123456789abcdef" for c in version):
            raise UsageError(f"invalid feature version {version!r}: give at least 6 hex characters of its id")
        ids = sorted(
            {
                i.key.split("/")[2]
                for i in self._store.list(f"{VERSIONS}/{version}")
                if i.key.endswith("version.json")
            }
        )
        if not ids:
            raise NotFoundError(f"no feature version {version!r} (see: driftloop features list)")
        if len(ids) > 1:
            raise UsageError(
                f"feature version prefix {version!r} is ambiguous: {', '.join(i[:12] for i in ids)}"
            )
        return ids[0]

    def transform_json(self, version: str) -> str:
        return self._store.read_bytes(join_key(VERSIONS, self.resolve(version), "transform.json")).decode()

    def pull(self, version: str, out: Path) -> Path:
        """Fetch the version's CSV through DVC into the file ``out``: exactly the published bytes."""
        md5 = self.resolve(version)
        pointer = self._store.read_bytes(join_key(VERSIONS, md5, f"{_CSV}.dvc")).decode()
        with self._repo() as repo:
            pull_dir = self._workspace / "pull" / md5
            pull_dir.mkdir(parents=True, exist_ok=True)
            (pull_dir / f"{_CSV}.dvc").write_text(pointer)
            repo.pull(targets=[str(pull_dir / f"{_CSV}.dvc")], remote=_REMOTE_NAME)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pull_dir / _CSV, out)
        return out

    def _find(self, md5: str) -> FeatureVersion | None:
        key = join_key(VERSIONS, md5, "version.json")
        return _decode(self._store.read_bytes(key)) if self._store.exists(key) else None

    @contextlib.contextmanager
    def _repo(self) -> Iterator[Any]:
        """The DVC workspace, initialised and pointed at the remote, held under a file lock."""
        from filelock import FileLock

        self._workspace.mkdir(parents=True, exist_ok=True)
        # DVC logs progress chatter ("Initialized DVC repository.") at INFO to stdout, which belongs to the
        # command's own output; its warnings and errors still come through.
        logging.getLogger("dvc").setLevel(logging.WARNING)
        with FileLock(str(self._workspace) + ".lock"):
            from dvc.exceptions import DvcException
            from dvc.repo import Repo

            try:
                if not (self._workspace / ".dvc").is_dir():
                    Repo.init(str(self._workspace), no_scm=True).close()
                repo = Repo(str(self._workspace))
                try:
                    self._configure(repo)
                    yield repo
                finally:
                    repo.close()
            except DvcException as exc:
                raise StorageError(f"feature store (DVC) failed: {exc}") from exc

    def _configure(self, repo: Any) -> None:
        remote: dict[str, Any] = {
            "url": self._store.uri(REMOTE)
            if self._store.root.startswith("s3://")
            else str(Path(self._store.root) / REMOTE)
        }
        if self._store.root.startswith("s3://") and self._s3 is not None:
            s3 = self._s3
            if s3.endpoint_url:
                remote["endpointurl"] = s3.endpoint_url
            if s3.region:
                remote["region"] = s3.region
            if s3.access_key_id and s3.secret_access_key:
                remote["access_key_id"] = s3.access_key_id
                remote["secret_access_key"] = s3.secret_access_key.get_secret_value()
        # config.local keeps credentials out of any file meant to be shared.
        with repo.config.edit("local") as conf:
            conf["remote"][_REMOTE_NAME] = remote
            conf["core"]["remote"] = _REMOTE_NAME
            conf["core"]["analytics"] = False


def feature_store_for(settings: Settings) -> FeatureStore:
    """The feature store under the configured storage root, with its DVC workspace in ``<home>/dvc``."""
    store = open_store(settings.storage_root, settings.storage.s3)
    return FeatureStore(store, settings.home / "dvc", settings.storage.s3)


def _md5_of(pointer: str) -> str:
    for line in pointer.splitlines():
        stripped = line.strip().lstrip("- ")
        if stripped.startswith("md5:"):
            return stripped.split(":", 1)[1].strip()
    raise StorageError("DVC wrote a pointer without an md5")


def _count_rows(path: Path) -> int:
    with path.open("rb") as fh:
        return max(sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b"")) - 1, 0)


def _encode(version: FeatureVersion) -> bytes:
    data = {
        "id": version.id,
        "rows": version.rows,
        "size": version.size,
        "columns": list(version.columns),
        "created_at": version.created_at.isoformat(),
        "lineage": version.lineage,
    }
    return json.dumps(data, indent=2, sort_keys=True).encode()


def _decode(raw: bytes) -> FeatureVersion:
    data = json.loads(raw)
    return FeatureVersion(
        id=data["id"],
        rows=data["rows"],
        size=data["size"],
        columns=tuple(data["columns"]),
        created_at=datetime.fromisoformat(data["created_at"]),
        lineage=data["lineage"],
    )
