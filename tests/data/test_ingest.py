"""Reading raw and label partitions: bad lines cost only themselves, text stays text, clear errors."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from driftloop.data.ingest import MalformedLine, list_partitions, read_labels, read_raw
from driftloop.data.screen import escape
from driftloop.errors import DataError
from driftloop.storage import open_store

if TYPE_CHECKING:
    from driftloop.storage import ObjectStore

RAW = "raw/plant/date=2026-01-01/part-0000.csv"
LABELS = "labels/plant/date=2026-01-02/part-0000.csv"


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return open_store(str(tmp_path / "store"))


def _raw(store: ObjectStore, data: bytes) -> tuple[list[dict[str, str | None]], list[MalformedLine]]:
    store.write_bytes(RAW, data)
    batch = read_raw(store, list_partitions(store, "raw/plant", None, None), ["id", "value"])
    return batch.table.select(["id", "value"]).to_pylist(), batch.malformed


def test_one_bad_line_costs_only_that_line(store: ObjectStore) -> None:
    lines = [
        b"id,value",
        b"1,10.5",
        b"2,caf\xe9",  # latin-1
        b"3,\x00\x00\x1b[2J",  # binary
        b"4,NaN",
        b"5,6,7",  # one field too many
        b"",
        b"8,nan",
        b"9,inf",
        b"10,",
        b"11",  # one field too few, after a blank line
    ]
    rows, malformed = _raw(store, b"\r\n".join(lines) + b"\r\n")
    # Text stays the text it was: only an empty field is missing.
    assert rows == [
        {"id": "1", "value": "10.5"},
        {"id": "4", "value": "NaN"},
        {"id": "8", "value": "nan"},
        {"id": "9", "value": "inf"},
        {"id": "10", "value": None},
    ]
    assert [(m.source, m.line, m.text) for m in malformed] == [
        (RAW, 3, "2,caf\\xe9"),
        (RAW, 4, "3,\\x00\\x00\\x1b[2J"),
        (RAW, 6, "5,6,7"),
        (RAW, 11, "11"),
    ]
    assert [m.reason for m in malformed] == [
        "not UTF-8: byte 0xe9 at column 6",
        "binary data: control character \\x00 at column 3",
        "malformed CSV line: expected 2 fields, got 3",
        "malformed CSV line: expected 2 fields, got 1",
    ]
    # Every number points at the line as an editor numbers it, and the text is that line escaped.
    for m in malformed:
        assert m.line is not None
        assert escape(lines[m.line - 1]) == m.text


def test_a_stray_quote_does_not_swallow_the_lines_after_it(store: ObjectStore) -> None:
    body = b"".join(b"%d,%d\n" % (i, i) for i in range(2, 30_000))
    rows, malformed = _raw(store, b'id,value\n1,"unclosed\n' + body)
    assert len(rows) == 30_000 - 2
    assert [(m.line, m.reason.split(":")[0]) for m in malformed] == [(2, "unbalanced quote")]


def test_header_names_are_parsed_as_csv(store: ObjectStore) -> None:
    rows, malformed = _raw(store, b'\xef\xbb\xbf"id" , value\n1,2\n')  # a byte-order mark, quotes, spaces
    assert rows == [{"id": "1", "value": "2"}]
    assert malformed == []


def test_a_repeated_column_name_is_a_clear_error(store: ObjectStore) -> None:
    with pytest.raises(DataError, match=f"CSV {RAW} has more than one column named 'id'"):
        _raw(store, b"id,id,value\n1,2,3\n")


def _labels(store: ObjectStore, data: bytes) -> tuple[dict[str, str], list[MalformedLine]]:
    store.write_bytes(LABELS, data)
    malformed: list[MalformedLine] = []
    table, _ = read_labels(
        store,
        list_partitions(store, "labels/plant", None, None),
        "record_id",
        "machine_failure",
        datetime(2026, 1, 3, tzinfo=UTC),
        on_malformed=malformed.append,
    )
    return dict(
        zip(table.column("record_id").to_pylist(), table.column("machine_failure").to_pylist(), strict=True)
    ), malformed


def test_label_lines_that_cannot_be_read_are_reported_not_fatal(store: ObjectStore) -> None:
    labels, malformed = _labels(
        store,
        b"record_id,available_at,machine_failure\n"
        b"r1,2026-01-02T00:00:00Z,1\n"
        b"r2,2026-01-02T00:00:00Z,\xff\n"
        b"r3,2026-01-02T00:00:00Z,NaN\n"
        b"r1,2026-01-02T06:00:00Z,0\n"  # a correction: the later row wins
        b"r4,2026-01-05T00:00:00Z,1\n",  # not known by as_of
    )
    assert labels == {"r1": "0", "r3": "NaN"}  # "NaN" is for validation to reject, not a silent null
    assert [(m.source, m.line, m.text) for m in malformed] == [(LABELS, 3, "r2,2026-01-02T00:00:00Z,\\xff")]


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        (b"record_id,machine_failure", "has no column 'available_at'"),
        (b"id,available_at,failure", "has no columns 'record_id', 'machine_failure'"),
    ],
)
def test_a_label_file_without_a_needed_column_names_it_and_the_file(
    store: ObjectStore, header: bytes, missing: str
) -> None:
    with pytest.raises(DataError) as info:
        _labels(store, header + b"\nr1,1\n")
    headline = info.value.headline
    assert store.uri(LABELS) in headline
    assert missing in headline
    assert "a label file needs 'record_id', 'machine_failure', 'available_at'" in headline


DOCS = Path(__file__).resolve().parents[2] / "docs" / "pipeline.md"


def test_the_documented_label_example_behaves_as_documented(store: ObjectStore) -> None:
    section = DOCS.read_text().split("## Label files", 1)[1]
    example = re.search(r"```csv\n(.*?)```", section, flags=re.DOTALL)
    assert example is not None
    store.write_bytes(LABELS, example.group(1).encode())
    parts = list_partitions(store, "labels/plant", None, None)

    def known(as_of: datetime) -> dict[str, str]:
        table, _ = read_labels(store, parts, "record_id", "machine_failure", as_of)
        return dict(
            zip(
                table.column("record_id").to_pylist(),
                table.column("machine_failure").to_pylist(),
                strict=True,
            )
        )

    # "--as-of 2026-01-02T08:00Z trains on record 42 as 0, --as-of 2026-01-03 as 1 (the correction)"
    assert known(datetime(2026, 1, 2, 8, tzinfo=UTC))["20260101-0000042"] == "0"
    assert known(datetime(2026, 1, 3, tzinfo=UTC)) == {"20260101-0000042": "1", "20260101-0000043": "1"}
    assert known(datetime(2026, 1, 2, tzinfo=UTC)) == {}  # nothing was known yet
