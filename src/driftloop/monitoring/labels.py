"""The ground truth of a monitoring window, kept by source: who said what, first, and what was refused.

Labels come from two places. ``/v1/feedback`` labels (``captures/feedback/``) are keyed by prediction
id and carry their ``source`` (who sent them: ``api`` today, the caller's identity once the service
authenticates callers). The delayed label files under ``labels/<dataset>/`` (the simulator's, or your
plant's) are keyed by the model's id column and form one more source, ``files:<dataset>``.

Rules (decision 0042):

- a label outside the model's label set (:class:`~driftloop.core.labels.LabelSpec`: 0/1, or a finite
  number in the regression band) is left out and counted per source, so one label ``7`` cannot blind
  the decay check and ``1e300`` cannot overflow a metric;
- one label per prediction id: the first received wins; a later, different label for the same id is a
  *conflict* — counted by (first source, later source), a few kept as examples — and a later equal one
  a duplicate. Each source keeps its own first label of every id, so every source can be judged on
  what it said (:mod:`driftloop.monitoring.decay`);
- label files keep their documented contract: a later row for the same record id corrects an earlier
  one;
- a prediction's label is its prediction id's (feedback) before its record id's (label files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from driftloop.capture.parquet import FEEDBACK_SCHEMA
from driftloop.data.ingest import list_partitions
from driftloop.data.ingest import read_labels as read_label_files
from driftloop.errors import UsageError
from driftloop.monitoring.window import as_utc, partition_keys
from driftloop.storage import store_for

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy.typing as npt

    from driftloop.core.labels import LabelSpec
    from driftloop.settings import Settings
    from driftloop.storage import ObjectStore

__all__ = ["FILE_RANK", "LabelBook", "read_label_book", "read_labels"]

# A label's rank orders the labels of one prediction: the lowest wins. Feedback ranks by the time it
# was received (microseconds since the epoch); label files come after any feedback.
FILE_RANK = 2.0**62
_EXAMPLES = 10  # conflicts kept as examples for the report
_TS_TYPE = pa.timestamp("us", tz="UTC")


@dataclass
class LabelBook:
    """Every label known for a window, by source: ``sources[source][key] = (rank, label)``.

    ``invalid`` counts per source the labels outside the model's label set (left out); ``conflicts``
    counts later, different labels of an already labelled prediction id by (first source, later
    source), with up to ten ``examples``; ``duplicates`` counts later, equal ones.
    """

    sources: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    invalid: dict[str, int] = field(default_factory=dict)
    conflicts: dict[tuple[str, str], int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    disputed: set[str] = field(default_factory=set)  # prediction ids labelled again, differently
    # The first feedback label of each prediction id and who sent it: what later labels are held against.
    _first: dict[str, tuple[float, str]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(
        cls, labels: Mapping[str, float], spec: LabelSpec | None = None, source: str = "labels"
    ) -> LabelBook:
        """One source holding ``labels`` (keys: prediction ids or record ids), those in ``spec``'s set."""
        book = cls()
        book.add_files(list(labels), list(labels.values()), source=source, spec=spec)
        return book

    def add_feedback(
        self,
        ids: Sequence[str],
        received: Sequence[int],
        values: Sequence[float | None],
        sources: Sequence[str],
        spec: LabelSpec | None,
    ) -> None:
        """Feedback labels in the order received (``received``: microseconds since the epoch)."""
        numbers = np.array(values, dtype=np.float64)  # None (null) → NaN: not a label
        valid = _valid(numbers, spec).tolist()
        for pid, ts, value, source, ok in zip(ids, received, numbers.tolist(), sources, valid, strict=True):
            if not ok:
                self.invalid[source] = self.invalid.get(source, 0) + 1
                continue
            earlier = self._first.get(pid)
            if earlier is None:
                self._first[pid] = (value, source)
            elif earlier[0] == value:
                self.duplicates += 1
            else:
                self._conflict(pid, earlier, value, source, ts)
            self.sources.setdefault(source, {}).setdefault(pid, (float(ts), value))

    def _conflict(self, pid: str, earlier: tuple[float, str], value: float, source: str, ts: int) -> None:
        pair = (earlier[1], source)
        self.conflicts[pair] = self.conflicts.get(pair, 0) + 1
        self.disputed.add(pid)
        if len(self.examples) < _EXAMPLES:
            example = {"prediction_id": pid, "first_source": earlier[1], "first_label": earlier[0]}
            example |= {"later_source": source, "later_label": value, "received": _iso(ts)}
            self.examples.append(example)

    def add_files(
        self,
        keys: Sequence[str | None],
        values: Sequence[float | None],
        *,
        source: str,
        spec: LabelSpec | None,
    ) -> None:
        """Labels by key where a later one corrects an earlier one (label files), ranked after feedback."""
        own = self.sources.setdefault(source, {})
        numbers = np.array(values, dtype=np.float64)
        valid = _valid(numbers, spec).tolist()
        for key, value, ok in zip(keys, numbers.tolist(), valid, strict=True):
            if key is None:
                continue
            if not ok:
                self.invalid[source] = self.invalid.get(source, 0) + 1
                continue
            own[key] = (FILE_RANK, value)

    def merged(self) -> dict[str, float]:
        """The winning label of every key: the lowest rank (the first feedback, else the label file)."""
        best: dict[str, tuple[float, float]] = {}
        for labels in self.sources.values():
            for key, (rank, value) in labels.items():
                if key not in best or rank < best[key][0]:
                    best[key] = (rank, value)
        return {key: value for key, (_, value) in best.items()}

    @property
    def conflict_count(self) -> int:
        return sum(self.conflicts.values())

    def audit(self) -> dict[str, Any]:
        """Counts for the report: labels per source, invalid labels, conflicts, duplicates."""
        return {
            "labels_by_source": {source: len(labels) for source, labels in sorted(self.sources.items())},
            "invalid": dict(sorted(self.invalid.items())),
            "conflicts": self.conflict_count,
            "conflicts_by_source": [
                {"first": first, "later": later, "count": count}
                for (first, later), count in sorted(self.conflicts.items(), key=lambda kv: -kv[1])
            ],
            "conflict_examples": list(self.examples),
            "duplicates": self.duplicates,
        }


