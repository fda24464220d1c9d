"""Scoring request bodies → the rows they ask to score, for each endpoint of the service.

The service reads a request's rows with these functions, and so does capture when it turns a captured
request body back into its rows (``docs/decisions/0028-capture-request-bodies.md``): one definition, so
what is captured is exactly what was scored. ``POST /invocations`` speaks MLflow's scoring protocol as
``mlflow models serve`` (MLflow 3) reads it: JSON, CSV or Parquet by content type (capture records the
content type of every body that is not JSON), the four JSON input formats, and ``params``
(``docs/decisions/0034-mlflow-scoring-protocol.md``).
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import math
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CSV",
    "JSON",
    "MEDIA_TYPES",
    "PARQUET",
    "RequestFormatError",
    "UnsupportedMediaTypeError",
    "instances_rows",
    "media_type",
    "mlflow_input",
    "mlflow_rows",
    "prediction_items",
    "request_rows",
]

JSON, CSV, PARQUET = "application/json", "text/csv", "application/vnd.apache.parquet"
MEDIA_TYPES = (CSV, JSON, PARQUET)  # in MLflow's order: its 415 message lists them so

_MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_REQUIRED = (
    "The input must be a JSON dictionary with exactly one of the input fields "
    "dataframe_split, dataframe_records, instances, inputs"
)
# MLflow's own hint, appended to its content-type and input-format errors.
_PROTOCOL_CHANGE = (
    "IMPORTANT: The MLflow Model scoring protocol has changed in MLflow version 2.0. If you are seeing "
    "this error, you are likely using an outdated scoring request format."
)


class RequestFormatError(ValueError):
    """The body is not in the endpoint's format (the service answers with the message: 422 on
    ``/v1/predict``, MLflow's 400 on ``/invocations``)."""


class UnsupportedMediaTypeError(RequestFormatError):
    """The content type is not one ``/invocations`` reads (the service answers 415 with the message)."""


def parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestFormatError(f"the body is not valid JSON: {exc}") from None


def media_type(content_type: str | None) -> str:
    """The media type of an ``/invocations`` body from its ``Content-Type`` header, by MLflow's rules:
    ``charset`` must be UTF-8, no other parameter is allowed, and the type is one of
    :data:`MEDIA_TYPES`; otherwise :class:`UnsupportedMediaTypeError` with MLflow's message.

    Two leniencies, both where MLflow fails a request a client could reasonably send: no header at all
    is JSON (MLflow answers 500), and the type's case does not matter (RFC 9110; MLflow answers 415).
    """
    if content_type is None or content_type == JSON:  # the common cases first: this runs per request
        return JSON
    mime, *pairs = (part.strip() for part in content_type.split(";"))
    parameters = {key: value for key, _, value in (pair.partition("=") for pair in pairs)}
    if parameters.get("charset", "utf-8").lower() != "utf-8":
        raise UnsupportedMediaTypeError("The scoring server only supports UTF-8")
    unexpected = sorted(set(parameters) - {"charset"})
    if unexpected:
        raise UnsupportedMediaTypeError(
            f"Unrecognized content type parameters: {', '.join(unexpected)}. {_PROTOCOL_CHANGE}"
        )
    mime = mime.lower()
    if mime not in MEDIA_TYPES:
        raise UnsupportedMediaTypeError(
            "This predictor only supports the following content types: "
            f"Types: {list(MEDIA_TYPES)}. Got '{content_type}'."
        )
    return mime


def instances_rows(body: Any) -> list[Any]:
    """``POST /v1/predict``: ``{"instances": [{field: value, …}, …]}``."""
    rows = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise RequestFormatError('the body must be {"instances": [{field: value, ...}, ...]}')
    return rows


def mlflow_input(raw: bytes, media: str = JSON) -> tuple[list[Any], dict[str, Any] | None]:
    """``POST /invocations``: a body of media type ``media`` (see :func:`media_type`) → its rows and its
    ``params`` (JSON only; None when it has none). :class:`RequestFormatError` if it has no rows."""
    if media == JSON:
        body = _mlflow_json(raw)
        return mlflow_rows(body), body.get("params")
    return _frame_rows(_read_frame(raw, media)), None


def mlflow_rows(body: Any) -> list[Any]:
    """A parsed JSON ``/invocations`` body → its rows, as MLflow's scoring server reads it: exactly one
    of dataframe_split (``columns``, ``data`` and optionally ``index``), dataframe_records, instances
    or inputs (a list of rows, or an object of columns: lists of equal length, a single value repeated
    as pandas does); ``params``, when given, must be an object; other keys are ignored, as MLflow does.
    """
    if not isinstance(body, dict):
        kind = "a list" if isinstance(body, list) else f"unexpected input type '{type(body).__name__}'"
        raise RequestFormatError(f"{_REQUIRED}. Received {kind}.")
    kinds = [key for key in body if key in _MLFLOW_FORMATS]
    if len(kinds) != 1:
        raise RequestFormatError(
            f"{_REQUIRED}. Received dictionary with input fields: {kinds}. {_PROTOCOL_CHANGE}"
        )
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        raise RequestFormatError(f"Parameters must be a dictionary. Got type '{type(params).__name__}'.")
    kind = kinds[0]
    value = body[kind]
    if kind == "dataframe_split":
        return _split_rows(value)
    if isinstance(value, list):
        return value
    if kind == "dataframe_records":
        raise RequestFormatError("Dataframe records format must be a list of records.")
    if isinstance(value, dict):
        return _column_rows(kind, value)
    raise RequestFormatError(f"{kind} must be a list of rows or an object of columns")


