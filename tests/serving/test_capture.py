"""The capture store: WAL durability (kill -9, torn tails), group commit, outages, backpressure, Parquet."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections import Counter
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from driftloop.capture import FEEDBACK_SCHEMA, PREDICTION_SCHEMA, CaptureStore, read_captures
from driftloop.errors import CaptureFullError, ConfigError, ConflictError, StorageUnavailableError
from driftloop.settings import CaptureSettings, load_settings
from driftloop.storage import ObjectStore, open_store
from driftloop.storage._s3 import make_client
from tests.conftest import SETTLE_S

if TYPE_CHECKING:
    from pathlib import Path

    from driftloop.settings import S3Settings
    from tests.conftest import MotoServer

DAY = "2026-03-01T12:00:00+00:00"
KEY = re.compile(r"^captures/(model=[\w.-]+|feedback)/date=\d{4}-\d\d-\d\d/[0-9a-f]{12}-seg-\d{20}\.parquet$")


def settings(**overrides: Any) -> CaptureSettings:
    """Fast timings for tests: short group-commit window, quick rotation and retries."""
    values: dict[str, Any] = {
        "group_commit_ms": 1.0,
        "segment_max_age_s": 0.2,
        "retry_initial_s": 0.05,
        "retry_max_s": 0.2,
        **overrides,
    }
    return CaptureSettings(**values)


def prediction(i: int = 0, *, model: str = "plant", ts: str = DAY) -> dict[str, Any]:
    return {
        "kind": "prediction",
        "prediction_id": uuid.uuid4().hex,
        "ts": ts,
        "model_name": model,
        "model_version": 3,
        "inputs": {"torque_nm": 40.0 + i, "product_variant": "L"},
        "outputs": {"score": 0.25, "label": 0},
        "score": 0.25,
        "latency_ms": 1.5,
        "fallback": False,
        "endpoint": "/v1/predict",
    }


def feedback(prediction_id: str, label: float) -> dict[str, Any]:
    return {"kind": "feedback", "prediction_id": prediction_id, "ts": DAY, "label": label, "source": "api"}


class Switchable:
    """A local store that can be switched off: writes then fail as if the endpoint were unreachable."""

    def __init__(self, root: Path) -> None:
        self.inner = open_store(str(root))
        self.up = True
        self.writes: Counter[str] = Counter()

    def write_bytes(self, key: str, data: bytes) -> None:
        if not self.up:
            raise StorageUnavailableError("store switched off by the test")
        self.writes[key] += 1
        self.inner.write_bytes(key, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def ids(store: Any, kind: str = "prediction") -> list[str]:
    return read_captures(store, kind=kind).column("prediction_id").to_pylist()  # type: ignore[no-any-return]


def wal_ids(wal: Path) -> set[str]:
    """Decode the WAL by its documented format: 4-byte length, 4-byte CRC32, JSON."""
    found = set()
    for segment in wal.glob("seg-*.wal"):
        data, pos = segment.read_bytes(), 0
        while pos + 8 <= len(data):
            length, crc = struct.unpack_from("<II", data, pos)
            payload = data[pos + 8 : pos + 8 + length]
            if len(payload) < length or zlib.crc32(payload) != crc:
                break
            found.add(orjson.loads(payload)["prediction_id"])
            pos += 8 + length
    return found


def test_records_come_out_as_partitioned_parquet(store: ObjectStore, tmp_path: Path) -> None:
    first, second = prediction(1), prediction(2, model="other", ts="2026-03-02T01:30:00+02:00")
    second["score"] = None
    with CaptureStore(store, tmp_path / "wal", settings()) as capture:
        capture.append(first)
        capture.append(second)
        capture.append(feedback(first["prediction_id"], 1.0))
        assert capture.flush(SETTLE_S)
        assert capture.stats()["shipped_records"] == 3
    keys = [info.key for info in store.list("captures/")]
    assert len(keys) == 3
    assert all(KEY.match(key) for key in keys), keys
    # The date partition is the UTC date: 01:30 at +02:00 is still March 1st in UTC.
    assert {key.rsplit("/", 1)[0] for key in keys} == {
        "captures/model=plant/date=2026-03-01",
        "captures/model=other/date=2026-03-01",
        "captures/feedback/date=2026-03-01",
    }
    table = read_captures(store)
    assert table.schema == PREDICTION_SCHEMA
    rows = {row["prediction_id"]: row for row in table.to_pylist()}
    row = rows[first["prediction_id"]]
    assert orjson.loads(row["inputs"]) == first["inputs"]
    assert orjson.loads(row["outputs"]) == first["outputs"]
    assert row["ts"].isoformat() == "2026-03-01T12:00:00+00:00"
    assert (row["model_name"], row["model_version"], row["score"]) == ("plant", 3, 0.25)
    assert (row["latency_ms"], row["fallback"], row["endpoint"]) == (1.5, False, "/v1/predict")
    assert rows[second["prediction_id"]]["score"] is None
    assert rows[second["prediction_id"]]["ts"].isoformat() == "2026-03-01T23:30:00+00:00"
    assert read_captures(store, model="other").column("model_name").to_pylist() == ["other"]


_CHILD = """
import sys, threading, uuid
from pathlib import Path
from driftloop.capture import CaptureStore
from driftloop.settings import CaptureSettings, S3Settings
from driftloop.storage import open_store

