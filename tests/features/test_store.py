"""The DVC feature store on a local root and on S3 (moto server), through real DVC."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from driftloop.errors import NotFoundError, UsageError
from driftloop.features import FeatureStore

if TYPE_CHECKING:
    from pathlib import Path

    from driftloop.storage import ObjectStore


@pytest.fixture
def features(store: ObjectStore, tmp_path: Path) -> FeatureStore:
    # The S3 case needs the endpoint settings for DVC; the local case ignores them.
    s3 = None
    if store.root.startswith("s3://"):
        s3 = store._settings  # type: ignore[attr-defined]
    return FeatureStore(store, tmp_path / "ws", s3)


def _csv(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def test_publish_list_show_pull(features: FeatureStore, store: ObjectStore, tmp_path: Path) -> None:
    data = _csv(tmp_path, "a.csv", "record_id,f_x,machine_failure\nr1,0.5,0\nr2,-1.25,1\n")
    version = features.publish(data, transform_json='{"version": 1}', lineage={"pipeline_run": "run-1"})
    assert len(version.id) == 32
    assert version.rows == 2
    assert version.columns == ("record_id", "f_x", "machine_failure")
    # The seed's .csv.dvc pointer and the remote's content-addressed object live under features/.
    pointer = store.read_bytes(f"features/versions/{version.id}/features.csv.dvc").decode()
    assert f"md5: {version.id}" in pointer
    assert store.exists(f"features/dvc/files/md5/{version.id[:2]}/{version.id[2:]}")
    assert [v.id for v in features.list()] == [version.id]
    assert features.get(version.id[:8]).lineage == {"pipeline_run": "run-1"}
    assert features.transform_json(version.id) == '{"version": 1}'

    # A different machine (fresh workspace) pulls the same bytes through DVC.
    elsewhere = FeatureStore(store, tmp_path / "other-ws", getattr(store, "_settings", None))
    out = elsewhere.pull(version.id[:10], tmp_path / "pulled" / "f.csv")
    assert out.read_bytes() == data.read_bytes()


def test_same_bytes_same_version_and_nothing_rewritten(features: FeatureStore, tmp_path: Path) -> None:
    body = "a,b\n1,2\n"
    first = features.publish(
        _csv(tmp_path, "1.csv", body), transform_json="{}", lineage={"pipeline_run": "one"}
    )
    again = features.publish(
        _csv(tmp_path, "2.csv", body), transform_json="{}", lineage={"pipeline_run": "two"}
    )
    assert again.id == first.id
    assert again.lineage == {"pipeline_run": "one"}
    other = features.publish(_csv(tmp_path, "3.csv", "a,b\n1,3\n"), transform_json="{}", lineage={})
    assert other.id != first.id
    assert {v.id for v in features.list()} == {first.id, other.id}


def test_unknown_and_malformed_versions(features: FeatureStore, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no feature version"):
        features.get("abcdef12")
    with pytest.raises(UsageError, match="at least 6 hex"):
        features.get("xyz")
    version = features.publish(_csv(tmp_path, "v.csv", "a\n1\n"), transform_json="{}", lineage={})
    with pytest.raises(UsageError, match="at least 6 hex"):
        features.get(version.id[:5])
    assert features.get(version.id[:6]).id == version.id
