"""Training data from a feature version (pipeline, ``train --features``) or any CSV (``train --data``).

Both give the same :class:`~driftloop.pipeline.modeling.TrainingData`: a time-ordered table of raw
inputs, model-ready ``f_…`` features and the target, plus the fitted transform and lineage tags. A CSV
is validated, transformed and published to the feature store first, and training reads it back from
there, so a model trained on a laptop is as reproducible as a pipeline's (``driftloop reproduce``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from driftloop.core.transform import FALSE_TEXTS, TRUE_TEXTS, DroppedColumn, Transform, fit
from driftloop.data.ingest import MalformedLine, read_text_csv
from driftloop.data.validate import REASONS_COLUMN, ValidationResult, validate
from driftloop.errors import DataError, UsageError
from driftloop.features import feature_store_for
from driftloop.pipeline.catalog import to_csv_bytes
from driftloop.pipeline.modeling import (
    TAG_FEATURE_VERSION,
    TAG_PIPELINE_RUN,
    TAG_WINDOW,
    TrainingData,
    window_tag,
)
from driftloop.settings import ColumnSpec
from driftloop.storage import store_for

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from driftloop.settings import Settings

__all__ = ["CsvReport", "from_csv", "from_feature_version", "infer_columns"]

_MAX_CATEGORIES = 100
_NUMBER = r"^\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
_DATE = (
    r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}"  # date
    r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?"  # time, seconds and fraction optional
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?\s*$"  # zone
)
_ID_NAME = re.compile(r"(^|[_\s-])id$|^id[_\s-]|[a-z]Id$|ID$", re.IGNORECASE)


def from_feature_version(settings: Settings, version: str, workdir: Path) -> TrainingData:
    """Pull ``version`` through DVC (seed 17: feature store fetch) and read it as training data."""
    store = feature_store_for(settings)
    full = store.resolve(version)
    info = store.get(full)
    path = store.pull(full, workdir / f"features-{full}.csv")
    transform = Transform.from_json(store.transform_json(full))
    target = str(info.lineage.get("target", transform.target or settings.data.target))
    dtypes = {name: "float32" for name in transform.feature_names}
    dtypes |= {c.name: "string" for c in transform.categorical}
    table = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=[""])
    needed = [*transform.feature_names, *transform.input_names, target]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise DataError(f"feature version {full[:12]} lacks columns {missing}")
    lineage = info.lineage
    tags = {TAG_FEATURE_VERSION: full, TAG_WINDOW: window_tag(lineage.get("window", {}))}
    if lineage.get("pipeline_run"):
        tags[TAG_PIPELINE_RUN] = str(lineage["pipeline_run"])
    if lineage.get("source"):
        tags["driftloop.source"] = str(lineage["source"])
    return TrainingData(
        table=table,
        transform=transform,
        target=target,
        dataset_name=f"{lineage.get('dataset', settings.data.dataset)}@{full[:12]}",
        source_uri=f"{settings.storage_root.rstrip('/')}/features/versions/{full}/features.csv.dvc",
        tags=tags,
    )


def infer_columns(
    table: pa.Table,
    target: str,
    *,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    timestamp: str | None = None,
    id_column: str | None = None,
) -> tuple[tuple[ColumnSpec, ...], tuple[DroppedColumn, ...]]:
    """A schema for an arbitrary CSV: declared columns as declared, the rest inferred from the values,
    and the columns that are not model inputs, each with the reason.

    A column is numeric when every non-empty value parses as a number (unless it is named like an id
    and every value is a distinct whole number: a row id); boolean when every value is one of
    true/false, yes/no, t/f, y/n (any case); a date when every value is an ISO 8601 date or time
    (dropped: give it as ``--timestamp`` to order the rows by it); categorical when it has at most 100
    distinct values; otherwise free text (dropped). Inferred input columns may hold nulls.
    """
    names = [n for n in table.column_names if n != target]
    for declared in [*categorical, *numeric, *(c for c in (timestamp, id_column) if c)]:
        if declared not in names:
            raise UsageError(f"column {declared!r} is not in the data (columns: {', '.join(names)})")
    specs: list[ColumnSpec] = []
    dropped: list[DroppedColumn] = [DroppedColumn(target, "target", "the target")]
    for name in names:
        column = pc.utf8_trim_whitespace(table.column(name).cast(pa.string()))
        empty = pc.fill_null(pc.equal(column, ""), True)
        present = pc.filter(column, pc.invert(empty))
        if name == id_column:
            specs.append(ColumnSpec(name=name, type="string", role="id"))
        elif name == timestamp:
            specs.append(ColumnSpec(name=name, type="timestamp", role="timestamp"))
        elif name in numeric:
            specs.append(ColumnSpec(name=name, type="float", nullable=True))
        elif name in categorical:
            specs.append(ColumnSpec(name=name, type="category", nullable=True))
        else:
            kind, reason = _infer(name, present)
            if kind in ("float", "bool", "category"):
                specs.append(ColumnSpec(name=name, type=kind, nullable=True))
            else:
                dropped.append(DroppedColumn(name, kind, reason))
    if not any(s.role == "feature" for s in specs):
        raise DataError(
            "no usable input columns: every column is an id, a date or free text "
            "(declare inputs with --categorical or --numeric)"
        )
    return tuple(specs), tuple(dropped)


def _infer(name: str, present: pa.Array) -> tuple[str, str]:  # noqa: PLR0911 — one return per rule
    """The kind of an undeclared column from its non-empty values, and why when it is not an input."""
    if len(present) == 0:
        return "empty", "no values"
    if _all(present, _NUMBER):
        numbers = pc.cast(present, pa.float64())
        whole = pc.all(pc.equal(pc.floor(numbers), numbers)).as_py()
        if _ID_NAME.search(name) and whole and pc.count_distinct(present).as_py() == len(present):
            return "id", "looks like a row id (every value a distinct whole number)"
        return "float", ""
    lower = pc.utf8_lower(present)
    if pc.all(pc.is_in(lower, value_set=pa.array(sorted(TRUE_TEXTS | FALSE_TEXTS)))).as_py():
        return "bool", ""
    if _all(present, _DATE):
        return "date", "a date or time (give it as --timestamp to order the rows by it)"
    distinct = pc.count_distinct(present).as_py()
    if distinct <= _MAX_CATEGORIES:
        return "category", ""
    return "text", f"free text ({distinct} distinct values; --categorical makes it an input)"


def _all(values: pa.Array, pattern: str) -> bool:
    return bool(pc.all(pc.match_substring_regex(values, pattern)).as_py())


@dataclass(frozen=True)
class CsvReport:
    """What ``train --data`` made of a CSV: its inputs, what it dropped, which rows it could not use."""

    rows_read: int
    inputs: tuple[tuple[str, str], ...]  # (column, kind)
    dropped: tuple[DroppedColumn, ...]
    rejected: int
    reasons: dict[str, int]
    unlabelled: int
    trained_rows: int
    feature_version: str
    quarantine: str | None = None  # the folder of rejected.csv and malformed.csv
    malformed: int = 0  # lines that were not CSV rows
    lineage: dict[str, Any] = field(default_factory=dict)


def from_csv(
    settings: Settings,
    path: Path,
    target: str,
    workdir: Path,
    *,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    timestamp: str | None = None,
    id_column: str | None = None,
) -> tuple[TrainingData, CsvReport]:
    """Any tabular CSV as training data (seed 1: local development), published as a feature version.

    The CSV is validated (rejected rows are quarantined with their reasons), rows without a target are
    skipped (counted), rows are taken in time order (sorted by ``timestamp`` when given, else file
    order), the transform is fitted on the rows before the hold-out, and the result is published to the
    feature store with the CSV's sha256 in its lineage. Training reads that version back.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if not raw.strip():
        raise DataError(f"{path} is empty")
    table, malformed = _read_text_csv(raw, path)
    if target not in table.column_names:
        raise UsageError(
            f"target column {target!r} is not in {path.name} (columns: {', '.join(table.column_names)})"
        )
    if table.num_rows == 0:
        if malformed:
            first = malformed[0]
            raise DataError(
                f"{path} has no readable rows: {len(malformed)} line(s) are not CSV rows "
                f"(line {first.line}: {first.reason})"
            )
        raise DataError(f"{path} has a header but no rows")
    specs, dropped = infer_columns(
        table, target, categorical=categorical, numeric=numeric, timestamp=timestamp, id_column=id_column
    )
    task = settings.training.task
    labels, classes = _labels(table.column(target).combine_chunks(), task)
    kind: Literal["binary", "numeric"] = "numeric" if task == "regression" else "binary"
    result = validate(table, specs, label=(target, labels), label_kind=kind)
    labelled = result.valid[target].notna()
    valid = result.valid[labelled].reset_index(drop=True)
    if timestamp:
        valid = valid.sort_values(timestamp, kind="stable").reset_index(drop=True)
    if valid.empty:
        raise DataError(f"no valid labelled rows in {path} ({len(result.rejected)} rejected)")
    fit_rows = max(1, int(len(valid) * (1 - settings.training.holdout_share)))
    transform = fit(valid.iloc[:fit_rows], specs, (), target=target, dropped=dropped)
    features = pd.DataFrame(transform.encode_frame(valid), columns=transform.feature_names)
    if task == "classification":
        valid[target] = valid[target].astype("int64")
    feature_table = pd.concat([valid[transform.input_names], features, valid[[target]]], axis=1)
    sha256 = hashlib.sha256(raw).hexdigest()
    quarantine = (
        _quarantine(settings, sha256, result, malformed) if len(result.rejected) or malformed else None
    )
    lineage = {
        "dataset": path.stem,
        "source": str(path.resolve()),
        "source_sha256": sha256,
        "target": target,
        "task": task,
        "classes": classes,
        "columns": [s.model_dump(mode="json") for s in specs],
        "validation": {
            "rows_in": result.rows_in,
            "rejected": len(result.rejected),
            "reasons": result.reasons,
            "unlabelled": int((~labelled).sum()),
            "malformed_lines": len(malformed),
            "quarantine": quarantine,
        },
    }
    csv_path = workdir / "features.csv"
    csv_path.write_bytes(to_csv_bytes(feature_table))
    store = feature_store_for(settings)
    version = store.publish(csv_path, transform_json=transform.to_json(), lineage=lineage)
    data = from_feature_version(settings, version.id, workdir)
    report = CsvReport(
        rows_read=result.rows_in,
        inputs=tuple((i.name, i.kind) for i in transform.inputs),
        dropped=transform.dropped,
        rejected=len(result.rejected),
        reasons=result.reasons,
        unlabelled=int((~labelled).sum()),
        trained_rows=len(valid),
        feature_version=version.id,
        quarantine=quarantine,
        malformed=len(malformed),
        lineage=lineage,
    )
    return data, report


