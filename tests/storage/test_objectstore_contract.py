"""The object-store contract, run unchanged against a local directory and a real S3 HTTP endpoint."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftloop.errors import NotFoundError, UsageError
from driftloop.storage import ObjectStore, check_writable, join_key

if TYPE_CHECKING:
    from pathlib import Path


def test_round_trip_and_overwrite(store: ObjectStore) -> None:
    store.write_bytes("a/b/c.bin", b"first")
    assert store.read_bytes("a/b/c.bin") == b"first"
    store.write_bytes("a/b/c.bin", b"second, longer")
    assert store.read_bytes("a/b/c.bin") == b"second, longer"
    assert store.exists("a/b/c.bin")


def test_missing_object(store: ObjectStore) -> None:
    assert not store.exists("nope/x.csv")
    with pytest.raises(NotFoundError, match=r"nope/x\.csv"):
        store.read_bytes("nope/x.csv")


def test_streaming_write_is_invisible_until_complete(store: ObjectStore) -> None:
    store.write_bytes("data.csv", b"old")
    with store.open_write("data.csv") as fh:
        fh.write(b"new-part-1,")
        # Mid-write, readers still see the previous complete object and no extra listing entries.
        assert store.read_bytes("data.csv") == b"old"
        assert [info.key for info in store.list()] == ["data.csv"]
        fh.write(b"new-part-2")
    assert store.read_bytes("data.csv") == b"new-part-1,new-part-2"


def test_failed_write_leaves_nothing_behind(store: ObjectStore) -> None:
    store.write_bytes("keep.csv", b"intact")
    with pytest.raises(RuntimeError, match="boom"), store.open_write("keep.csv") as fh:
        fh.write(b"half")
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"), store.open_write("new.csv") as fh:
        fh.write(b"half")
        raise RuntimeError("boom")
    assert store.read_bytes("keep.csv") == b"intact"
    assert not store.exists("new.csv")
    assert [info.key for info in store.list()] == ["keep.csv"]


def test_large_streaming_write(store: ObjectStore) -> None:
    # Above the S3 multipart threshold (8 MiB) and the in-memory spool (16 MiB).
    chunk = os.urandom(1024 * 1024)
    with store.open_write("big/blob.bin") as fh:
        for _ in range(20):
            fh.write(chunk)
    infos = list(store.list("big/"))
    assert [(i.key, i.size) for i in infos] == [("big/blob.bin", 20 * len(chunk))]
    with store.open_read("big/blob.bin") as fh:
        assert fh.read(len(chunk)) == chunk


def test_list_is_recursive_sorted_and_filters_by_key_prefix(store: ObjectStore) -> None:
    for key in [
        "raw/plant/date=2026-01-02/part-0.csv",
        "raw/plant/date=2026-01-01/part-0.csv",
        "raw/other/x",
        "top",
    ]:
        store.write_bytes(key, key.encode())
    assert [i.key for i in store.list("raw/plant/")] == [
        "raw/plant/date=2026-01-01/part-0.csv",
        "raw/plant/date=2026-01-02/part-0.csv",
    ]
    assert [i.key for i in store.list("raw/pl")] == [i.key for i in store.list("raw/plant/")]
    assert [i.key for i in store.list()] == [
        "raw/other/x",
        "raw/plant/date=2026-01-01/part-0.csv",
        "raw/plant/date=2026-01-02/part-0.csv",
        "top",
    ]
    info = next(iter(store.list("top")))
    assert info.size == 3
    assert info.modified.tzinfo is not None
    assert list(store.list("nothing/here/")) == []


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.write_bytes("x/y", b"1")
    store.delete("x/y")
    store.delete("x/y")
    assert not store.exists("x/y")


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a", "dir/", "a\\b"])
def test_malformed_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(UsageError, match="invalid storage key"):
        store.write_bytes(key, b"x")


def test_uri_names_the_object(store: ObjectStore) -> None:
    uri = store.uri("raw/a.csv")
    assert uri == f"{store.root}/raw/a.csv"


def test_arrow_filesystem_reaches_the_same_objects(store: ObjectStore) -> None:
    fs, base = store.arrow_filesystem()
    table = pa.table({"x": [1, 2, 3]})
    fs.create_dir(f"{base}/tables", recursive=True)
    pq.write_table(table, f"{base}/tables/t.parquet", filesystem=fs)
    assert store.read_bytes("tables/t.parquet")[:4] == b"PAR1"
    assert pq.read_table(f"{base}/tables/t.parquet", filesystem=fs).equals(table)


def test_check_writable_leaves_nothing(store: ObjectStore) -> None:
    check_writable(store)
    assert list(store.list()) == []


def test_join_key() -> None:
    assert join_key("raw", "plant/", "/date=1", "", "part.csv") == "raw/plant/date=1/part.csv"


def test_local_store_on_an_unwritable_root_is_a_storage_error(tmp_path: Path) -> None:
    from driftloop.errors import StorageError
    from driftloop.storage import open_store

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = open_store(str(blocker))
    with pytest.raises(StorageError, match="cannot write"):
        check_writable(store)


def test_unsupported_scheme_is_a_usage_error() -> None:
    from driftloop.storage import open_store

    with pytest.raises(UsageError, match="gs"):
        open_store("gs://bucket/x")
