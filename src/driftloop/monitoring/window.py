"""A time window of captured predictions, streamed from the object store in bounded chunks.

Predictions are the Parquet objects the capture store ships under
``captures/model=<name>/date=<YYYY-MM-DD>/`` (:mod:`driftloop.capture.records`). Only the date partitions
that overlap the window are listed; each object is read row group by row group, row groups whose ``ts``
statistics lie outside the window are skipped, and batches are coalesced into chunks of at most
``chunk_rows`` rows, so memory is set by ``chunk_rows``, never by the size of the window. Pre-buffering
is off: with it pyarrow reads whole row groups ahead and a 10M-row window took the process to 2 GB.

The captured ``inputs`` are JSON objects (the raw request fields); :func:`decode_fields` turns them into
one array per requested field, counting values of the wrong type as invalid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from driftloop.core.transform import INVALID, canonical_category
from driftloop.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    import numpy.typing as npt

    from driftloop.settings import ColumnSpec
    from driftloop.storage import ObjectStore

__all__ = [
    "COLUMNS",
    "CaptureChunk",
    "as_utc",
    "chunk_of",
    "count_rejections",
    "decode_fields",
    "in_window",
    "iter_captures",
    "partition_keys",
]

# The captured columns a pass reads.
COLUMNS = _COLUMNS = ("prediction_id", "ts", "model_version", "inputs", "score", "fallback")
_NUMERIC_TYPES = frozenset({"float", "int"})
_PLAIN_NUMBERS = frozenset({int, float, type(None)})
_TS_TYPE = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class CaptureChunk:
    """Captured predictions, one array entry per row.

    ``columns`` holds the requested input fields: float64 with NaN for numeric fields (null, missing or
    not a number), object arrays of ``str`` or ``None`` for the others. ``invalid`` counts, per field,
    values that were present but of the wrong type (a string in a numeric field, a number in a
    categorical one); they appear as NaN/None in ``columns``. ``malformed`` counts rows whose inputs
    were not a JSON object (all their fields are missing). ``ts`` is ``datetime64[us]`` in UTC (NaT when
    unknown); ``score`` is NaN where the prediction had none.
    """

    prediction_id: npt.NDArray[np.object_]
    ts: npt.NDArray[np.datetime64]
    score: npt.NDArray[np.float64]
    fallback: npt.NDArray[np.bool_]
    model_version: npt.NDArray[np.int64]
    columns: dict[str, npt.NDArray[Any]]
    invalid: dict[str, int] = field(default_factory=dict)
    malformed: int = 0

    def __post_init__(self) -> None:
        n = self.score.shape[0]
        arrays = [self.prediction_id, self.ts, self.fallback, self.model_version, *self.columns.values()]
        if any(a.shape[0] != n for a in arrays):
            raise ValueError("every array of a CaptureChunk needs one entry per row")

    @property
    def rows(self) -> int:
        return int(self.score.shape[0])

    @classmethod
    def from_columns(
        cls,
        columns: Mapping[str, npt.ArrayLike],
        score: npt.ArrayLike,
        *,
        prediction_id: Sequence[str] | None = None,
        ts: npt.ArrayLike | None = None,
        invalid: Mapping[str, int] | None = None,
        model_version: int = 0,
    ) -> CaptureChunk:
        """A chunk of rows that did not come from the capture store (a simulated day, a replay).

        Numeric columns are taken as float64, anything else as objects; ids default to the row number.
        """
        scores = np.asarray(score, dtype=np.float64)
        n = scores.shape[0]
        ids = [str(i) for i in range(n)] if prediction_id is None else list(prediction_id)
        return cls(
            prediction_id=_objects(ids),
            ts=np.full(n, np.datetime64("NaT", "us")) if ts is None else np.asarray(ts, "datetime64[us]"),
            score=scores,
            fallback=np.zeros(n, dtype=np.bool_),
            model_version=np.full(n, model_version, dtype=np.int64),
            columns={name: _as_column(values) for name, values in columns.items()},
            invalid=dict(invalid or {}),
        )


def iter_captures(
    store: ObjectStore,
    *,
    model: str,
    start: datetime,
    end: datetime,
    chunk_rows: int,
    fields: Sequence[ColumnSpec] = (),
    version: int | None = None,
) -> Iterator[CaptureChunk]:
    """The predictions of ``model`` captured in ``[start, end)`` (of ``version`` only, when given).

    ``fields`` are the input fields to decode into :attr:`CaptureChunk.columns` (``float``/``int``
    columns as numbers, the rest as strings). Chunks hold at most ``chunk_rows`` rows, in file order.
    Naive datetimes are taken as UTC. Raises :class:`UsageError` for an empty window or ``chunk_rows``
    below 1, and the store's errors.
    """
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise UsageError(f"empty monitoring window: {start.isoformat()} is not before {end.isoformat()}")
    if chunk_rows < 1:
        raise UsageError(f"chunk_rows must be at least 1, got {chunk_rows}")
    filesystem, base = store.arrow_filesystem()
    pending: list[pa.Table] = []
    buffered = 0
    for key in partition_keys(store, f"captures/model={model}", start, end):
        with filesystem.open_input_file(f"{base}/{key}") as source:
            parquet = pq.ParquetFile(source, pre_buffer=False)
            groups = _row_groups(parquet, start, end)
            if not groups:
                continue
            batches = parquet.iter_batches(batch_size=chunk_rows, row_groups=groups, columns=list(_COLUMNS))
            for batch in batches:
                kept = in_window(pa.Table.from_batches([batch]), start, end, version)
                if kept.num_rows == 0:
                    continue
                pending.append(kept)
                buffered += kept.num_rows
                while buffered >= chunk_rows:
                    table = pa.concat_tables(pending)
                    yield chunk_of(table.slice(0, chunk_rows), fields)
                    rest = table.slice(chunk_rows)
                    pending, buffered = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
    if buffered:
        yield chunk_of(pa.concat_tables(pending), fields)


def decode_fields(
    texts: Sequence[str | None], fields: Sequence[ColumnSpec]
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, int], int]:
    """JSON objects → one array per field, the invalid values per field and the malformed rows.

    Numeric fields (``float``/``int``) become float64 with NaN for null, missing and invalid values
    (anything but a JSON number: strings, booleans, lists); the others object arrays of ``str`` with
    ``None`` for null, missing and invalid values (anything but a JSON string).
    """
    loads = orjson.loads
    rows: list[dict[str, Any]] = []
    empty: dict[str, Any] = {}
    malformed = 0
    for text in texts:
        try:
            row = loads(text) if text is not None else None
        except orjson.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            malformed += 1
            row = empty
        rows.append(row)
    columns: dict[str, npt.NDArray[Any]] = {}
    invalid: dict[str, int] = {}
    for spec in fields:
        values = [row.get(spec.name) for row in rows]
        if spec.type in _NUMERIC_TYPES:
            columns[spec.name], invalid[spec.name] = _numbers(values)
        else:
            columns[spec.name], invalid[spec.name] = _categories(values, boolean=spec.type == "bool")
    return columns, invalid, malformed


def _numbers(values: list[Any]) -> tuple[npt.NDArray[np.float64], int]:
    # orjson gives int (64-bit), float (finite: an overflowing literal is a decode error) or other types.
    if set(map(type, values)) <= _PLAIN_NUMBERS:  # the common case: numpy converts, None → NaN
        return np.array(values, dtype=np.float64), 0
    out = np.full(len(values), np.nan)
    bad = 0
    for i, value in enumerate(values):
        kind = type(value)
        if kind is float or kind is int:
            out[i] = value
        elif value is not None:
            bad += 1
    return out, bad


def _categories(values: list[Any], *, boolean: bool) -> tuple[npt.NDArray[np.object_], int]:
    """Category values as the model's transform compares them (``core.transform``): text, whole numbers
    as their text, booleans as ``true``/``false``; anything else (a list, a bool in a text field) is
    invalid and counted, and kept as None."""
    texts = [canonical_category(v, boolean) for v in values]
    bad = sum(1 for t in texts if t is INVALID)
    return _objects([None if t is INVALID else t for t in texts]), bad


def _objects(values: Sequence[Any]) -> npt.NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _as_column(values: npt.ArrayLike) -> npt.NDArray[Any]:
    array = np.asarray(values)
    if array.dtype.kind in "fiub":
        return array.astype(np.float64)
    return array.astype(object)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def count_rejections(store: ObjectStore, *, model: str, start: datetime, end: datetime) -> int:
    """Rows of the requests the service refused with 422 for ``model`` in ``[start, end)``."""
    start, end = as_utc(start), as_utc(end)
    total = 0
    for key in partition_keys(store, "captures/rejections", start, end):
        table = pq.read_table(pa.BufferReader(store.read_bytes(key)), columns=["ts", "model_name", "rows"])
        ts = table.column("ts").to_numpy().astype("datetime64[us]")
        keep = (
            (ts >= np.datetime64(start.replace(tzinfo=None), "us"))
            & (ts < np.datetime64(end.replace(tzinfo=None), "us"))
            & (np.asarray(table.column("model_name").to_pylist(), dtype=object) == model)
        )
        total += int(np.asarray(table.column("rows").to_numpy())[keep].sum())
    return total


def _days(start: datetime, end: datetime) -> list[date]:
    last = (end - timedelta(microseconds=1)).date()
    return [start.date() + timedelta(days=i) for i in range((last - start.date()).days + 1)]


def partition_keys(store: ObjectStore, prefix: str, start: datetime, end: datetime) -> list[str]:
    """The Parquet objects under ``<prefix>/date=<day>/`` for the days that ``[start, end)`` touches.

    Reads only: segments landed and not compacted yet are not in them (the capture service compacts
    once idle; ``driftloop capture compact`` on demand; decision 0050)."""
    keys: list[str] = []
    for day in _days(start, end):
        keys += [i.key for i in store.list(f"{prefix}/date={day.isoformat()}/") if i.key.endswith(".parquet")]
    return keys


def _row_groups(parquet: pq.ParquetFile, start: datetime, end: datetime) -> list[int]:
    """Row groups whose ``ts`` range may overlap ``[start, end)`` (all of them without statistics)."""
    meta = parquet.metadata
    ts_index = parquet.schema_arrow.get_field_index("ts")
    groups = []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(ts_index).statistics if ts_index >= 0 else None
        if stats is not None and stats.has_min_max:
            low, high = as_utc(stats.min), as_utc(stats.max)
            if high < start or low >= end:
                continue
        groups.append(i)
    return groups


def in_window(table: pa.Table, start: datetime, end: datetime, version: int | None = None) -> pa.Table:
    """The rows of ``table`` with ``ts`` in ``[start, end)`` (and ``model_version`` ``version``, if given)."""
    ts = table.column("ts")
    mask = pc.and_(pc.greater_equal(ts, pa.scalar(start, _TS_TYPE)), pc.less(ts, pa.scalar(end, _TS_TYPE)))
    if version is not None:
        mask = pc.and_(mask, pc.equal(table.column("model_version"), version))
    return table.filter(pc.fill_null(mask, False))


def chunk_of(table: pa.Table, fields: Sequence[ColumnSpec]) -> CaptureChunk:
    """Captured rows (the :data:`COLUMNS`) as a chunk, their ``fields`` decoded (see ``iter_captures``)."""
    columns, invalid, malformed = decode_fields(table.column("inputs").to_pylist(), fields)
    ts = table.column("ts").cast(pa.timestamp("us")).to_numpy()
    return CaptureChunk(
        prediction_id=_objects(table.column("prediction_id").to_pylist()),
        ts=ts.astype("datetime64[us]"),
        score=table.column("score").to_numpy(zero_copy_only=False).astype(np.float64),
        fallback=pc.fill_null(table.column("fallback"), False).to_numpy(zero_copy_only=False),
        model_version=pc.fill_null(table.column("model_version"), -1).to_numpy(zero_copy_only=False),
        columns=columns,
        invalid=invalid,
        malformed=malformed,
    )