root, wal, endpoint, durability = sys.argv[1:5]
store = open_store(root, S3Settings(endpoint_url=endpoint or None))
cfg = CaptureSettings(segment_max_age_s=0.05, segment_max_bytes=4096, durability=durability)
capture = CaptureStore(store, Path(wal), cfg)
capture.start()
out = threading.Lock()

def run() -> None:
    while True:
        pid = uuid.uuid4().hex
        capture.append({"kind": "prediction", "prediction_id": pid, "ts": "2026-03-01T12:00:00Z",
                        "model_name": "plant", "model_version": 1, "inputs": {"x": 1},
                        "outputs": {"score": 0.5}, "score": 0.5, "latency_ms": 1.0, "fallback": False,
                        "endpoint": "/v1/predict"})
        with out:  # printed only after append returned: this id is acknowledged
            sys.stdout.write(pid + "\\n")
            sys.stdout.flush()

for _ in range(4):
    threading.Thread(target=run, daemon=True).start()
threading.Event().wait()
"""


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["process", "fsync"])
def test_kill_9_loses_no_acknowledged_record(
    store: ObjectStore, tmp_path: Path, request: pytest.FixtureRequest, durability: str
) -> None:
    wal = tmp_path / "wal"
    endpoint = request.getfixturevalue("s3_settings").endpoint_url if store.root.startswith("s3://") else ""
    command = [sys.executable, "-c", _CHILD, store.root, str(wal), endpoint, durability]
    with (
        (tmp_path / "child.err").open("wb") as err,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err) as child,
    ):
        assert child.stdout is not None
        try:
            lines = [child.stdout.readline() for _ in range(400)]
            assert lines[-1], (tmp_path / "child.err").read_text()
        finally:
            os.kill(child.pid, signal.SIGKILL)
            rest = child.stdout.read()
    acked = {
        line.decode().strip() for line in [*lines, *rest.splitlines(keepends=True)] if line.endswith(b"\n")
    }
    assert len(acked) >= 400
    with CaptureStore(store, wal, settings()) as capture:  # recovers what the killed process left
        assert capture.flush(60)
    shipped = ids(store)
    assert acked - set(shipped) == set()
    assert len(shipped) == len(set(shipped))  # re-shipping a segment overwrote, never duplicated


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\x10\x00", id="partial-header"),
        pytest.param(struct.pack("<II", 100, 0) + b'{"kind": "pre', id="partial-payload"),
        pytest.param(struct.pack("<II", 2, zlib.crc32(b"{}") ^ 1) + b"{}", id="bad-crc"),
    ],
)
def test_torn_tail_is_truncated_and_the_records_before_it_survive(tmp_path: Path, garbage: bytes) -> None:
    store, wal = Switchable(tmp_path / "store"), tmp_path / "wal"
    store.up = False
    capture = CaptureStore(store, wal, settings())  # type: ignore[arg-type]
    capture.start()
    records = [prediction(i) for i in range(5)]
    for record in records:
        capture.append(record)
    capture.close(timeout=0.1)
    assert capture.wait_released(SETTLE_S)  # its shipper may still be in its last attempt
    last = sorted(wal.glob("seg-*.wal"))[-1]
    intact = last.stat().st_size
    with last.open("ab") as fh:
        fh.write(garbage)
    recovered = CaptureStore(store, wal, settings())  # type: ignore[arg-type]
    recovered.start()
    try:
        assert last.stat().st_size == intact
        store.up = True
        assert recovered.flush(SETTLE_S)
    finally:
        recovered.close()
    assert sorted(ids(store)) == sorted(r["prediction_id"] for r in records)
    assert list(wal.glob("seg-*.wal")) == []


@pytest.mark.slow
def test_s3_outage_buffers_locally_and_ships_everything_once_it_is_back(
    moto_server: MotoServer, s3_settings: S3Settings, s3_bucket: str, tmp_path: Path
) -> None:
    s3 = s3_settings.model_copy(update={"max_attempts": 1, "connect_timeout_s": 1.0})
    store = open_store(f"s3://{s3_bucket}/root", s3)
    capture = CaptureStore(store, tmp_path / "wal", settings())
    capture.start()
    try:
        moto_server.stop()
        try:
            records = [prediction(i) for i in range(50)]
            for record in records:
                capture.append(record)  # the request path does not wait for S3
            deadline = time.monotonic() + 10
            while capture.stats()["failures"] < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            stats = capture.stats()
            assert stats["failures"] >= 2
            assert "unreachable" in (stats["last_error"] or "")
            assert stats["pending_bytes"] > 0
        finally:
            moto_server.start()
        make_client(s3).create_bucket(Bucket=s3_bucket)  # moto keeps buckets in memory: a restart empties it
        assert capture.flush(SETTLE_S)
    finally:
        capture.close(timeout=1)
    shipped = ids(store)
    assert sorted(shipped) == sorted(r["prediction_id"] for r in records)  # nothing lost, nothing twice


def test_full_buffer_refuses_new_records_and_keeps_the_accepted_ones(tmp_path: Path) -> None:
    store = Switchable(tmp_path / "store")
    store.up = False
    with CaptureStore(store, tmp_path / "wal", settings(max_buffer_bytes=4000)) as capture:  # type: ignore[arg-type]
        accepted = []
        with pytest.raises(CaptureFullError, match=r"capture\.max_buffer_bytes") as info:
            for i in range(1000):
                record = prediction(i)
                capture.append(record)
                accepted.append(record["prediction_id"])
        assert info.value.http_status == 503
        assert isinstance(info.value, StorageUnavailableError)
        assert 5 < len(accepted) < 1000
        assert capture.stats()["rejected"] == 1
        store.up = True
        assert capture.flush(SETTLE_S)
        capture.append(later := prediction())  # room again once shipped
        assert capture.flush(SETTLE_S)
    assert sorted(ids(store)) == sorted([*accepted, later["prediction_id"]])


@pytest.mark.parametrize("durability", ["process", "fsync"])
def test_a_failed_wal_write_refuses_its_records_and_keeps_the_acknowledged_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durability: str
) -> None:
    store = open_store(str(tmp_path / "store"))
    real_write = os.write

    def disk_full(fd: int, data: bytes) -> int:
        real_write(fd, data[:10])  # a torn record, as a full disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device")

    with CaptureStore(store, tmp_path / "wal", settings(durability=durability)) as capture:
        capture.append(first := prediction())
        monkeypatch.setattr(os, "write", disk_full)
        with pytest.raises(CaptureFullError, match="out of disk space"):
            capture.append(prediction())
        monkeypatch.undo()
        capture.append(later := prediction())  # lands in a new segment, not behind the torn bytes
        assert capture.flush(SETTLE_S)
    assert sorted(ids(store)) == sorted([first["prediction_id"], later["prediction_id"]])


def test_group_commit_needs_far_fewer_fsyncs_than_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal = tmp_path / "wal"
    cfg = settings(segment_max_age_s=60, durability="fsync")  # acknowledged only once synced
    capture = CaptureStore(open_store(str(tmp_path / "store")), wal, cfg)
    capture.start()
    fsyncs, synced, late = [0], set(), []
    real_fsync = os.fdatasync  # what the writer uses: data and size, not timestamps

    def counting_fsync(fd: int) -> None:
        real_fsync(fd)
        fsyncs[0] += 1
        synced.update(wal_ids(wal))  # everything written so far is now durable

    monkeypatch.setattr(os, "fdatasync", counting_fsync)
    threads, per_thread = 8, 50
    barrier = threading.Barrier(threads)

    def client() -> None:
        barrier.wait()
        for i in range(per_thread):
            record = prediction(i)
            capture.append(record)
            if record["prediction_id"] not in synced:
                late.append(record["prediction_id"])  # acknowledged before its fsync: a broken promise

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    appends = threads * per_thread
    try:
        assert late == []
        assert len(synced) == appends
        assert fsyncs[0] <= appends // 4, f"{fsyncs[0]} fsyncs for {appends} appends"
    finally:
        monkeypatch.undo()
        capture.close()


def test_feedback_lands_apart_and_joins_predictions_by_id(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    records = [prediction(i) for i in range(10)]
    labels = {r["prediction_id"]: float(i % 2) for i, r in enumerate(records[:4])}
    with CaptureStore(store, tmp_path / "wal", settings()) as capture:
        for record in records:
            capture.append(record)
        for prediction_id, label in labels.items():
            capture.append(feedback(prediction_id, label))
        assert capture.flush(SETTLE_S)
    assert all(
        info.key.startswith("captures/feedback/date=2026-03-01/") for info in store.list("captures/feedback")
    )
    fb = read_captures(store, kind="feedback")
    assert fb.schema == FEEDBACK_SCHEMA
    joined = read_captures(store).join(
        fb.select(["prediction_id", "label"]), "prediction_id", join_type="inner"
    )
    assert dict(zip(joined["prediction_id"].to_pylist(), joined["label"].to_pylist(), strict=True)) == labels


def test_append_async_waits_without_blocking_the_loop(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    records = [prediction(i) for i in range(20)]
    with CaptureStore(store, tmp_path / "wal", settings()) as capture:

        async def main() -> None:
            await asyncio.gather(*(capture.append_async(r) for r in records))

        asyncio.run(main())
        assert capture.flush(SETTLE_S)
    assert sorted(ids(store)) == sorted(r["prediction_id"] for r in records)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "guess"}, "kind"),
        ({"prediction_id": None}, "prediction_id"),
        ({"model_version": "3"}, "model_version"),
        ({"model_name": "../escape"}, "model_name"),
        ({"ts": "yesterday"}, "ts"),
        ({"fallback": 1}, "fallback"),
        ({"inputs": {"x": object()}}, "inputs"),
        ({"extra": 1}, "extra"),
    ],
)
def test_malformed_records_are_refused_naming_the_field(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    with CaptureStore(open_store(str(tmp_path / "store")), tmp_path / "wal", settings()) as capture:
        with pytest.raises(ValueError, match=f"'{field}'"):
            capture.append({**prediction(), **change})
        record = prediction()
        del record["latency_ms"]
        with pytest.raises(ValueError, match="'latency_ms' is missing"):
            capture.append(record)


def test_one_store_per_wal_dir_and_a_closed_store_answers_503(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    with (
        CaptureStore(store, tmp_path / "wal", settings()) as capture,
        pytest.raises(ConflictError, match="in use"),
    ):
        CaptureStore(store, tmp_path / "wal", settings()).start()
    with pytest.raises(StorageUnavailableError, match="closed"):
        capture.append(prediction())


class Stalled(Switchable):
    """A store whose writes hang until the test lets them go (an S3 call stuck in its timeout)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.entered, self.go = threading.Event(), threading.Event()

    def write_bytes(self, key: str, data: bytes) -> None:
        self.entered.set()
        self.go.wait()
        super().write_bytes(key, data)