# What pandas reads as missing: a CSV written by pandas, R or a spreadsheet marks nulls with these.
_NULL_TEXTS = pa.array(
    [
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    ]
)


def _read_text_csv(raw: bytes, path: Path) -> tuple[pa.Table, list[MalformedLine]]:
    """Every column as text (types are inferred per column, by :func:`infer_columns`), the common null
    markers as nulls, and the lines that are not CSV rows (not text, wrong number of fields): those are
    set aside with their line number and reason, as ingest does, instead of failing the file."""
    table, malformed, header = read_text_csv(raw, path.name)
    if not header:
        raise DataError(f"{path} is empty")
    columns = []
    for name in table.column_names:
        text = table.column(name)
        columns.append(pc.if_else(pc.is_in(pc.utf8_trim_whitespace(text), value_set=_NULL_TEXTS), None, text))
    return pa.table(columns, names=table.column_names), malformed


def _quarantine(
    settings: Settings, sha256: str, result: ValidationResult, malformed: list[MalformedLine]
) -> str:
    """Write the rejected rows (original text plus reasons) and the lines that were not rows (line
    number, escaped text, reason) under ``quarantine/csv-<sha256>/``; return that folder's URI."""
    store = store_for(settings)
    folder = f"quarantine/csv-{sha256[:16]}"
    if len(result.rejected):
        store.write_bytes(f"{folder}/rejected.csv", to_csv_bytes(result.rejected))
    if malformed:
        lines = pd.DataFrame(
            {
                "line": pd.array([m.line for m in malformed], dtype="Int64"),
                "text": [m.text for m in malformed],
                REASONS_COLUMN: [m.reason for m in malformed],
            }
        )
        store.write_bytes(f"{folder}/malformed.csv", to_csv_bytes(lines))
    return store.uri(folder)


def _labels(column: pa.Array, task: str) -> tuple[pa.Array, list[str] | None]:
    """Targets as text for validation, and the two classes in the order 0, 1 (None for regression).

    Classification accepts 0/1, or exactly two distinct values, mapped in sorted order (``No`` → 0,
    ``Yes`` → 1; ``False`` → 0, ``True`` → 1).
    """
    text = pc.utf8_trim_whitespace(column.cast(pa.string()))
    if task == "regression":
        return text, None
    classes = sorted(c for c in pc.unique(text).to_pylist() if c not in (None, ""))
    if set(classes) <= {"0", "1", "0.0", "1.0"}:
        return text, ["0", "1"]
    if len(classes) != 2:
        raise DataError(
            f"classification needs a target with two classes, found {len(classes)}: {classes[:5]}"
            " (use --task regression for a numeric target)"
        )
    mapping = pa.array(["0", "1"])
    index = pc.index_in(text, value_set=pa.array(classes))
    return pc.take(mapping, index), classes
