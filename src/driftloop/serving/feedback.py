"""``POST /v1/feedback``: ground truth for earlier predictions, checked before anything is recorded.

A request is all or nothing: every label is checked, and one bad label refuses the request with a 422
that lists the problems (the first :data:`MAX_LISTED`, and how many there were), so a client never has
to find out which half of its batch was kept. A label is accepted when

- its ``prediction_id`` is an id this service issued (``ID_LENGTH`` hex digits whose tag checks out
  under the service's keys: :mod:`driftloop.serving.stamps`), once per request;
- its ``label`` belongs to the served model's label set (:class:`~driftloop.core.labels.LabelSpec`);
- it has no other field (a misspelt ``label`` is never recorded as something else).

A second label for an id already labelled in an *earlier* request is not refused here: replicas and
restarts make any memory of earlier labels partial, so it is recorded and the monitor, which reads
all of them, reports it as a conflict and keeps the first (decision 0042).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from driftloop.errors import one_line
from driftloop.serving.inputs import FieldError
from driftloop.serving.stamps import ID_LENGTH

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from driftloop.core.labels import LabelSpec
    from driftloop.serving.stamps import PredictionIds

__all__ = ["MAX_LISTED", "FeedbackCounters", "InvalidFeedback", "check_feedback", "feedback_records"]

MAX_LISTED = 20  # problems listed in a 422; the message says how many there were in all
_FIELDS = frozenset({"prediction_id", "label"})
_SHAPE = 'the body must be {"labels": [{"prediction_id": "...", "label": 1}, ...]}'


class InvalidFeedback(Exception):  # noqa: N818 — an outcome of validation, not a program error
    """The request is refused: ``status``, a one-line ``message`` and the listed problems (``errors``,
    already in the 422 body's shape); ``refused`` counts refused labels by reason, for the metrics."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        refused: dict[str, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors
        self.refused = refused or {}


@dataclass(frozen=True)
class Label:
    prediction_id: str
    label: float


def check_feedback(body: Any, *, ids: PredictionIds, spec: LabelSpec | None, max_rows: int) -> list[Label]:
    """The labels of a decoded ``{"labels": [...]}`` body, every one checked (see the module docstring).

    ``spec`` is the served model's label set (None: no model loaded). Raises :class:`InvalidFeedback`:
    422 for a body of another shape or any bad label, 413 for more than ``max_rows`` labels (before any
    is checked), 503 when no model is loaded (its label set is unknown: retry once one is).
    """
    items = body.get("labels") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise InvalidFeedback(422, _SHAPE, refused={"malformed": 1})
    if len(items) > max_rows:
        message = (
            f"{len(items):,} labels in one request; the limit is {max_rows:,} (serving.max_feedback_rows)"
        )
        raise InvalidFeedback(413, message, refused={"too_many_rows": len(items)})
    if spec is None:
        raise InvalidFeedback(503, "no model loaded yet, so its labels cannot be checked (see GET /v1/model)")
    labels: list[Label] = []
    errors: list[FieldError] = []
    first_at: dict[str, int] = {}
    for i, item in enumerate(items):
        problems, value = _check(i, item, ids, spec, first_at)
        if problems or value is None:
            errors += problems
        else:
            labels.append(Label(item["prediction_id"], value))
    if errors:
        raise _refused(errors, len(items))
    return labels


def _refused(errors: list[FieldError], labels: int) -> InvalidFeedback:
    refused: dict[str, int] = {}
    for error in errors:
        refused[error.kind] = refused.get(error.kind, 0) + 1
    message = (
        f"invalid feedback: {len({e.row for e in errors}):,} of {labels:,} labels refused, none recorded"
    )
    if len(errors) > MAX_LISTED:
        message += f"; the first {MAX_LISTED} of {len(errors):,} problems are listed"
    return InvalidFeedback(422, message, [e.to_json("labels") for e in errors[:MAX_LISTED]], refused)


def _check(
    i: int, item: Any, ids: PredictionIds, spec: LabelSpec, first_at: dict[str, int]
) -> tuple[list[FieldError], float | None]:
    """The problems of label ``i`` (none: it is accepted) and its value as recorded. ``first_at`` maps
    the ids seen so far in the request to their position."""
    if not isinstance(item, dict):
        shape = 'each label must be an object {"prediction_id": ..., "label": ...}'
        return [FieldError(i, "", "type", shape)], None
    problems = [FieldError(i, k, "unknown", f"unknown field {_shown(k)}") for k in item if k not in _FIELDS]
    id_problem = _id_problem(item.get("prediction_id"), ids, first_at)
    if id_problem is None:
        first_at[item["prediction_id"]] = i
    else:
        problems.append(FieldError(i, "prediction_id", *id_problem))
    value = spec.coerce(item["label"]) if "label" in item else None
    if "label" not in item:
        problems.append(FieldError(i, "label", "missing", "label is required"))
    elif value is None:
        kind = "category" if spec.task == "classification" else "range"
        problems.append(
            FieldError(i, "label", kind, f"label must be {spec.expected}, got {_shown(item['label'])}")
        )
    return problems, value


def _id_problem(pid: Any, ids: PredictionIds, first_at: dict[str, int]) -> tuple[str, str] | None:
    """What is wrong with a prediction id (its error kind and message), None when it is accepted."""
    if pid is None:
        return "missing", "prediction_id is required"
    if not isinstance(pid, str):
        return "type", f"prediction_id must be a string, got {type(pid).__name__}"
    if not ids.keys.well_formed(pid):
        expected = f"{ID_LENGTH} lowercase hex digits as POST /v1/predict returns them"
        return "format", f"prediction_id must be {expected}, got {_shown(pid)}"
    if not ids.known(pid):
        return (
            "unknown_id",
            f"unknown prediction id {pid!r}: not issued by this service (or under a retired key)",
        )
    if pid in first_at:
        where = f"first at labels[{first_at[pid]}]"
        return (
            "duplicate",
            f"prediction id {pid!r} is labelled twice in this request ({where}): one label per id",
        )
    return None


def _shown(value: Any) -> str:
    """``value`` for a message: short values as written, long ones by their size, never a megabyte."""
    text = repr(value)
    if len(text) <= 60:
        return one_line(text)
    if isinstance(value, str):
        return f"a string of {len(value):,} characters"
    return f"a {type(value).__name__}"


def feedback_records(labels: list[Label], *, source: str, ts: str) -> list[dict[str, Any]]:
    """The capture records of accepted ``labels``, each carrying its ``source`` (who sent it)."""
    return [
        {"kind": "feedback", "prediction_id": x.prediction_id, "ts": ts, "label": x.label, "source": source}
        for x in labels
    ]


class FeedbackCounters:
    """``driftloop_feedback_labels_total`` (recorded) and ``driftloop_feedback_refused_total{reason}``
    (refused labels by reason: ``unknown_id``, ``format``, ``duplicate``, ``category``, ``range``,
    ``too_many_rows``…)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter("driftloop_feedback_labels", "Feedback labels recorded", registry=registry)
        self.refused = Counter(
            "driftloop_feedback_refused", "Feedback labels refused, by reason", ["reason"], registry=registry
        )

    def refuse(self, refused: dict[str, int]) -> None:
        for reason, count in refused.items():
            self.refused.labels(reason).inc(count)
