"""Capture of the service's micro-batches as ``request_batch`` records: request bodies as received plus
what was answered (decision 0028), and the Parquet rows they become."""

from __future__ import annotations

import asyncio
import io
import struct
import uuid
import zlib
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftloop.capture import CaptureStore, read_captures
from driftloop.capture.frames import decode, encode, encode_one
from driftloop.capture.parquet import expand, parquet_objects
from driftloop.capture.records import Feedback, from_stored
from driftloop.core.requests import RequestFormatError, request_rows
from driftloop.settings import CaptureSettings
from driftloop.storage import open_store
from tests.conftest import SETTLE_S

if TYPE_CHECKING:
    from pathlib import Path

TS = "2026-03-01T12:00:00.000000+00:00"
ROWS = [{"torque_nm": 40.0 + i, "tool_wear_min": i, "product_variant": "LMH"[i % 3]} for i in range(13)]
COLUMNS = ["torque_nm", "tool_wear_min", "product_variant"]


def _requests() -> list[tuple[str, list[dict[str, Any]], bytes, str | None]]:
    """(endpoint, rows, body, content type when not JSON) of requests in every format the service reads."""
    split = {"dataframe_split": {"columns": COLUMNS, "data": [[r[c] for c in COLUMNS] for r in ROWS[3:5]]}}
    parquet = io.BytesIO()
    pd.DataFrame(ROWS[9:11]).to_parquet(parquet)
    return [
        ("/v1/predict", ROWS[:1], orjson.dumps({"instances": ROWS[:1]}), None),
        ("/v1/predict", ROWS[1:3], b'{ "instances" : ' + orjson.dumps(ROWS[1:3]) + b', "extra": 1 }', None),
        ("/invocations", ROWS[3:5], orjson.dumps(split), None),
        (
            "/invocations",
            ROWS[5:7],
            orjson.dumps({"inputs": {c: [r[c] for r in ROWS[5:7]] for c in COLUMNS}}),
            None,
        ),
        ("/invocations", ROWS[7:9], pd.DataFrame(ROWS[7:9]).to_csv(index=False).encode(), "text/csv"),
        ("/invocations", ROWS[9:11], parquet.getvalue(), "application/vnd.apache.parquet"),
        (
            "/invocations",
            ROWS[11:13],
            orjson.dumps(
                {"instances": {c: [r[c] for r in ROWS[11:13]] for c in COLUMNS}, "params": {"k": 1}}
            ),
            None,
        ),
    ]


def request_batch(*, threshold: float | None = 0.5, shadow: bool = False) -> dict[str, Any]:
    """A micro-batch as ``_Service.finish`` records it."""
    requests = _requests()
    record = {
        "kind": "request_batch",
        "ts": TS,
        "model_name": "plant",
        "model_version": 4,
        "fallback": False,
        "threshold": threshold,
        "ids": [uuid.uuid4().hex for _ in ROWS],
        "scores": [0.13 * i for i in range(len(ROWS))],
        "rows": [len(rows) for _, rows, _, _ in requests],
        "latency_ms": [1.5 + i for i in range(len(requests))],
        "endpoints": [e for e, _, _, _ in requests],
        "bodies": [body for _, _, body, _ in requests],
        # as the service records them when a batch holds a body that is not JSON
        "content_types": [media or "application/json" for _, _, _, media in requests],
    }
    if shadow:
        record["shadow_version"], record["shadow_scores"] = 5, [0.9 - 0.1 * i for i in range(len(ROWS))]
    return record


