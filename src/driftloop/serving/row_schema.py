"""The JSON Schema of one row the served model accepts, from its fitted transform (decision 0065).

The same rules :mod:`driftloop.serving.inputs` enforces, as far as a schema can state them: every input
is required (``null`` allowed where training allowed nulls); numbers are JSON numbers (``integer`` for
whole-number columns) within the bounds training validated; a closed category lists its values; an
open category takes any text (or number: its canonical text); booleans are ``true``/``false``; columns
training dropped (ids, timestamps, the target) are accepted and ignored; any other field is refused.

Only what the configuration declares is published (names, types, bounds, closed value lists), never
what training observed (an open category's levels, means, fills): the document is open with auth on
(docs/auth.md), and the shape of the API is not data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from driftloop.core.transform import NumericInput

if TYPE_CHECKING:
    from driftloop.core.transform import CategoricalInput, Transform

__all__ = ["row_schema"]


def row_schema(transform: Transform, served: str) -> dict[str, Any]:
    """One row of ``transform``'s raw inputs as a JSON Schema object; ``served`` (``NAME/VERSION``)
    is named in its description."""
    properties: dict[str, Any] = {}
    for spec in transform.inputs:
        field = _number(spec) if isinstance(spec, NumericInput) else _category(spec)
        if spec.nullable:
            field = {"anyOf": [field, {"type": "null"}]}
        properties[spec.name] = field
    for dropped in transform.dropped:
        properties[dropped.name] = {"description": f"Ignored ({dropped.role}): accepted, not used"}
    return {
        "type": "object",
        "title": "Row",
        "description": f"One row for {served}: its raw input fields. An unknown field, a missing or "
        "malformed value is a 422 naming it.",
        "properties": properties,
        "required": transform.input_names,
        "additionalProperties": False,
    }


def _number(spec: NumericInput) -> dict[str, Any]:
    field: dict[str, Any] = {"type": "integer" if spec.integer else "number"}
    if spec.min is not None:
        field["minimum"] = spec.min
    if spec.max is not None:
        field["maximum"] = spec.max
    return field


def _category(spec: CategoricalInput) -> dict[str, Any]:
    if spec.boolean:
        return {"type": "boolean"}
    if not spec.open:
        return {"type": "string", "enum": list(spec.levels)}
    return {
        "type": ["string", "number"],
        "description": "Any level; one training never saw is scored as other",
    }