def test_a_closed_store_keeps_its_wal_dir_locked_until_its_last_shipping_attempt_ends(tmp_path: Path) -> None:
    # Otherwise a store started next on the directory ships the same segment as the old shipper.
    store, wal = Stalled(tmp_path / "store"), tmp_path / "wal"
    capture = CaptureStore(store, wal, settings())  # type: ignore[arg-type]
    capture.start()
    capture.append(record := prediction())
    assert not capture.flush(0.0)  # seals the segment for the shipper
    assert store.entered.wait(SETTLE_S)
    capture.close(timeout=0.1)
    assert not capture.wait_released(0.0)
    with pytest.raises(ConflictError, match="in use"):
        CaptureStore(store, wal, settings()).start()  # type: ignore[arg-type]
    store.go.set()
    assert capture.wait_released(SETTLE_S)
    with CaptureStore(store, wal, settings()) as after:  # type: ignore[arg-type]
        assert after.flush(SETTLE_S)
    assert ids(store) == [record["prediction_id"]]
    landed = [n for key, n in store.writes.items() if key.startswith("captures/_landing/")]
    assert landed == [1]  # shipped once, by the old store's last attempt


def test_capture_settings_default_and_resolve_relative_to_the_config(tmp_path: Path) -> None:
    assert load_settings(cwd=tmp_path).capture_wal_dir == tmp_path / ".driftloop" / "capture" / "wal"
    (tmp_path / "driftloop.toml").write_text('[capture]\nwal_dir = "wal"\ngroup_commit_ms = 5\n')
    loaded = load_settings(cwd=tmp_path)
    assert loaded.capture_wal_dir == tmp_path / "wal"
    assert loaded.capture.group_commit_ms == 5.0
    (tmp_path / "driftloop.toml").write_text("[capture]\ngroup_commit_ms = -1\n")
    with pytest.raises(ConfigError, match=r"capture\.group_commit_ms"):
        load_settings(cwd=tmp_path)


