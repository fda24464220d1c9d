"""Capture records: one typed record per kind, and the translation from what callers hand in.

A caller (the service, a test, a script) hands :class:`~driftloop.capture.CaptureStore` mappings; they are
translated here, at the boundary, into capture's own records, which are what the WAL holds and what
becomes Parquet (:mod:`driftloop.capture.parquet`). Untrusted mappings are checked field by field
(:func:`normalize`: a ``ValueError`` names the field); mappings driftloop builds itself skip the checks
(:func:`from_trusted`). The field names are the WAL's JSON keys, so a segment written by an earlier
version decodes the same.

Records are never changed once made, but not ``frozen``: a frozen dataclass's ``__init__`` sets each
field through ``object.__setattr__``, ~5 µs per micro-batch on the request path here.
"""

from __future__ import annotations

import functools
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "CaptureRecord",
    "Feedback",
    "Prediction",
    "Rejection",
    "RequestBatch",
    "from_stored",
    "from_trusted",
    "normalize",
]


@dataclass(slots=True)
class Prediction:
    """One scored row: what was asked, what was answered, by which version."""

    prediction_id: str
    ts: str  # UTC ISO-8601 with microseconds
    model_name: str
    model_version: int
    inputs: dict[str, Any]
    outputs: Any  # what the service answered for the row: an object, a list or a number
    latency_ms: float
    fallback: bool
    endpoint: str
    score: float | None = None
    shadow_version: int | None = None  # the staging version scored beside production, if any
    shadow_score: float | None = None
    kind: Literal["prediction"] = "prediction"


@dataclass(slots=True)
class Feedback:
    """A label for an earlier prediction, and who sent it."""

    prediction_id: str
    ts: str
    label: float
    source: str
    kind: Literal["feedback"] = "feedback"


@dataclass(slots=True)
class Rejection:
    """A request refused with 422: the monitor counts its rows as schema violations."""

    ts: str
    model_name: str
    endpoint: str
    rows: int
    errors: list[Any]  # [{loc, type, msg}]
    kind: Literal["rejection"] = "rejection"


@dataclass(slots=True)
class RequestBatch:
    """The requests one model call scored (a micro-batch): each body as received, what was answered.

    Per request: ``rows`` (how many it scored), ``latency_ms``, ``endpoints``, ``bodies`` and, only when
    one body is not JSON, ``content_types``; per scored row: ``ids``, ``scores`` and ``shadow_scores``.
    It becomes one :class:`Prediction` per scored row at compaction (decision 0028).
    """

    ts: str
    model_name: str
    model_version: int
    fallback: bool
    threshold: float | None
    ids: list[str]
    scores: list[float]
    rows: list[int]
    latency_ms: list[float]
    endpoints: list[str]
    bodies: list[bytes]
    content_types: list[str] | None = None
    shadow_version: int | None = None
    shadow_scores: list[float] | None = field(default=None)
    kind: Literal["request_batch"] = "request_batch"


CaptureRecord: TypeAlias = Prediction | Feedback | Rejection | RequestBatch
_TYPES: dict[str, type[CaptureRecord]] = {
    "prediction": Prediction,
    "feedback": Feedback,
    "rejection": Rejection,
    "request_batch": RequestBatch,
}


def from_stored(values: Mapping[str, Any]) -> CaptureRecord:
    """A record as the WAL stores it (its JSON object) → the record; ``ValueError`` if it is not one."""
    kind = values.get("kind")
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"not a capture record kind: {kind!r}")
    try:
        return cls(**values)
    except TypeError as exc:  # a missing or unknown field
        raise ValueError(f"a {kind} record that does not fit its type: {exc}") from None


def from_trusted(record: Mapping[str, Any] | CaptureRecord) -> CaptureRecord:
    """A record driftloop built itself (``ts`` already UTC ISO-8601 with microseconds): no field checks."""
    if isinstance(record, Mapping):
        return from_stored(record)
    return record


# The checks run per captured row on the request path: exact-type fast paths before the ABC checks.
def _text(value: Any) -> bool:
    return type(value) is str and value != ""