def _valid(values: npt.NDArray[np.float64], spec: LabelSpec | None) -> npt.NDArray[np.bool_]:
    if spec is None:
        return np.asarray(np.isfinite(values))
    return spec.valid(values)


def _iso(micros: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)).isoformat()


def read_label_book(
    store: ObjectStore,
    start: datetime,
    end: datetime,
    *,
    as_of: datetime | None = None,
    dataset: str | None = None,
    id_column: str | None = "record_id",
    target: str = "machine_failure",
    spec: LabelSpec | None = None,
) -> LabelBook:
    """Ground truth known by ``as_of`` (default: now) for predictions made in ``[start, end)``, by source.

    Feedback labels received in ``[start, as_of]`` (``captures/feedback/``); with ``dataset`` and
    ``id_column``, also the delayed label files under ``labels/<dataset>/`` by that id column (source
    ``files:<dataset>``). ``spec`` is the model's label set (None: any finite number). Labels arrive
    after their predictions, so ``start`` and ``as_of`` bound what is read; labels of later predictions
    are returned too (they do not join). All of it is kept in memory. Raises :class:`UsageError` when
    ``end`` is not after ``start``, and :class:`DataError` naming the file and the column when a label
    file lacks ``id_column``, ``target`` or ``available_at``.
    """
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise UsageError(f"empty label window: {start.isoformat()} is not before {end.isoformat()}")
    as_of = as_utc(as_of) if as_of is not None else datetime.now(UTC)
    book = LabelBook()
    if dataset is not None and id_column is not None:
        parts = list_partitions(store, f"labels/{dataset}", start.date(), as_of.date())
        table, _ = read_label_files(store, parts, id_column, target, as_of)
        texts = table.column(target).to_pylist()
        keys = table.column(id_column).to_pylist()
        known = [(k, _number(t)) for k, t in zip(keys, texts, strict=True) if t is not None and t.strip()]
        book.add_files([k for k, _ in known], [v for _, v in known], source=f"files:{dataset}", spec=spec)
    feedback = _feedback(store, start, as_of)
    if feedback is not None:
        ids, sources = feedback.column("prediction_id").to_pylist(), feedback.column("source").to_pylist()
        received = feedback.column("ts").cast(pa.int64()).to_pylist()
        book.add_feedback(ids, received, feedback.column("label").to_pylist(), sources, spec)
    return book


def read_labels(
    store: ObjectStore,
    start: datetime,
    end: datetime,
    *,
    as_of: datetime | None = None,
    dataset: str | None = None,
    id_column: str | None = "record_id",
    target: str = "machine_failure",
    spec: LabelSpec | None = None,
) -> dict[str, float]:
    """The winning label of every key of :func:`read_label_book` (same arguments): by prediction id the
    first feedback label received, by record id the latest label-file row."""
    book = read_label_book(
        store, start, end, as_of=as_of, dataset=dataset, id_column=id_column, target=target, spec=spec
    )
    return book.merged()


def labels_known_since(settings: Settings, since: date, as_of: datetime) -> int:
    """How many labels (label files and feedback, one per key) of the days from ``since`` on are known
    by ``as_of``: whether the data of a new regime has arrived (the loop's retraining start)."""
    start = datetime.combine(since, datetime.min.time(), UTC)
    if as_of <= start:
        return 0
    data = settings.data
    id_column = next((c.name for c in data.columns if c.role == "id"), None)
    labels = read_labels(
        store_for(settings),
        start,
        as_of,
        as_of=as_of,
        dataset=data.dataset,
        id_column=id_column,
        target=data.target,
    )
    return len(labels)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _feedback(store: ObjectStore, start: datetime, as_of: datetime) -> pa.Table | None:
    """Feedback records received in ``[start, as_of]``, oldest first (None: none)."""
    if as_of < start:
        return None
    tables = []
    for key in partition_keys(store, "captures/feedback", start, as_of + timedelta(microseconds=1)):
        table = pq.read_table(pa.BufferReader(store.read_bytes(key)), schema=FEEDBACK_SCHEMA)
        ts = table.column("ts")
        mask = pc.and_(
            pc.greater_equal(ts, pa.scalar(start, _TS_TYPE)), pc.less_equal(ts, pa.scalar(as_of, _TS_TYPE))
        )
        tables.append(table.filter(pc.fill_null(mask, False)))
    if not tables:
        return None
    # Stable: labels received in the same microsecond keep their order within their object.
    return pa.concat_tables(tables).sort_by([("ts", "ascending")])
