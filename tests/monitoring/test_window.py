"""Streaming a window of captures from the object store, decoding inputs, reading labels."""

from __future__ import annotations

import io
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftloop.capture import PREDICTION_SCHEMA, CaptureStore
from driftloop.capture.parquet import parquet_objects
from driftloop.capture.records import normalize
from driftloop.errors import DataError, UsageError
from driftloop.monitoring.labels import read_label_book, read_labels
from driftloop.monitoring.window import CaptureChunk, decode_fields, iter_captures
from driftloop.settings import CaptureSettings, ColumnSpec
from driftloop.storage import open_store
from tests.conftest import SETTLE_S

if TYPE_CHECKING:
    from pathlib import Path

    from driftloop.storage import ObjectStore

T0 = datetime(2026, 3, 1, tzinfo=UTC)
FIELDS = (
    ColumnSpec(name="record_id", type="string", role="id"),
    ColumnSpec(name="temp", type="float"),
    ColumnSpec(name="speed", type="int"),
    ColumnSpec(name="variant", type="category", allowed=("L", "M", "H")),
)


def _prediction(i: int, ts: datetime, *, model: str = "m", version: int = 1, **inputs: Any) -> dict[str, Any]:
    fields = {"record_id": f"rec-{i}", "temp": 300.0 + i % 7, "speed": 1500 + i % 11, "variant": "LMH"[i % 3]}
    return asdict(
        normalize(
            {
                "kind": "prediction",
                "prediction_id": f"p{i:05d}",
                "ts": ts.isoformat(),
                "model_name": model,
                "model_version": version,
                "inputs": fields | inputs,
                "outputs": {"score": 0.1},
                "score": (i % 100) / 100,
                "latency_ms": 1.0,
                "fallback": i % 50 == 0,
                "endpoint": "/v1/predict",
            }
        )
    )


def _ship(store: ObjectStore, records: list[dict[str, Any]], stem: str) -> None:
    for key, data in parquet_objects(records, stem):
        store.write_bytes(key, data)


def _three_days(store: ObjectStore) -> list[dict[str, Any]]:
    """600 predictions every 6 minutes from 2026-03-01 00:00 over three days, in four shipped segments."""
    records = [_prediction(i, T0 + timedelta(minutes=6 * i)) for i in range(720)]
    for segment in range(4):
        _ship(store, records[segment * 180 : (segment + 1) * 180], f"w1-seg-{segment:020d}")
    return records


def test_window_round_trip_through_the_store(store: ObjectStore) -> None:
    records = _three_days(store)
    start, end = T0 + timedelta(hours=12), T0 + timedelta(days=1, hours=12)
    chunks = list(iter_captures(store, model="m", start=start, end=end, chunk_rows=64, fields=FIELDS))
    expected = [r for r in records if start.isoformat() <= r["ts"] < end.isoformat()]
    assert len(expected) == 240
    # Coalesced across objects: every chunk is full but the last, none is larger.
    assert [c.rows for c in chunks] == [64, 64, 64, 48]
    ids = np.concatenate([c.prediction_id for c in chunks]).tolist()
    assert sorted(ids) == sorted(r["prediction_id"] for r in expected)
    first, by_id = chunks[0], {r["prediction_id"]: r for r in expected}
    for j in range(first.rows):
        record = by_id[first.prediction_id[j]]
        assert first.columns["temp"][j] == record["inputs"]["temp"]
        assert first.columns["speed"][j] == record["inputs"]["speed"]
        assert first.columns["variant"][j] == record["inputs"]["variant"]
        assert first.columns["record_id"][j] == record["inputs"]["record_id"]
        assert first.score[j] == record["score"]
        assert bool(first.fallback[j]) is record["fallback"]
    assert first.columns["temp"].dtype == np.float64
    assert first.columns["variant"].dtype == object
    ts = np.concatenate([c.ts for c in chunks])
    assert ts.min() >= np.datetime64(start.replace(tzinfo=None), "us")
    assert ts.max() < np.datetime64(end.replace(tzinfo=None), "us")
    assert all(c.invalid == dict.fromkeys(("record_id", "temp", "speed", "variant"), 0) for c in chunks)