def _real(value: Any) -> bool:
    kind = type(value)
    return kind is float or kind is int or (isinstance(value, numbers.Real) and kind is not bool)


def _count(value: Any) -> bool:
    if type(value) is not int and (not isinstance(value, numbers.Integral) or isinstance(value, bool)):
        return False
    return 0 <= int(value) < 2**63


def _object(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # as registry.model_name: safe in a key
_Check: TypeAlias = "tuple[Callable[[Any], bool], str]"
_NON_EMPTY: _Check = (_text, "a non-empty string")
_COUNT: _Check = (_count, "a non-negative integer")

# Per kind a caller may hand in: field → (test, what it must be). orjson stores numpy scalars as numbers.
_FIELDS: dict[str, dict[str, _Check]] = {
    "prediction": {
        "prediction_id": _NON_EMPTY,
        "model_name": (lambda v: isinstance(v, str) and bool(_MODEL_NAME.match(v)), "a registry model name"),
        "model_version": _COUNT,
        "inputs": (_object, "an object"),
        "outputs": (lambda v: _object(v) or isinstance(v, list) or _real(v), "an object, a list or a number"),
        "score": (lambda v: v is None or _real(v), "a number or null"),
        "latency_ms": (_real, "a number"),
        "fallback": (lambda v: type(v) is bool, "true or false"),
        "endpoint": _NON_EMPTY,
        "shadow_version": (lambda v: v is None or _count(v), "a non-negative integer or null"),
        "shadow_score": (lambda v: v is None or _real(v), "a number or null"),
    },
    "feedback": {
        "prediction_id": _NON_EMPTY,
        "label": (_real, "a number"),
        "source": _NON_EMPTY,
    },
    "rejection": {
        "model_name": _NON_EMPTY,
        "endpoint": _NON_EMPTY,
        "rows": _COUNT,
        "errors": (lambda v: isinstance(v, list), "a list"),
    },
}
_OPTIONAL = frozenset({"score", "shadow_version", "shadow_score"})  # may be left out: null


def normalize(record: Mapping[str, Any]) -> CaptureRecord:
    """An untrusted mapping → its record, ``ts`` made UTC ISO-8601; ``ValueError`` naming a bad field."""
    kind = record.get("kind")
    if kind not in _FIELDS:
        raise ValueError(f"capture record: field 'kind' must be one of {sorted(_FIELDS)}, got {kind!r}")
    fields = _FIELDS[kind]
    unknown = sorted(set(record) - set(fields) - {"kind", "ts"})
    if unknown:
        raise ValueError(f"capture record: unknown field {unknown[0]!r} for kind {kind!r}")
    values: dict[str, Any] = {"ts": _utc_iso(record.get("ts"))}
    for name, (test, expected) in fields.items():
        if name not in record and name not in _OPTIONAL:
            raise ValueError(f"capture record: field {name!r} is missing")
        value = values[name] = record.get(name)
        if not test(value):
            raise _bad(name, expected, value)
    if kind == "prediction" and not isinstance(values["inputs"], dict):
        values["inputs"] = dict(values["inputs"])
    return _TYPES[kind](**values)


def _bad(name: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"capture record: field {name!r} must be {expected}, got {value!r:.80}")


def _utc_iso(value: Any) -> str:
    """An ISO-8601 string or a datetime as a UTC ISO-8601 string; naive values are taken as UTC."""
    if type(value) is str:
        return _utc_iso_text(value)  # the rows of one request share their timestamp: cached
    return _utc_iso_any(value)


@functools.lru_cache(maxsize=64)
def _utc_iso_text(value: str) -> str:
    return _utc_iso_any(value)


def _utc_iso_any(value: Any) -> str:
    try:
        stamp = datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        stamp = None
    if not isinstance(stamp, datetime):
        raise _bad("ts", "an ISO-8601 timestamp or a datetime", value)
    return stamp.replace(tzinfo=stamp.tzinfo or UTC).astimezone(UTC).isoformat(timespec="microseconds")
