"""Reading date-partitioned CSV (raw sensor data and delayed labels) from the object store.

Raw rows are read as *strings* on purpose: typing is validation's job, and a value that does not parse
must reach the quarantine with its original text rather than fail the read.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from driftloop.errors import DataError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from driftloop.storage import ObjectStore

__all__ = [
    "LABEL_TIME_COLUMN",
    "SOURCE_COLUMN",
    "SOURCE_ROW_COLUMN",
    "MalformedLine",
    "Partition",
    "RawBatch",
    "list_partitions",
    "read_labels",
    "read_raw",
]

SOURCE_COLUMN = "_source"
SOURCE_ROW_COLUMN = "_row"
LABEL_TIME_COLUMN = "available_at"
_DAY = re.compile(r"(?:^|/)date=(\d{4}-\d{2}-\d{2})/[^/]+\.csv$")


@dataclass(frozen=True, slots=True)
class Partition:
    """One CSV file of a date partition."""

    key: str
    day: date
    size: int


@dataclass(frozen=True, slots=True)
class MalformedLine:
    """A CSV line that could not be split into the header's fields."""

    source: str
    line: int | None
    text: str
    reason: str


@dataclass
class RawBatch:
    """Raw rows as string columns plus where each came from, and the files' content hashes."""

    table: pa.Table
    hashes: dict[str, str]
    malformed: list[MalformedLine] = field(default_factory=list)
    missing_columns: dict[str, list[str]] = field(default_factory=dict)


def list_partitions(store: ObjectStore, prefix: str, start: date | None, end: date | None) -> list[Partition]:
    """CSV files under ``prefix`` in ``date=YYYY-MM-DD`` folders with ``start <= day <= end`` (inclusive)."""
    found = []
    for info in store.list(prefix.rstrip("/") + "/"):
        match = _DAY.search(info.key)
        if not match:
            continue
        day = date.fromisoformat(match.group(1))
        if (start is None or day >= start) and (end is None or day <= end):
            found.append(Partition(key=info.key, day=day, size=info.size))
    return found


def read_raw(
    store: ObjectStore,
    partitions: Sequence[Partition],
    columns: Sequence[str],
    *,
    on_file: Callable[[Partition], None] | None = None,
) -> RawBatch:
    """Read every partition as string columns ``columns`` (missing ones become null, noted per file).

    Adds ``_source`` (the key) and ``_row`` (0-based data row in the file). Lines with the wrong number
    of fields are returned in ``malformed`` instead of failing the read.
    """
    tables: list[pa.Table] = []
    hashes: dict[str, str] = {}
    malformed: list[MalformedLine] = []
    missing: dict[str, list[str]] = {}
    for part in partitions:
        data = store.read_bytes(part.key)
        hashes[part.key] = hashlib.sha256(data).hexdigest()
        table, bad, header = _read_strings(data, part.key)
        malformed.extend(bad)
        absent = [c for c in columns if c not in header]
        if absent:
            missing[part.key] = absent
        n = table.num_rows
        arrays = [table.column(c) if c in header else pa.nulls(n, pa.string()) for c in columns]
        arrays.append(pa.repeat(pa.scalar(part.key, pa.string()), n))
        arrays.append(pa.array(range(n), pa.int64()))
        tables.append(pa.table(arrays, names=[*columns, SOURCE_COLUMN, SOURCE_ROW_COLUMN]))
        if on_file is not None:
            on_file(part)
    schema = pa.schema(
        [*((c, pa.string()) for c in columns), (SOURCE_COLUMN, pa.string()), (SOURCE_ROW_COLUMN, pa.int64())]
    )
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return RawBatch(table, hashes, malformed, missing)


def read_labels(
    store: ObjectStore, partitions: Sequence[Partition], id_column: str, target: str, as_of: datetime
) -> tuple[pa.Table, dict[str, str]]:
    """Labels known by ``as_of``: one row per id (the latest known), string columns ``[id_column, target]``.

    The target is kept as text; validation decides whether it is a usable label.
    """
    frames, hashes = [], {}
    for part in partitions:
        data = store.read_bytes(part.key)
        hashes[part.key] = hashlib.sha256(data).hexdigest()
        table, _bad, header = _read_strings(data, part.key)
        if not header:
            continue
        for needed in (id_column, target, LABEL_TIME_COLUMN):
            if needed not in header:
                raise DataError(f"label file {store.uri(part.key)} has no column {needed!r}")
        frames.append(table.select([id_column, target, LABEL_TIME_COLUMN]))
    if not frames:
        return pa.table({id_column: pa.array([], pa.string()), target: pa.array([], pa.string())}), hashes
    labels = pa.concat_tables(frames)
    known_at = _as_utc(labels.column(LABEL_TIME_COLUMN))
    labels = labels.filter(
        pc.fill_null(pc.less_equal(known_at, pa.scalar(as_of, pa.timestamp("ms", tz="UTC"))), False)
    )
    ids = labels.column(id_column)
    if pc.count_distinct(ids).as_py() < len(ids):  # a correction re-sent later: the last one wins
        frame = labels.to_pandas()
        keep = ~frame[id_column].duplicated(keep="last").to_numpy()
        labels = labels.filter(pa.array(keep))
    return labels.select([id_column, target]), hashes


def _as_utc(text: pa.ChunkedArray) -> pa.Array:
    """ISO 8601 text → UTC timestamps (null where unparseable)."""
    try:
        return pc.cast(text, pa.timestamp("ms", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parsed = pd.to_datetime(
            pd.Series(text.to_pylist(), dtype=object), utc=True, errors="coerce", format="ISO8601"
        )
        naive = parsed.dt.tz_convert(None).to_numpy().astype("datetime64[ms]")
        return pa.array(naive, pa.timestamp("ms"), from_pandas=True).cast(pa.timestamp("ms", tz="UTC"))


def _read_strings(data: bytes, source: str) -> tuple[pa.Table, list[MalformedLine], list[str]]:
    malformed: list[MalformedLine] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        malformed.append(
            MalformedLine(
                source=source,
                line=row.number,
                text=row.text,
                reason=(
                    f"malformed CSV line: expected {row.expected_columns} fields, got {row.actual_columns}"
                ),
            )
        )
        return "skip"

    header = _header(data)
    if not header:  # an empty file holds no rows; nothing to quarantine
        return pa.table({}), malformed, header
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid as exc:
        raise DataError(f"cannot read CSV {source}: {exc}") from None
    return table, malformed, header


def _header(data: bytes) -> list[str]:
    first = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip("\r")
    return [name.strip().strip('"') for name in first.split(",")] if first else []