def test_process_durability_writes_before_it_returns_and_syncs_soon_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal = tmp_path / "wal"
    synced: list[float] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (real(fd), synced.append(time.monotonic()))[0])
    cfg = settings(segment_max_age_s=60, sync_interval_ms=20)
    with CaptureStore(open_store(str(tmp_path / "store")), wal, cfg) as capture:
        record = prediction()
        capture.append(record)
        assert record["prediction_id"] in wal_ids(wal)  # in the file (the page cache) on return
        appended = time.monotonic()
        deadline = appended + 5
        while not synced and time.monotonic() < deadline:
            time.sleep(0.005)
        assert synced, "the writer never synced what the request path wrote"
        assert synced[0] >= appended


def test_trusted_batches_are_one_frame_that_recovers_whole_or_not_at_all(tmp_path: Path) -> None:
    ts = "2026-03-01T12:00:00.000000+00:00"
    batch = [{**prediction(i), "ts": ts} for i in range(5)]
    single = {**prediction(9), "ts": ts}
    store, wal = open_store(str(tmp_path / "store")), tmp_path / "wal"
    with CaptureStore(store, wal, settings(segment_max_age_s=60)) as capture:
        asyncio.run(capture.append_many_async(batch, trusted=True))
        asyncio.run(capture.append_many_async([single], trusted=True))
        [segment] = wal.glob("seg-*.wal")
        data = segment.read_bytes()
    assert sorted(ids(store)) == sorted(r["prediction_id"] for r in [*batch, single])
    # As after a crash in the middle of the second frame: the first (all five rows) survives whole.
    first = struct.unpack_from("<I", data)[0] + 8
    torn_store, torn = open_store(str(tmp_path / "torn-store")), tmp_path / "torn"
    torn.mkdir()
    (torn / segment.name).write_bytes(data[: first + 10])
    with CaptureStore(torn_store, torn, settings()) as recovered:
        assert recovered.flush(SETTLE_S)
    assert sorted(ids(torn_store)) == sorted(r["prediction_id"] for r in batch)