def test_only_partitions_overlapping_the_window_are_listed(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    _three_days(store)
    listed: list[str] = []
    original = store.list

    def spy(prefix: str = "") -> Any:
        listed.append(prefix)
        return original(prefix)

    store.list = spy  # type: ignore[method-assign]
    start = T0 + timedelta(days=1, hours=1)
    chunks = list(
        iter_captures(store, model="m", start=start, end=start + timedelta(hours=1), chunk_rows=1000)
    )
    # The one overlapping partition only (the window reads Parquet, never compacts: decision 0050).
    assert listed == ["captures/model=m/date=2026-03-02/"]
    assert sum(c.rows for c in chunks) == 10
    assert all(c.columns == {} for c in chunks)  # no fields asked for


def test_row_groups_outside_the_window_are_skipped_and_chunks_stay_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(str(tmp_path / "store"))
    records = [_prediction(i, T0 + timedelta(seconds=10 * i)) for i in range(5000)]
    rows = [
        r
        | {
            "inputs": orjson.dumps(r["inputs"]).decode(),
            "outputs": "{}",
            "ts": datetime.fromisoformat(r["ts"]),
        }
        for r in records
    ]
    table = pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA)
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=500)  # ten row groups of 5000 s each
    store.write_bytes(
        "captures/model=m/date=2026-03-01/big-seg-00000000000000000001.parquet", sink.getvalue()
    )
    read_groups: list[list[int]] = []
    opened: list[dict[str, Any]] = []
    original_file = pq.ParquetFile

    class Spy(original_file):  # type: ignore[misc, valid-type]
        def __init__(self, source: Any, **kwargs: Any) -> None:
            opened.append(kwargs)
            super().__init__(source, **kwargs)

        def iter_batches(self, **kwargs: Any) -> Any:
            read_groups.append(list(kwargs["row_groups"]))
            return super().iter_batches(**kwargs)

    monkeypatch.setattr(pq, "ParquetFile", Spy)
    start = T0 + timedelta(seconds=12_000)  # inside the third row group (10,000–14,990 s)
    end = T0 + timedelta(seconds=21_000)  # inside the fifth
    chunks = list(iter_captures(store, model="m", start=start, end=end, chunk_rows=128, fields=FIELDS))
    assert read_groups == [[2, 3, 4]]
    assert opened == [{"pre_buffer": False}]
    assert max(c.rows for c in chunks) == 128
    assert sum(c.rows for c in chunks) == 900  # 9,000 s at one prediction per 10 s


