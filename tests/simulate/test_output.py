"""What lands in the store: reproducible bytes, delayed label partitions, all-or-nothing writes."""

from __future__ import annotations

import contextlib
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, BinaryIO

import pytest

from driftloop.errors import StorageError
from driftloop.simulate import simulate
from driftloop.storage import ObjectStore, open_store
from tests.simulate.support import START, read_text, request, run

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from driftloop.settings import S3Settings
    from driftloop.storage import ObjectInfo

DRIFTS = ("sensor-noise:severity=1", "missing:severity=0.05", "corrupt:severity=0.05", "concept")


def test_same_request_gives_identical_bytes(tmp_path: Path) -> None:
    req = request(*DRIFTS, days=3, rows_per_day=1500)
    first = run(tmp_path / "a", req).files()
    second = run(tmp_path / "b", req).files()
    assert len(first) == 3 + 3  # raw days, and label partitions 24 h later
    assert first == second
    other_seed = run(tmp_path / "c", request(*DRIFTS, days=3, rows_per_day=1500, seed=8)).files()
    assert other_seed.keys() == first.keys()
    assert all(other_seed[k] != first[k] for k in first)


def test_a_short_run_is_a_prefix_of_a_longer_one(tmp_path: Path) -> None:
    delay = timedelta(hours=36)
    short = run(tmp_path / "short", request(*DRIFTS, days=2, label_delay=delay))
    long = run(tmp_path / "long", request(*DRIFTS, days=5, label_delay=delay))
    long_files = long.files()
    for key in short.summary.raw_keys:
        assert short.store.read_bytes(key) == long_files[key], key
    # A label partition is final once no later day can add to it: up to the last day + 1 whole day.
    last_final = (START + timedelta(days=2)).isoformat()
    compared = 0
    for key in short.summary.label_keys:
        if key.split("date=")[1][:10] <= last_final:
            assert short.store.read_bytes(key) == long_files[key], key
            compared += 1
    assert compared == 2


@pytest.mark.parametrize(
    ("hours", "partitions"),
    [(0, [1, 2, 3]), (24, [2, 3, 4]), (36, [2, 3, 4, 5])],
)
def test_labels_are_partitioned_by_the_day_they_become_available(
    tmp_path: Path, hours: int, partitions: list[int]
) -> None:
    delay = timedelta(hours=hours)
    result = run(tmp_path, request(days=3, rows_per_day=1000, label_delay=delay))
    raw_ids = list(result.raw()["record_id"])
    seen = []
    for key in result.summary.label_keys:
        labels = read_text(result.store.read_bytes(key))
        partition = key.split("date=")[1][:10]
        assert key == f"labels/plant/date={partition}/part-0000.csv"
        event = labels["timestamp"].map(_parse)
        available = labels["available_at"].map(_parse)
        assert (available - event == delay).all()
        assert (available.map(lambda t: t.date().isoformat()) == partition).all()
        assert labels["available_at"].is_monotonic_increasing
        seen += list(labels["record_id"])
    assert seen == raw_ids, "every row gets exactly one label, in time order"
    assert [k.split("date=")[1][:10] for k in result.summary.label_keys] == [
        f"2026-01-{day:02d}" for day in partitions
    ]


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


def test_summary_matches_what_was_written(tmp_path: Path) -> None:
    calls: list[tuple[date, int]] = []
    result = run(tmp_path, request(days=3, rows_per_day=800))
    store = result.store
    summary = simulate(request(days=3, rows_per_day=800), store, on_day=lambda d, n: calls.append((d, n)))
    assert summary == result.summary
    assert calls == [(START + timedelta(days=i), 800) for i in range(3)]
    keys = [info.key for info in store.list()]
    assert sorted(summary.raw_keys + summary.label_keys) == keys
    labels = result.labels()
    assert summary.rows == 2400 == len(labels)
    assert summary.failures == {mode: int(labels[mode].astype(int).sum()) for mode in summary.failures}
    assert summary.quarantine_hint == {}
    assert not list((tmp_path).rglob("*.tmp-driftloop-*")), "no temporary files left behind"


def test_s3_output_is_byte_identical_to_local_output(store: ObjectStore, tmp_path: Path) -> None:
    req = request(*DRIFTS, days=2, rows_per_day=500)
    local = run(tmp_path / "reference", req).files()
    summary = simulate(req, store)
    assert {info.key: store.read_bytes(info.key) for info in store.list()} == local
    assert sorted(summary.raw_keys + summary.label_keys) == sorted(local)


def test_unwritable_local_destination_writes_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"a file where a directory should be")
    store = open_store(str(blocker / "root"))
    calls: list[date] = []
    with pytest.raises(StorageError):
        simulate(request(days=2), store, on_day=lambda d, _n: calls.append(d))
    assert calls == []
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["blocker"]


def test_missing_bucket_is_a_storage_error(s3_settings: S3Settings) -> None:
    store = open_store("s3://no-such-bucket-driftloop/root", s3_settings)
    with pytest.raises(StorageError, match="does not exist"):
        simulate(request(days=1), store)


class FailingStore:
    """A real store whose ``fail_at``-th write (1-based) raises, as a full disk or lost bucket would."""

    def __init__(self, inner: ObjectStore, fail_at: int) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.writes = 0

    @property
    def root(self) -> str:
        return self.inner.root

    def uri(self, key: str) -> str:
        return self.inner.uri(key)

    def read_bytes(self, key: str) -> bytes:
        return self.inner.read_bytes(key)

    def write_bytes(self, key: str, data: bytes) -> None:
        with self.open_write(key) as fh:
            fh.write(data)

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        self.writes += 1
        with self.inner.open_write(key) as fh:
            yield fh
            if self.writes == self.fail_at:
                raise StorageError(f"cannot write {key}: disk full")

    def open_read(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return self.inner.open_read(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def arrow_filesystem(self) -> tuple[object, str]:
        return self.inner.arrow_filesystem()


@pytest.mark.parametrize("fail_at", [2, 5, 8])
def test_a_failed_write_removes_what_this_run_wrote(store: ObjectStore, fail_at: int) -> None:
    # Data from an earlier run, and an unrelated object, must survive a failed run.
    earlier = "raw/plant/date=2025-12-31/part-0000.csv"
    store.write_bytes(earlier, b"earlier run")
    store.write_bytes("notes.txt", b"keep")
    flaky = FailingStore(store, fail_at=fail_at + 1)  # +1: the writability probe is a write too
    with pytest.raises(StorageError, match="disk full"):
        simulate(request(days=4, rows_per_day=300), flaky)
    assert flaky.writes == fail_at + 1
    assert [info.key for info in store.list()] == ["notes.txt", earlier]
    assert store.read_bytes(earlier) == b"earlier run"


def test_an_interrupt_also_removes_what_was_written(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "root"))

    def interrupt(day: date, _rows: int) -> None:
        if day == START + timedelta(days=1):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate(request(days=3), store, on_day=interrupt)
    assert list(store.list()) == []


def test_rerunning_over_existing_output_replaces_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = run(root, request(days=2, rows_per_day=200)).files()
    second = run(root, request(days=2, rows_per_day=200)).files()
    assert first == second
