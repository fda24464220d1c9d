"""Reading date-partitioned CSV (raw sensor data and delayed labels) from the object store.

Raw rows are read as *strings* on purpose: typing is validation's job, and a value that does not parse
must reach the quarantine with its original text rather than fail the read.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from driftloop.data.screen import escape, line_numbers, screen
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
    "read_text_csv",
]

SOURCE_COLUMN = "_source"
SOURCE_ROW_COLUMN = "_row"
LABEL_TIME_COLUMN = "available_at"
_DAY = re.compile(r"(?:^|/)date=(\d{4}-\d{2}-\d{2})/[^/]+\.csv$")
_CONTENT = re.compile(rb"[^\r\n]")


@dataclass(frozen=True, slots=True)
class Partition:
    """One CSV file of a date partition."""

    key: str
    day: date
    size: int


@dataclass(frozen=True, slots=True)
class MalformedLine:
    """A line of a CSV file that could not become a row: not text, or the wrong number of fields.

    ``line`` is 1-based in the file (the header is line 1); ``text`` is the line escaped by
    :func:`driftloop.data.screen.escape`, so it is printable UTF-8 whatever the bytes were.
    """

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
    on_file: Callable[[Partition, int], None] | None = None,
) -> RawBatch:
    """Read every partition as string columns ``columns`` (missing ones become null, noted per file).

    Adds ``_source`` (the key) and ``_row`` (0-based data row in the file). Lines that cannot be rows
    (not UTF-8 text, binary data, the wrong number of fields) are returned in ``malformed`` instead of
    failing the read: one bad byte costs its line, not the file.
    """
    tables: list[pa.Table] = []
    hashes: dict[str, str] = {}
    malformed: list[MalformedLine] = []
    missing: dict[str, list[str]] = {}
    for part in partitions:
        data = store.read_bytes(part.key)
        hashes[part.key] = hashlib.sha256(data).hexdigest()
        table, bad, header = read_text_csv(data, part.key)
        malformed.extend(bad)
        absent = [c for c in columns if c not in header]
        if absent:
            missing[part.key] = absent
        n = table.num_rows
        arrays = [table.column(c) if c in header else pa.nulls(n, pa.string()) for c in columns]
        arrays.append(pa.repeat(pa.scalar(part.key, pa.string()), n))
        arrays.append(pa.array(range(n), pa.int64()))
        tables.append(pa.table(arrays, names=[*columns, SOURCE_COLUMN, SOURCE_ROW_COLUMN]))
        if on_file is not None:  # progress: the file just read and its rows
            on_file(part, n)
    schema = pa.schema(
        [*((c, pa.string()) for c in columns), (SOURCE_COLUMN, pa.string()), (SOURCE_ROW_COLUMN, pa.int64())]
    )
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return RawBatch(table, hashes, malformed, missing)


def read_labels(
    store: ObjectStore,
    partitions: Sequence[Partition],
    id_column: str,
    target: str,
    as_of: datetime,
    *,
    on_malformed: Callable[[MalformedLine], None] | None = None,
) -> tuple[pa.Table, dict[str, str]]:
    """Labels known by ``as_of``: one row per id (the latest known), string columns ``[id_column, target]``.

    A label file has (at least) the columns ``id_column``, ``target`` and ``available_at`` (ISO 8601:
    when the label became known); a later row for an id corrects an earlier one. The target is kept as
    text; validation decides whether it is a usable label. Lines that cannot be rows are skipped and
    passed to ``on_malformed``. Raises :class:`DataError` naming the file and the missing columns when
    a label file lacks one of the three.
    """
    frames, hashes = [], {}
    needed = (id_column, target, LABEL_TIME_COLUMN)
    for part in partitions:
        data = store.read_bytes(part.key)
        hashes[part.key] = hashlib.sha256(data).hexdigest()
        table, bad, header = read_text_csv(data, part.key)
        if on_malformed is not None:
            for line in bad:
                on_malformed(line)
        if not header:
            continue
        absent = [name for name in needed if name not in header]
        if absent:
            raise DataError(
                f"label file {store.uri(part.key)} has no column{'s' if len(absent) > 1 else ''} "
                f"{_quoted(absent)} (its columns: {_quoted(header)}; a label file needs {_quoted(needed)})"
            )
        frames.append(table.select(list(needed)))
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


def read_text_csv(data: bytes, source: str) -> tuple[pa.Table, list[MalformedLine], list[str]]:
    """``data`` as string columns named by its header, and the lines that could not be rows.

    Lines that are not text are screened out first (:mod:`driftloop.data.screen`); lines with the
    wrong number of fields are skipped by pyarrow. Both come back as :class:`MalformedLine` with their
    1-based line in the file. Only text a CSV can hold reaches the table: an empty field is null,
    every other value (``NaN``, ``NA``, ``null``…) stays the text it was, for validation to judge.
    """
    screened = screen(data)
    malformed = [MalformedLine(source, r.line, r.text, r.reason) for r in screened.refused]
    header = _names(screened.header)
    if not header:  # an empty file holds no rows; nothing to quarantine
        return pa.table({}), malformed, header
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(f"CSV {source} has more than one column named {_quoted(repeated)}")
    try:
        table, invalid = _parse(screened.body, header, use_threads=True)
        if any(row.number is None for row in invalid):
            # pyarrow numbers rows only when it reads on one thread: pay for that only when needed.
            table, invalid = _parse(screened.body, header, use_threads=False)
    except pa.ArrowInvalid as exc:
        raise DataError(f"cannot read CSV {source}: {exc}") from None
    if invalid:
        lines = line_numbers(screened.body)
        for row in invalid:
            known = row.number is not None and 0 < row.number <= len(lines)
            malformed.append(
                MalformedLine(
                    source=source,
                    line=screened.header_line + lines[row.number - 1] if known else None,
                    text=escape(row.text),
                    reason=(
                        f"malformed CSV line: expected {row.expected_columns} fields, "
                        f"got {row.actual_columns}"
                    ),
                )
            )
        malformed.sort(key=lambda m: m.line or 0)
    return table, malformed, header


def _parse(body: bytes, header: list[str], *, use_threads: bool) -> tuple[pa.Table, list[pacsv.InvalidRow]]:
    invalid: list[pacsv.InvalidRow] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append(row)
        return "skip"

    if _CONTENT.search(body) is None:  # pyarrow refuses an input without rows even with names given
        return pa.table({name: pa.array([], pa.string()) for name in header}), invalid
    table = pacsv.read_csv(
        pa.BufferReader(body),
        read_options=pacsv.ReadOptions(column_names=header, use_threads=use_threads),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()),
            # Only an empty field is missing. pyarrow's default list would also turn "NaN", "NA",
            # "null"… into nulls, and the quarantine would then show an empty cell, not the bad text.
            strings_can_be_null=True,
            null_values=[""],
        ),
    )
    return table, invalid


def _quoted(names: Sequence[str]) -> str:
    # Not repr(): header names are already escaped by the screen, repr would double the backslashes.
    return ", ".join(f"'{name}'" for name in names)


def _names(header: str) -> list[str]:
    """Column names of a header line; quoted names may hold commas, surrounding spaces are dropped."""
    if not header:
        return []
    # A byte-order mark (Excel writes one) is not part of the first name.
    return [name.strip() for name in next(csv.reader([header.removeprefix("\ufeff")]))]
