"""Scoring request bodies → the rows they ask to score, for each endpoint of the service.

The service reads a request's rows with these functions, and so does capture when it turns a captured
request body back into its rows (``docs/decisions/0028-capture-request-bodies.md``): one definition, so
what is captured is exactly what was scored.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["RequestFormatError", "instances_rows", "mlflow_rows", "prediction_items", "request_rows"]


class RequestFormatError(ValueError):
    """The body is not JSON or not in the endpoint's format (the service answers 422 with the message)."""


def parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestFormatError(f"the body is not valid JSON: {exc}") from None


def instances_rows(body: Any) -> list[Any]:
    """``POST /v1/predict``: ``{"instances": [{field: value, …}, …]}``."""
    rows = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise RequestFormatError('the body must be {"instances": [{field: value, ...}, ...]}')
    return rows


def mlflow_rows(body: Any) -> list[Any]:
    """``POST /invocations``, MLflow's scoring protocol: dataframe_split, dataframe_records, instances,
    inputs (a list of objects or an object of equal-length lists)."""
    if not isinstance(body, dict) or len(body) != 1:
        raise RequestFormatError("use exactly one of dataframe_split, dataframe_records, instances, inputs")
    ((kind, value),) = body.items()
    if kind == "dataframe_split":
        if (
            not isinstance(value, dict)
            or not isinstance(value.get("columns"), list)
            or not isinstance(value.get("data"), list)
        ):
            raise RequestFormatError("dataframe_split needs 'columns' (list) and 'data' (list of rows)")
        columns = value["columns"]
        rows = []
        for i, row in enumerate(value["data"]):
            if not isinstance(row, list) or len(row) != len(columns):
                raise RequestFormatError(f"dataframe_split row {i} does not have {len(columns)} values")
            rows.append(dict(zip(columns, row, strict=True)))
        return rows
    if kind in ("dataframe_records", "instances"):
        if not isinstance(value, list):
            raise RequestFormatError(f"{kind} must be a list of objects")
        return value
    if kind == "inputs":
        if isinstance(value, list):
            return value
        if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
            lengths = {len(v) for v in value.values()}
            if len(lengths) > 1:
                raise RequestFormatError("inputs columns have different lengths")
            n = lengths.pop() if lengths else 0
            return [{k: v[i] for k, v in value.items()} for i in range(n)]
        raise RequestFormatError("inputs must be a list of objects or an object of equal-length lists")
    raise RequestFormatError(
        f"unknown input format {kind!r}: use dataframe_split, dataframe_records, instances or inputs"
    )


_FORMATS = {"/v1/predict": instances_rows, "/invocations": mlflow_rows}


def request_rows(endpoint: str, raw: bytes) -> list[Any]:
    """The rows a request body to ``endpoint`` asks to score; :class:`RequestFormatError` if it has none."""
    rows_of = _FORMATS.get(endpoint)
    if rows_of is None:
        raise RequestFormatError(f"no request format is known for the endpoint {endpoint!r}")
    return rows_of(parse(raw))


def prediction_items(
    ids: list[str], scores: list[float], fallback: bool, threshold: float | None
) -> list[dict[str, Any]]:
    """What the service answers for each scored row (and capture records as its ``outputs``): id, score,
    whether the fallback model gave it, and the label when the model has a decision threshold."""
    if threshold is None:
        return [
            {"id": pid, "score": score, "fallback": fallback} for pid, score in zip(ids, scores, strict=True)
        ]
    return [
        {"id": pid, "score": score, "fallback": fallback, "label": int(score >= threshold)}
        for pid, score in zip(ids, scores, strict=True)
    ]
