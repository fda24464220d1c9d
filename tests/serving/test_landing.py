"""Landed capture segments: the service ships WAL segments as they are and compacts them into Parquet
only when idle or asked (``flush``, ``driftloop capture compact``); readers never write; compaction is
idempotent."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from driftloop.capture import CaptureStore, compact, read_captures
from driftloop.capture.landing import LANDING, QUARANTINE
from driftloop.monitoring.window import partition_keys
from driftloop.settings import CaptureSettings
from driftloop.storage import ObjectStore, open_store
from tests.conftest import SETTLE_S, wait_for
from tests.serving.test_capture import KEY, prediction

if TYPE_CHECKING:
    from pathlib import Path


def settings(**overrides: Any) -> CaptureSettings:
    values: dict[str, Any] = {
        "segment_max_age_s": 0.1,
        "retry_initial_s": 0.05,
        "retry_max_s": 0.2,
        "compact_idle_s": 0,
        "convert_in_subprocess": False,
        **overrides,
    }
    return CaptureSettings(**values)


def landed(store: ObjectStore) -> list[str]:
    return sorted(i.key for i in store.list(LANDING))


def parquet(store: ObjectStore) -> list[str]:
    return sorted(i.key for i in store.list("captures/") if i.key.endswith(".parquet"))


def ids(store: ObjectStore) -> list[str]:
    return sorted(read_captures(store).column("prediction_id").to_pylist())


def land_records(store: ObjectStore, wal: Path, records: list[dict[str, Any]]) -> int:
    """``records`` through a capture store that never compacts: shipped, landed, not in Parquet."""
    capture = CaptureStore(store, wal, settings())
    capture.start()
    try:
        for record in records:
            capture.append(record)
        assert capture.flush(30, compact=False)
        stats = capture.stats()
    finally:
        capture.close(compact=False)
    assert stats["shipped_records"] == len(records)
    assert stats["compacted_segments"] == 0
    assert len(landed(store)) == stats["landed_segments"] >= 1
    return stats["landed_segments"]


def test_shipping_lands_segments_and_compaction_makes_them_parquet_once(
    store: ObjectStore, tmp_path: Path
) -> None:
    records = [prediction(i) for i in range(20)] + [prediction(99, model="other")]
    segments = land_records(store, tmp_path / "wal", records)
    assert parquet(store) == []  # nothing converted on the serving side

    done = compact(store)
    assert (done.segments, done.records, done.quarantined, done.complete) == (segments, 21, 0, True)
    assert landed(store) == []
    assert parquet(store)
    assert all(KEY.match(key) for key in parquet(store))
    assert ids(store) == sorted(r["prediction_id"] for r in records)
    again = compact(store)  # idempotent: nothing left to do
    assert (again.segments, again.records) == (0, 0)


class DiesBeforeDelete:
    """A store whose first delete fails: a compactor that crashed after writing the Parquet objects."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner, self.failed = inner, False

    def delete(self, key: str) -> None:
        if not self.failed:
            self.failed = True
            raise OSError("crashed before the delete")
        self.inner.delete(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_compaction_that_died_before_deleting_is_redone_without_duplicates(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    records = [prediction(i) for i in range(10)]
    land_records(store, tmp_path / "wal", records)
    with contextlib.suppress(OSError):
        compact(DiesBeforeDelete(store))  # type: ignore[arg-type]
    assert landed(store)  # both: the segment kept …
    assert parquet(store)  # … and its objects written
    assert ids(store) == sorted(r["prediction_id"] for r in records)  # once: Parquet or landed, not both
    assert landed(store)  # reading wrote nothing
    assert compact(store).segments == 1  # the next compaction redoes it, to the same keys
    assert landed(store) == []
    assert ids(store) == sorted(r["prediction_id"] for r in records)


def test_readers_never_write_and_read_captures_still_sees_landed_records(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    records = [prediction(i) for i in range(5)]
    land_records(store, tmp_path / "wal", records)
    before = sorted(i.key for i in store.list(""))
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    assert partition_keys(store, "captures/model=plant", start, end) == []  # monitoring: Parquet only
    assert ids(store) == sorted(r["prediction_id"] for r in records)  # converted in memory
    assert sorted(i.key for i in store.list("")) == before  # nothing written, nothing deleted
    compact(store)
    assert partition_keys(store, "captures/model=plant", start, end)
    assert ids(store) == sorted(r["prediction_id"] for r in records)


def test_the_service_compacts_only_once_it_is_idle(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    records = [prediction(i) for i in range(60)]
    cfg = settings(compact_idle_s=1.0, compact_max_delay_s=0)
    with CaptureStore(store, tmp_path / "wal", cfg) as capture:
        for record in records:  # 1.2 s of steady traffic, an append every 20 ms
            capture.append(record)
            time.sleep(0.02)
        busy = capture.stats()
        wait_for(lambda: not capture.stats()["landed_segments"], timeout=20, what="the idle compaction")
        idle = capture.stats()
    assert busy["shipped_segments"] >= 3  # segments landed while the traffic went on …
    assert busy["compacted_segments"] == 0  # … and none was compacted then
    assert idle["landed_segments"] == 0
    assert idle["compacted_segments"] == idle["shipped_segments"]
    assert ids(store) == sorted(r["prediction_id"] for r in records)


def test_under_traffic_that_never_pauses_a_landed_segment_is_compacted_within_the_delay_bound(
    tmp_path: Path,
) -> None:
    store = open_store(str(tmp_path / "store"))
    cfg = settings(compact_idle_s=60.0, compact_max_delay_s=0.3)
    appended: list[dict[str, Any]] = []
    with CaptureStore(store, tmp_path / "wal", cfg) as capture:

        def traffic_until_compacted() -> bool:
            # Never idle: an append before every look, so only the delay bound can start a pass.
            record = prediction(len(appended))
            capture.append(record)
            appended.append(record)
            return capture.stats()["compacted_segments"] >= 2

        wait_for(traffic_until_compacted, timeout=30, what="compaction under traffic")
        assert capture.flush(SETTLE_S)
    assert ids(store) == sorted(r["prediction_id"] for r in appended)
    assert landed(store) == []


def test_a_clean_close_compacts_what_landed_so_monitoring_sees_the_last_records(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    records = [prediction(i) for i in range(5)]
    # Never on idleness, no delay bound: only the close compacts.
    with CaptureStore(store, tmp_path / "wal", settings(compact_max_delay_s=0)) as capture:
        for record in records:
            capture.append(record)
    assert landed(store) == []
    start, end = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    assert partition_keys(store, "captures/model=plant", start, end)


def test_an_object_that_is_not_a_segment_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    record = prediction(1)
    land_records(store, tmp_path / "wal", [record])
    store.write_bytes(f"{LANDING}someone-else.wal.zst", b"not zstd at all")
    done = compact(store)
    assert (done.segments, done.quarantined) == (1, 1)
    assert landed(store) == []
    assert store.read_bytes(f"{QUARANTINE}someone-else.wal.zst") == b"not zstd at all"
    reason = store.read_bytes(f"{QUARANTINE}someone-else.reason.txt").decode()
    assert "not a compressed capture segment" in reason
    assert ids(store) == [record["prediction_id"]]


def test_capture_compact_cli_compacts_then_has_nothing_to_do(tmp_path: Path) -> None:
    (tmp_path / "driftloop.toml").write_text("")
    store = open_store(str(tmp_path / ".driftloop"))
    land_records(store, tmp_path / "wal", [prediction(i) for i in range(7)])

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "driftloop", "capture", "compact"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first, second = run(), run()
    assert first.returncode == 0, first.stderr
    assert "compacted 1 segment(s): 7 record(s) into 1 Parquet object(s)" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "nothing to compact" in second.stdout
    assert len(ids(store)) == 7
