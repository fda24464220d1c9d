"""CSV encoding of a simulated day: raw readings and delayed labels as bytes. Pure: no I/O.

Numbers are written from integers in sensor units, so the text is exact: temperatures and torque with
one decimal (``300.1``, ``-0.5``), speed and wear as integers. Fixed-width text (timestamps, record and
machine ids) is built as a byte matrix in numpy, which is several times faster than formatting per row.
Fields are never quoted: no value the simulator writes contains a comma, quote or line break (pyarrow
raises if one ever does), and pyarrow's "needed" style would quote every string, numbers included.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from driftloop.simulate._plant import DAY_MS, VARIANTS
from driftloop.simulate._request import FAILURE_MODES, LABEL_COLUMNS, RAW_COLUMNS

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from driftloop.simulate._day import DayTable

__all__ = ["EPOCH", "EncodedDay", "encode_day", "header"]

EPOCH = date(1970, 1, 1)
_DECIMAL_COLUMNS = frozenset({"air_temperature_k", "process_temperature_k", "torque_nm"})
_WRITE_OPTIONS = pa_csv.WriteOptions(include_header=False, quoting_style="none", batch_size=1 << 16)


@dataclass(frozen=True, slots=True)
class EncodedDay:
    """The raw CSV body of one day and its label rows grouped by the date they become available."""

    raw: bytes
    labels: list[tuple[date, bytes]]


def header(columns: tuple[str, ...]) -> bytes:
    """The header line for ``columns``."""
    return (",".join(columns) + "\n").encode()


def encode_day(table: DayTable, *, machines: int, id_digits: int, label_delay: timedelta) -> EncodedDay:
    """Encode ``table`` (bodies without header lines).

    Record ids are ``YYYYMMDD-`` plus the row number zero-padded to ``id_digits``; machine ids are
    ``M`` plus the 1-based machine number padded to at least three digits. Labels are partitioned by
    the UTC date of ``timestamp + label_delay`` (the delay is truncated to whole milliseconds).
    """
    epoch_ms = (table.day - EPOCH).days * DAY_MS + table.offset_ms
    timestamps = _timestamps(epoch_ms)
    ids = _record_ids(table.day, table.rows, id_digits)
    raw = _raw_table(table, timestamps, ids, max(3, len(str(machines))))
    delay_ms = label_delay // timedelta(milliseconds=1)
    return EncodedDay(raw=_csv(raw), labels=_labels(table, timestamps, ids, epoch_ms + delay_ms))


def _raw_table(table: DayTable, timestamps: pa.Array, ids: pa.Array, machine_digits: int) -> pa.Table:
    machine_ids = _fixed_width(
        np.hstack([np.full((table.rows, 1), ord("M"), np.uint8), _digits(table.machine + 1, machine_digits)])
    )
    columns: dict[str, pa.Array] = {
        "timestamp": timestamps,
        "record_id": ids,
        "machine_id": machine_ids,
        "product_variant": pa.array(VARIANTS, pa.large_string()).take(pa.array(table.variant)),
    }
    for name, values in table.readings.items():
        columns[name] = _tenths(values) if name in _DECIMAL_COLUMNS else pa.array(values).cast(pa.string())
    for name, blank in table.damage.blank.items():
        columns[name] = pc.if_else(pa.array(blank), pa.scalar(None, columns[name].type), columns[name])
    for name, (rows, texts) in table.damage.text.items():
        mask = np.zeros(table.rows, dtype=np.bool_)
        mask[rows] = True
        column = columns[name]
        columns[name] = pc.replace_with_mask(column, pa.array(mask), pa.array(texts, column.type))
    return pa.table([columns[name] for name in RAW_COLUMNS], names=list(RAW_COLUMNS))


def _labels(
    table: DayTable, timestamps: pa.Array, ids: pa.Array, available_ms: NDArray[np.int64]
) -> list[tuple[date, bytes]]:
    failures = table.failures
    flags = {
        "machine_failure": failures.machine_failure,
        "twf": failures.twf,
        "hdf": failures.hdf,
        "pwf": failures.pwf,
        "osf": failures.osf,
        "rnf": failures.rnf,
    }
    columns = [ids, timestamps, _timestamps(available_ms)]
    columns += [pa.array(flags[mode].astype(np.int8)) for mode in FAILURE_MODES]
    labels = pa.table(columns, names=list(LABEL_COLUMNS))
    # Rows are in time order, so each availability date is one contiguous slice.
    days = available_ms // DAY_MS
    cuts = np.flatnonzero(np.diff(days)) + 1
    bounds = [0, *cuts.tolist(), len(days)]
    return [
        (EPOCH + timedelta(days=int(days[lo])), _csv(labels.slice(lo, hi - lo)))
        for lo, hi in itertools.pairwise(bounds)
        if hi > lo
    ]


def _csv(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink, _WRITE_OPTIONS)
    return bytes(sink.getvalue().to_pybytes())


def _tenths(units: NDArray[np.int64]) -> pa.Array:
    """``3001`` → ``"300.1"``, ``-5`` → ``"-0.5"``: integers in tenths as decimal text."""
    text = pc.binary_replace_slice(pa.array(units).cast(pa.string()), start=-1, stop=-1, replacement=".")
    small = np.abs(units) < 10
    if small.any():
        # Inserting the point before the last digit gives ".5" / "-.5" for one-digit values; fix those.
        fixed = [f"{'-' if u < 0 else ''}0.{abs(u)}" for u in units[small].tolist()]
        text = pc.replace_with_mask(text, pa.array(small), pa.array(fixed, pa.string()))
    return text


def _timestamps(epoch_ms: NDArray[np.int64]) -> pa.Array:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-01-01T00:00:03.512Z``."""
    n = len(epoch_ms)
    days = epoch_ms // DAY_MS
    first = int(days.min()) if n else 0
    span = int(days.max()) - first + 1 if n else 1
    calendar = np.frombuffer(
        "".join((EPOCH + timedelta(days=first + i)).isoformat() for i in range(span)).encode(), np.uint8
    ).reshape(span, 10)
    ms = epoch_ms - days * DAY_MS
    out = np.empty((n, 24), dtype=np.uint8)
    out[:, 0:10] = calendar[days - first]
    out[:, 10] = ord("T")
    out[:, 11:13] = _digits(ms // 3_600_000, 2)
    out[:, 13] = ord(":")
    out[:, 14:16] = _digits(ms // 60_000 % 60, 2)
    out[:, 16] = ord(":")
    out[:, 17:19] = _digits(ms // 1000 % 60, 2)
    out[:, 19] = ord(".")
    out[:, 20:23] = _digits(ms % 1000, 3)
    out[:, 23] = ord("Z")
    return _fixed_width(out)


def _record_ids(day: date, rows: int, digits: int) -> pa.Array:
    prefix = np.frombuffer((day.isoformat().replace("-", "") + "-").encode(), np.uint8)
    out = np.empty((rows, len(prefix) + digits), dtype=np.uint8)
    out[:, : len(prefix)] = prefix
    out[:, len(prefix) :] = _digits(np.arange(rows, dtype=np.int64), digits)
    return _fixed_width(out)


def _digits(values: NDArray[np.integer], width: int) -> NDArray[np.uint8]:
    """Zero-padded decimal digits of non-negative ``values`` as an ``(n, width)`` ASCII matrix."""
    out = np.empty((len(values), width), dtype=np.uint8)
    rest = values.astype(np.int64)
    for col in range(width - 1, -1, -1):
        rest, digit = np.divmod(rest, 10)
        out[:, col] = digit + ord("0")
    return out


def _fixed_width(matrix: NDArray[np.uint8]) -> pa.Array:
    """Each row of an ``(n, width)`` byte matrix as one string, without copying per row."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    data = np.ascontiguousarray(matrix)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