def test_version_filter_and_other_models(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    records = [_prediction(i, T0 + timedelta(minutes=i), version=1 + i % 2) for i in range(100)]
    records += [_prediction(1000 + i, T0 + timedelta(minutes=i), model="m2") for i in range(50)]
    _ship(store, records, "w1-seg-00000000000000000001")
    window = {"start": T0, "end": T0 + timedelta(days=1), "chunk_rows": 1000}
    assert sum(c.rows for c in iter_captures(store, model="m", **window)) == 100
    assert sum(c.rows for c in iter_captures(store, model="m", version=2, **window)) == 50
    assert sum(c.rows for c in iter_captures(store, model="m2", **window)) == 50
    assert list(iter_captures(store, model="unknown", **window)) == []


def test_capture_store_output_is_read_back(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    capture = CaptureStore(store, tmp_path / "wal", CaptureSettings(convert_in_subprocess=False))
    capture.start()
    try:
        for i in range(30):
            capture.append(_prediction(i, T0 + timedelta(minutes=i)))
        assert capture.flush(SETTLE_S)  # compacted: the window reads Parquet only
    finally:
        capture.close()
    # Naive datetimes are UTC.
    start = T0.replace(tzinfo=None)
    chunks = list(
        iter_captures(store, model="m", start=start, end=start + timedelta(minutes=10), chunk_rows=7)
    )
    assert [c.rows for c in chunks] == [7, 3]
    assert chunks[0].model_version.tolist() == [1] * 7


def test_inputs_of_the_wrong_type_are_counted_as_invalid() -> None:
    texts = [
        orjson.dumps({"temp": 301.5, "speed": 1500, "variant": "L"}).decode(),
        orjson.dumps({"temp": "ERR", "speed": True, "variant": True}).decode(),  # three wrong types
        orjson.dumps({"temp": None, "variant": None}).decode(),  # null and missing: not invalid
        '{"temp": 1e308, "speed": 100000000000000000000000000000, "variant": ["L"]}',  # big: floats
        '{"temp": 1e400}',  # infinite: not JSON
        "{not json",
        orjson.dumps([1, 2]).decode(),  # not an object
        None,
    ]
    columns, invalid, malformed = decode_fields(texts, FIELDS[1:])
    nan = np.nan
    np.testing.assert_array_equal(columns["temp"], [301.5, nan, nan, 1e308, nan, nan, nan, nan])
    np.testing.assert_array_equal(columns["speed"], [1500, nan, nan, 1e29, nan, nan, nan, nan])
    assert columns["variant"].tolist() == ["L", None, None, None, None, None, None, None]
    assert invalid == {"temp": 1, "speed": 1, "variant": 2}
    assert malformed == 4


def test_category_values_decode_as_the_model_compares_them() -> None:
    # Integer codes, padded text and JSON booleans are what the service accepted and scored: monitoring
    # counts them as the same categories the model's transform saw (core.transform.canonical_category).
    fields = (ColumnSpec(name="code", type="category"), ColumnSpec(name="member", type="bool"))
    texts = [
        orjson.dumps(row).decode()
        for row in (
            {"code": 3, "member": True},
            {"code": " 3 ", "member": "yes"},
            {"code": 3.0, "member": 0},
            {"code": "", "member": "maybe"},
        )
    ]
    columns, invalid, _ = decode_fields(texts, fields)
    assert columns["code"].tolist() == ["3", "3", "3", None]
    assert columns["member"].tolist() == ["true", "true", "false", None]
    assert invalid == {"code": 0, "member": 1}


def test_bad_captured_inputs_reach_the_chunk(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    records = [_prediction(i, T0 + timedelta(minutes=i)) for i in range(10)]
    records[3]["inputs"]["temp"] = "sensor fault"
    records[4]["inputs"]["speed"] = "1500"  # a number as text is not a number
    _ship(store, records, "w1-seg-00000000000000000001")
    (chunk,) = iter_captures(
        store, model="m", start=T0, end=T0 + timedelta(hours=1), chunk_rows=100, fields=FIELDS
    )
    assert chunk.invalid == {"record_id": 0, "temp": 1, "speed": 1, "variant": 0}
    assert np.isnan(chunk.columns["temp"][3])
    assert np.isnan(chunk.columns["speed"][4])


def test_bad_windows_are_refused(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    with pytest.raises(UsageError, match="empty monitoring window"):
        list(iter_captures(store, model="m", start=T0, end=T0, chunk_rows=10))
    with pytest.raises(UsageError, match="chunk_rows"):
        list(iter_captures(store, model="m", start=T0, end=T0 + timedelta(hours=1), chunk_rows=0))


def test_capture_chunk_checks_lengths() -> None:
    with pytest.raises(ValueError, match="one entry per row"):
        CaptureChunk.from_columns({"x": [1.0, 2.0]}, [0.5])


def _feedback(prediction_id: str, ts: datetime, label: float) -> dict[str, Any]:
    return asdict(
        normalize(
            {"kind": "feedback", "prediction_id": prediction_id, "ts": ts, "label": label, "source": "api"}
        )
    )


def test_feedback_labels_first_wins_within_the_period_and_later_ones_are_conflicts(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    _ship(
        store,
        [
            _feedback("a", T0 - timedelta(hours=1), 1.0),  # before the window: not for its predictions
            _feedback("b", T0 + timedelta(hours=2), 0.0),
            _feedback("c", T0 + timedelta(hours=3), 1.0),
        ],
        "w1-seg-00000000000000000001",
    )
    _ship(
        store,
        [
            _feedback("b", T0 + timedelta(days=1, hours=1), 1.0),  # a second label, shipped later: a conflict
            _feedback("c", T0 + timedelta(days=1, hours=2), 1.0),  # the same label again: a duplicate
            _feedback("d", T0 + timedelta(days=3), 1.0),  # after as_of: not known yet
        ],
        "w1-seg-00000000000000000002",
    )
    as_of = T0 + timedelta(days=2)
    assert read_labels(store, T0, T0 + timedelta(days=1), as_of=as_of) == {"b": 0.0, "c": 1.0}
    book = read_label_book(store, T0, T0 + timedelta(days=1), as_of=as_of)
    assert book.conflicts == {("api", "api"): 1}
    assert book.duplicates == 1
    [example] = book.examples
    assert (example["prediction_id"], example["first_label"], example["later_label"]) == ("b", 0.0, 1.0)
    earlier = read_label_book(store, T0, T0 + timedelta(days=1), as_of=T0 + timedelta(hours=12))
    assert earlier.merged() == {"b": 0.0, "c": 1.0}
    assert earlier.conflict_count == 0


def test_label_files_by_record_id(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    header = "record_id,timestamp,available_at,machine_failure\n"
    store.write_bytes(
        "labels/plant/date=2026-03-01/part-0000.csv",
        (
            header + "r1,2026-03-01T01:00:00.000Z,2026-03-01T07:00:00.000Z,1\n"
            "r2,2026-03-01T02:00:00.000Z,2026-03-01T08:00:00.000Z,0\n"
            "r3,2026-03-01T03:00:00.000Z,2026-03-01T09:00:00.000Z,oops\n"
        ).encode(),
    )
    store.write_bytes(
        "labels/plant/date=2026-03-02/part-0000.csv",
        (header + "r4,2026-03-01T23:00:00.000Z,2026-03-02T05:00:00.000Z,1\n").encode(),
    )
    _ship(store, [_feedback("p1", T0 + timedelta(hours=1), 0.0)], "w1-seg-00000000000000000001")
    window = (T0, T0 + timedelta(days=1))
    labels = read_labels(store, *window, as_of=T0 + timedelta(days=2), dataset="plant")
    assert labels == {"r1": 1.0, "r2": 0.0, "r4": 1.0, "p1": 0.0}  # "oops" is not a label
    assert read_labels(store, *window, as_of=T0 + timedelta(hours=7, minutes=30), dataset="plant") == {
        "r1": 1.0,
        "p1": 0.0,
    }
    assert read_labels(store, *window, as_of=T0 + timedelta(days=2)) == {"p1": 0.0}


def test_a_label_file_without_a_needed_column_is_named_with_the_column(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    key = "labels/plant/date=2026-03-01/part-0000.csv"
    store.write_bytes(key, b"record_id,available_at,failure\nr1,2026-03-01T07:00:00Z,1\n")
    with pytest.raises(DataError) as info:
        read_labels(store, T0, T0 + timedelta(days=1), as_of=T0 + timedelta(days=2), dataset="plant")
    assert f"label file {store.uri(key)} has no column 'machine_failure'" in info.value.headline
