"""The capture store's appends from event loops: one frame per loop iteration, micro-batches written at
once, and the helper's warm-up."""

from __future__ import annotations

import asyncio
import struct
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from driftloop.capture import CaptureStore
from driftloop.capture.frames import encode
from driftloop.capture.records import from_trusted
from driftloop.errors import CaptureFullError
from driftloop.storage import open_store
from tests.conftest import SETTLE_S
from tests.serving.test_capture import Switchable, ids, prediction, settings

if TYPE_CHECKING:
    from pathlib import Path

TS = "2026-03-01T12:00:00.000000+00:00"


def _frames(wal: Path) -> list[Any]:
    """Each frame of the WAL's segments, decoded: a record, or the list of records written together."""
    frames = []
    for segment in sorted(wal.glob("seg-*.wal")):
        data, pos = segment.read_bytes(), 0
        while pos + 8 <= len(data):
            length = struct.unpack_from("<I", data, pos)[0]
            frames.append(orjson.loads(data[pos + 8 : pos + 8 + length]))
            pos += 8 + length
    return frames


def _burst(capture: CaptureStore, records: list[dict[str, Any]]) -> list[BaseException | None]:
    """Append each record on its own, all in the same event-loop iteration (as a micro-batch's requests)."""

    async def appends() -> list[BaseException | None]:
        return await asyncio.gather(
            *(capture.append_many_async([r], trusted=True) for r in records), return_exceptions=True
        )

    return asyncio.run(appends())


def test_appends_of_one_loop_iteration_share_one_frame_and_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import driftloop.capture.writer as writer_module

    wal, writes = tmp_path / "wal", []
    real = writer_module.write_all
    monkeypatch.setattr(writer_module, "write_all", lambda fd, data: (writes.append(data), real(fd, data))[1])
    records = [{**prediction(i), "ts": TS} for i in range(40)]
    with CaptureStore(open_store(str(tmp_path / "store")), wal, settings(segment_max_age_s=60)) as capture:
        assert _burst(capture, records) == [None] * 40
        [frame] = _frames(wal)  # written before the appends returned: in the file already
    assert len(writes) == 1
    assert [r["prediction_id"] for r in frame] == [r["prediction_id"] for r in records]


def test_a_group_that_cannot_be_encoded_is_refused_alone(tmp_path: Path) -> None:
    good = [{**prediction(i), "ts": TS} for i in range(3)]
    bad = {**prediction(9), "ts": TS, "inputs": {"torque_nm": object()}}
    store = open_store(str(tmp_path / "store"))
    with CaptureStore(store, tmp_path / "wal", settings()) as capture:
        outcomes = _burst(capture, [good[0], bad, good[1], good[2]])
        assert capture.flush(SETTLE_S)
    assert [type(o).__name__ for o in outcomes] == ["NoneType", "ValueError", "NoneType", "NoneType"]
    assert "field 'inputs' is not JSON-serializable" in str(outcomes[1])
    assert sorted(ids(store)) == sorted(r["prediction_id"] for r in good)


def test_a_full_buffer_refuses_every_append_of_the_iteration(tmp_path: Path) -> None:
    store = Switchable(tmp_path / "store")
    store.up = False
    records = [{**prediction(i), "ts": TS} for i in range(13)]
    size = len(encode([from_trusted(r) for r in records[:10]]))  # one frame holding exactly ten
    with CaptureStore(store, tmp_path / "wal", settings(max_buffer_bytes=size)) as capture:  # type: ignore[arg-type]
        refused = _burst(capture, records)  # 13 records: more than the buffer holds
        assert {type(o) for o in refused} == {CaptureFullError}
        assert capture.stats()["rejected"] == 13
        assert _burst(capture, records[:10]) == [None] * 10  # exactly the buffer
        store.up = True
        assert capture.flush(SETTLE_S)
    assert sorted(ids(store)) == sorted(r["prediction_id"] for r in records[:10])


def test_a_cancelled_append_does_not_cancel_the_others_of_its_iteration(tmp_path: Path) -> None:
    records = [{**prediction(i), "ts": TS} for i in range(5)]
    store = open_store(str(tmp_path / "store"))

    async def appends(capture: CaptureStore) -> list[BaseException | None]:
        tasks = [asyncio.create_task(capture.append_many_async([r], trusted=True)) for r in records]
        await asyncio.sleep(0)  # every append is filed; the write comes at a later iteration
        tasks[0].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    with CaptureStore(store, tmp_path / "wal", settings()) as capture:
        outcomes = asyncio.run(appends(capture))
        assert capture.flush(SETTLE_S)
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert outcomes[1:] == [None] * 4
    assert {r["prediction_id"] for r in records[1:]} <= set(ids(store))


def test_the_helper_warms_up_on_every_kind_and_pauses_the_collector_only_while_converting(
    tmp_path: Path,
) -> None:
    import gc

    from driftloop.capture.helper import in_helper, warm_up
    from driftloop.capture.landing import land, landed_objects
    from driftloop.capture.parquet import parquet_objects

    warm_up()  # what the helper runs first: a record of every kind through the Parquet conversion

    segment = tmp_path / "seg-00000000000000000001.wal"
    records = [{**prediction(i), "ts": TS} for i in range(3)]
    segment.write_bytes(encode([from_trusted(r) for r in records]))
    count, landed = in_helper(land, segment)
    assert count == 3
    assert gc.isenabled()
    assert in_helper(landed_objects, landed, "stem") == (3, list(parquet_objects(records, "stem")))
    with pytest.raises(FileNotFoundError):
        in_helper(land, tmp_path / "gone.wal")
    assert gc.isenabled()


def test_append_nowait_writes_a_batch_at_once_or_refuses_all_of_it(tmp_path: Path) -> None:
    store = Switchable(tmp_path / "store")
    store.up = False
    records = [{**prediction(i), "ts": TS} for i in range(6)]
    size = len(encode([from_trusted(r) for r in records[:4]]))
    wal = tmp_path / "wal"
    cfg = settings(max_buffer_bytes=size, segment_max_age_s=60)
    with CaptureStore(store, wal, cfg) as capture:  # type: ignore[arg-type]
        assert capture.append_nowait(records[:4], trusted=True) is None
        [frame] = _frames(wal)  # in the WAL file when the call returns: no await, no later iteration
        assert [r["prediction_id"] for r in frame] == [r["prediction_id"] for r in records[:4]]
        with pytest.raises(CaptureFullError):
            capture.append_nowait(records[4:], trusted=True)
        assert capture.stats()["rejected"] == 1
        with pytest.raises(ValueError, match="field 'model_version'"):
            capture.append_nowait([{**records[4], "model_version": "three"}])  # untrusted: checked
        store.up = True
        assert capture.flush(SETTLE_S)
    assert sorted(ids(store)) == sorted(r["prediction_id"] for r in records[:4])


def test_append_nowait_with_fsync_durability_hands_back_what_to_await(tmp_path: Path) -> None:
    records = [{**prediction(i), "ts": TS} for i in range(3)]
    store = open_store(str(tmp_path / "store"))

    async def append(capture: CaptureStore) -> None:
        pending = capture.append_nowait(records, trusted=True)
        assert pending is not None
        await pending

    with CaptureStore(store, tmp_path / "wal", settings(durability="fsync")) as capture:
        asyncio.run(append(capture))
        assert capture.flush(SETTLE_S)
    assert sorted(ids(store)) == sorted(r["prediction_id"] for r in records)