def test_shadow_scores_land_beside_the_production_score_and_old_objects_read_as_null(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = open_store(str(tmp_path / "store"))
    ts = "2026-03-01T12:00:00.000000+00:00"
    shadowed = [
        {
            **prediction(i),
            "prediction_id": f"p{i}",
            "ts": ts,
            "shadow_version": 5,
            "shadow_score": 0.7 + 0.1 * i,
        }
        for i in range(3)
    ]
    with CaptureStore(store, tmp_path / "wal", settings()) as capture:
        asyncio.run(capture.append_many_async(shadowed, trusted=True))
        assert capture.flush(SETTLE_S)
    # An object written before the shadow columns existed (the previous schema) still reads back.
    old_schema = pa.schema([f for f in PREDICTION_SCHEMA if not f.name.startswith("shadow_")])
    old = pa.table(
        {
            "prediction_id": ["old"],
            "ts": pa.array([0], pa.timestamp("us", tz="UTC")),
            "model_name": ["plant"],
            "model_version": [3],
            "inputs": ["{}"],
            "outputs": ["{}"],
            "score": [0.5],
            "latency_ms": [1.0],
            "fallback": [False],
            "endpoint": ["/v1/predict"],
        },
        schema=old_schema,
    )
    sink = pa.BufferOutputStream()
    pq.write_table(old, sink)
    store.write_bytes("captures/model=plant/date=1970-01-01/old.parquet", sink.getvalue().to_pybytes())
    rows = {r["prediction_id"]: r for r in read_captures(store).to_pylist()}
    assert [(rows[f"p{i}"]["shadow_version"], rows[f"p{i}"]["shadow_score"]) for i in range(3)] == [
        (5, 0.7 + 0.1 * i) for i in range(3)
    ]
    assert (rows["old"]["shadow_version"], rows["old"]["shadow_score"], rows["old"]["score"]) == (
        None,
        None,
        0.5,
    )


def test_refused_requests_are_captured_and_counted_in_their_window(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from driftloop.monitoring.window import count_rejections

    store = open_store(str(tmp_path / "store"))
    errors = [{"loc": ["instances", 0, "torque_nm"], "type": "type", "msg": "torque_nm must be a number"}]
    with CaptureStore(store, tmp_path / "wal", settings()) as capture:
        for ts, model, rows in [
            ("2026-03-01T10:00:00Z", "plant", 3),
            ("2026-03-01T11:00:00Z", "plant", 1),
            ("2026-03-01T11:30:00Z", "other", 5),
            ("2026-03-02T00:00:00Z", "plant", 7),
        ]:
            capture.append(
                {
                    "kind": "rejection",
                    "ts": ts,
                    "model_name": model,
                    "endpoint": "/v1/predict",
                    "rows": rows,
                    "errors": errors,
                }
            )
        assert capture.flush(SETTLE_S)  # compacted: the monitoring window reads Parquet only
    table = read_captures(store, kind="rejection")
    assert table.num_rows == 4
    assert orjson.loads(table.column("errors")[0].as_py()) == errors
    day = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
    assert count_rejections(store, model="plant", start=day[0], end=day[1]) == 4
    assert count_rejections(store, model="other", start=day[0], end=day[1]) == 5