def per_row(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The same batch as one ``prediction`` record per scored row, built here by the documented rules."""
    out, row = [], 0
    for i, count in enumerate(record["rows"]):
        for _ in range(count):
            pid, score = record["ids"][row], record["scores"][row]
            item = {"id": pid, "score": score, "fallback": record["fallback"]}
            if record["threshold"] is not None:
                item["label"] = int(score >= record["threshold"])
            shadow = {}
            if "shadow_scores" in record:
                shadow = {
                    "shadow_version": record["shadow_version"],
                    "shadow_score": record["shadow_scores"][row],
                }
            out.append(
                {
                    "kind": "prediction",
                    "prediction_id": pid,
                    "ts": record["ts"],
                    "model_name": record["model_name"],
                    "model_version": record["model_version"],
                    "inputs": ROWS[row],
                    "outputs": item,
                    "score": score,
                    "latency_ms": record["latency_ms"][i],
                    "fallback": record["fallback"],
                    "endpoint": record["endpoints"][i],
                    **shadow,
                }
            )
            row += 1
    return out


def _table(objects: list[tuple[str, bytes]]) -> tuple[list[str], pa.Table]:
    keys = [key for key, _ in objects]
    return keys, pa.concat_tables([pq.read_table(pa.BufferReader(data)) for _, data in objects])


@pytest.mark.parametrize(("threshold", "shadow"), [(0.5, False), (None, True)], ids=["labels", "shadow"])
def test_a_request_batch_becomes_exactly_the_rows_of_one_prediction_record_per_row(
    threshold: float | None, shadow: bool
) -> None:
    record = request_batch(threshold=threshold, shadow=shadow)
    new_keys, new = _table(list(parquet_objects([record], "stem")))
    old_keys, old = _table(list(parquet_objects(per_row(record), "stem")))
    assert new_keys == old_keys == ["captures/model=plant/date=2026-03-01/stem.parquet"]
    assert new.equals(old)
    assert [orjson.loads(x) for x in new.column("inputs").to_pylist()] == ROWS
    expanded = expand(record)
    assert [r["inputs"] for r in expanded] == ROWS
    assert [r["prediction_id"] for r in expanded] == record["ids"]
    assert [r["latency_ms"] for r in expanded] == [
        1.5,
        2.5,
        2.5,
        3.5,
        3.5,
        4.5,
        4.5,
        5.5,
        5.5,
        6.5,
        6.5,
        7.5,
        7.5,
    ]
    assert expanded == [r for row in per_row(record) for r in expand(row)]


def test_a_request_batch_frame_keeps_its_bodies_byte_for_byte_and_a_damaged_one_stops_decoding() -> None:
    record = from_stored(request_batch())
    frame = encode([record])
    assert frame == encode_one(record)
    assert frame[8:9] == b"\x01"  # not JSON: the bodies are stored as received, not re-encoded
    for body in request_batch()["bodies"]:
        assert body in frame
    plain = encode_one(Feedback(prediction_id="p", ts=TS, label=1.0, source="api"))
    data = frame + plain + frame
    records, end = decode(data)
    assert end == len(data)
    assert [r.kind for r in records] == ["request_batch", "feedback", "request_batch"]
    assert records[0] == record
    assert records[2] == record
    # Torn in its bodies, a flipped byte, or sizes that do not add up: decoding stops before that frame.
    assert decode(frame + frame[:-3]) == ([record], len(frame))
    flipped = bytearray(frame)
    flipped[-5] ^= 0x20
    assert decode(plain + bytes(flipped)) == (decode(plain)[0], len(plain))
    meta_length = struct.unpack_from("<I", frame, 9)[0]
    meta = orjson.loads(frame[13 : 13 + meta_length])
    meta["sizes"][0] += 1
    head = orjson.dumps(meta)
    payload = b"\x01" + struct.pack("<I", len(head)) + head + frame[13 + meta_length :]
    bad = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    assert decode(plain + bad) == (decode(plain)[0], len(plain))


def test_a_frame_that_is_whole_but_not_a_record_stops_decoding() -> None:
    plain = encode_one(Feedback(prediction_id="p", ts=TS, label=1.0, source="api"))
    for payload in (b'{"kind": "prediction_batch", "ts": "x"}', b"[1, 2]", b'{"kind": "feedback"}'):
        unknown = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
        assert decode(plain + unknown + plain) == (decode(plain)[0], len(plain))


def test_mixed_appends_keep_the_plain_records_in_one_frame_and_each_batch_in_its_own() -> None:
    record = from_stored(request_batch())
    plain = [Feedback(prediction_id=f"p{i}", ts=TS, label=1.0, source="api") for i in range(2)]
    frame = encode([plain[0], record, plain[1]])
    records, _ = decode(frame)
    assert records == [plain[0], plain[1], record]
    assert orjson.loads(frame[8 : 8 + struct.unpack_from("<I", frame)[0]]) == [
        {"prediction_id": f"p{i}", "ts": TS, "label": 1.0, "source": "api", "kind": "feedback"}
        for i in range(2)
    ]  # the WAL's JSON: the record's fields and its kind


def test_a_batch_of_json_bodies_records_no_content_types_and_a_csv_body_needs_its_own() -> None:
    record = request_batch()
    csv = record["endpoints"].index("/invocations") + 2  # the CSV request (see _requests)
    assert record["content_types"][csv] == "text/csv"
    json_only = {**record, "content_types": None}  # JSON is what a batch without the list holds
    rows = expand(json_only)
    assert [r["inputs"] for r in rows[:7]] == ROWS[:7]  # the JSON bodies read alike
    body = record["bodies"][csv].decode()
    assert [r["inputs"] for r in rows[7:9]] == [{"unreadable_body": body}] * 2  # a CSV body read as JSON
    assert [r["inputs"] for r in expand(record)[7:9]] == ROWS[7:9]


def test_a_body_that_does_not_give_its_rows_is_kept_whole_rather_than_failing_its_segment() -> None:
    record = request_batch()
    record["bodies"][0] = b'{"instances": "not rows"}'
    record["bodies"][2] = b"not json"
    rows = expand(record)
    assert rows[0]["inputs"] == {"unreadable_body": '{"instances": "not rows"}'}
    assert rows[3]["inputs"] == rows[4]["inputs"] == {"unreadable_body": "not json"}
    assert [r["inputs"] for r in rows[1:3] + rows[5:]] == ROWS[1:3] + ROWS[5:]
    [(_, data)] = parquet_objects([record], "stem")
    assert pq.read_table(pa.BufferReader(data)).num_rows == len(ROWS)


@pytest.mark.parametrize("durability", ["process", "fsync"])
def test_request_batches_go_through_the_store_to_parquet(tmp_path: Path, durability: str) -> None:
    store = open_store(str(tmp_path / "store"))
    cfg = CaptureSettings(durability=durability, segment_max_age_s=0.2, retry_initial_s=0.05)
    batches = [request_batch(), request_batch(shadow=True)]

    async def append(capture: CaptureStore) -> None:
        for batch in batches:
            pending = capture.append_nowait([batch], trusted=True)
            if pending is not None:
                await pending

    with CaptureStore(store, tmp_path / "wal", cfg) as capture:
        asyncio.run(append(capture))
        assert capture.flush(SETTLE_S)
        assert capture.stats()["shipped_records"] == 2 * len(ROWS)
    table = read_captures(store, model="plant")
    by_id = {r["prediction_id"]: r for r in table.to_pylist()}
    assert sorted(by_id) == sorted(pid for batch in batches for pid in batch["ids"])
    for batch in batches:
        assert [orjson.loads(by_id[pid]["inputs"]) for pid in batch["ids"]] == ROWS


def test_request_rows_reads_each_endpoints_format_and_names_what_is_wrong() -> None:
    for endpoint, rows, body, media in _requests():
        assert request_rows(endpoint, body, media or "application/json") == rows
    with pytest.raises(RequestFormatError, match="not valid JSON"):
        request_rows("/v1/predict", b"{")
    with pytest.raises(RequestFormatError, match="instances"):
        request_rows("/v1/predict", b'{"rows": []}')
    with pytest.raises(RequestFormatError, match="exactly one of"):
        request_rows("/invocations", b'{"instances": [], "inputs": []}')
    with pytest.raises(RequestFormatError, match="no request format"):
        request_rows("/v2/other", b"{}")