def _split_rows(split: Any) -> list[dict[str, Any]]:
    if not isinstance(split, dict):
        raise RequestFormatError(f"Dataframe split format must be a dictionary. Got {type(split).__name__}.")
    keys = set(split)
    if "data" not in keys or keys - {"columns", "data", "index"}:
        raise RequestFormatError(
            "Dataframe split format must have 'data' field and optionally 'columns' and 'index' fields. "
            f"Got {sorted(keys)}."
        )
    columns, data, index = split.get("columns"), split["data"], split.get("index")
    # MLflow would number the columns 0, 1, … and then fail the model's schema: every input is missing.
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise RequestFormatError("dataframe_split needs 'columns': the names of the fields, in order")
    if not isinstance(data, list):
        raise RequestFormatError("dataframe_split 'data' must be a list of rows")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise RequestFormatError(f"dataframe_split 'index' must be a list of {len(data)} labels, one per row")
    rows = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise RequestFormatError(f"dataframe_split row {i} does not have {len(columns)} values")
        rows.append(dict(zip(columns, row, strict=True)))
    return rows


def _column_rows(kind: str, columns: dict[str, Any]) -> list[dict[str, Any]]:
    """TF serving's columnar format, ``{"a": [1, 2], "b": ["x", "y"]}``, as pandas builds a frame of it:
    lists of equal length are columns, a single value is repeated down its column."""
    lengths = {len(v) for v in columns.values() if isinstance(v, list)}
    if len(lengths) > 1:
        raise RequestFormatError(f"{kind}: the columns have different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else (1 if columns else 0)
    return [{name: v[i] if isinstance(v, list) else v for name, v in columns.items()} for i in range(n)]


# Python's json module (MLflow's client and server) writes and reads a DataFrame's missing values as
# NaN and infinities as ±Infinity, which are not JSON. NaN is pandas' null: read as null.
_CONSTANTS = {"NaN": None, "Infinity": math.inf, "-Infinity": -math.inf}


def _mlflow_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        error = exc
    try:  # what MLflow's client writes, read as MLflow's server reads it
        body = json.loads(raw, parse_constant=_CONSTANTS.__getitem__, parse_int=_json_int)
        orjson.dumps(body)  # and nothing capture could not store (a lone surrogate)
    except (ValueError, TypeError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RequestFormatError(
            f"Ensure that input is a valid JSON formatted string. Error: {error}"
        ) from None
    return body


def _json_int(text: str) -> int | float:
    """An integer literal as orjson reads it: beyond 64 bits, a float."""
    value = int(text)
    return value if -(2**63) <= value < 2**64 else float(text)


def _read_frame(raw: bytes, media: str) -> pd.DataFrame:
    """A CSV or Parquet body as MLflow's scoring server reads it, with pandas (for its type inference)."""
    import pandas as pd  # deferred: only CSV and Parquet bodies need it, and capture's helper may not

    if media == CSV:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestFormatError(
                f"Ensure that input is a valid UTF-8 encoded string. Error: '{exc!r}'"
            ) from None
        try:
            return pd.read_csv(io.StringIO(text))
        except Exception as exc:  # pandas raises several kinds; MLflow too takes any as a bad request
            raise RequestFormatError(
                "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid "
                f"CSV-formatted Pandas DataFrame produced using the `pandas.DataFrame.to_csv()` method. "
                f"Error: '{exc}'"
            ) from None
    if media == PARQUET:
        try:
            return pd.read_parquet(io.BytesIO(raw))
        except Exception as exc:
            raise RequestFormatError(
                "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid Parquet "
                f"Pandas DataFrame produced using the `pandas.DataFrame.to_parquet()` method. Error: '{exc}'"
            ) from None
    raise UnsupportedMediaTypeError(f"no rows can be read from a {media!r} body")


def _frame_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as JSON values (what validation checks and capture stores): numbers as numbers,
    every kind of pandas null (an empty CSV cell, NaN, NA, NaT) as null."""
    if not frame.columns.is_unique:
        raise RequestFormatError("the columns must have distinct names")
    columns: dict[str, list[Any]] = {}
    for name in frame.columns:
        column = frame[name]
        values = column.astype(object).where(column.notna(), None).tolist()
        if column.dtype.kind not in "biuf":  # text, objects, dates: whatever the cells hold
            values = [_json_value(v) for v in values]
        columns[str(name)] = values
    return [{name: values[i] for name, values in columns.items()} for i in range(len(frame))]


def _json_value(value: Any) -> Any:  # noqa: PLR0911 — one return per kind of value
    """A cell of a CSV or Parquet column as JSON holds it, converted as MLflow's NumpyEncoder converts
    (arrays as lists, bytes as base64, dates as ISO text); an integer beyond 64 bits as a float, as
    orjson reads one from JSON."""
    if value is None or isinstance(value, str | bool | float):
        return value
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:
            return value
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _json_value(value.tolist())
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, bytes | bytearray):
        return base64.encodebytes(value).decode("ascii")
    if isinstance(value, datetime.date | datetime.time):  # a pandas Timestamp is a datetime
        return value.isoformat()
    return str(value)


def request_rows(endpoint: str, raw: bytes, media: str = JSON) -> list[Any]:
    """The rows a request body of media type ``media`` to ``endpoint`` asks to score;
    :class:`RequestFormatError` if it has none."""
    if endpoint == "/invocations":
        return mlflow_input(raw, media)[0]
    if endpoint == "/v1/predict":
        return instances_rows(parse(raw))
    raise RequestFormatError(f"no request format is known for the endpoint {endpoint!r}")


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
