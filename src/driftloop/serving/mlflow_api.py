"""What the service's MLflow routes answer, as ``mlflow models serve`` (MLflow 3) does.

Read from MLflow's own scoring server (``mlflow/pyfunc/scoring_server``) so that an MLflow client
cannot tell the two apart: the predictions of ``POST /invocations`` as MLflow renders a model's 1-D
output, its errors as MLflow's JSON error body (415 as MLflow's plain text), ``GET /ping`` and
``GET /version``. Request bodies are read in ``driftloop.core.requests``, which capture shares
(decision 0034 records where driftloop departs from MLflow, and why).
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["JSON", "TEXT", "error", "mlflow_version", "predictions"]

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"  # what Starlette makes of MLflow's "text/plain"

# MLflow's error_code for each status driftloop answers an MLflow route with, and the error_class and
# sqlstate MlflowException derives from that code (mlflow/error_classification.py).
_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    413: "BAD_REQUEST",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
}
_CLASSES = {
    "BAD_REQUEST": ("KAM00", "INVALID_PARAMETER_VALUE"),
    "PERMISSION_DENIED": ("KAM00", "PERMISSION_DENIED"),
    "INTERNAL_ERROR": ("XXM00", "CLIENT_INTERNAL_ERROR"),
    "TEMPORARILY_UNAVAILABLE": ("XXM00", "CLIENT_INTERNAL_ERROR"),
}
_NAMED = 5  # field errors spelled out in the message; all of them are in "detail"


def predictions(scores: Sequence[float]) -> bytes:
    """``{"predictions": [score, …]}``: MLflow's scoring server renders a model's 1-D numpy output (one
    score per row, what the registered model's pyfunc returns) with ``ndarray.tolist()``, a plain list.
    (A model logged with MLflow's bare PyTorch flavor would answer ``[{"0": score}, …]`` instead: that
    flavor wraps the output of a DataFrame input in a one-column DataFrame, rendered as records.)"""
    return orjson.dumps({"predictions": scores})


def error(
    status: int, message: str, errors: list[dict[str, Any]] | None = None, total: int | None = None
) -> tuple[int, bytes, bytes]:
    """A failed MLflow request as MLflow answers it: (status, content type, body).

    415 is MLflow's plain-text message. Everything else is ``{"error_code", "message", "sqlstate",
    "error_class"}``; driftloop's 422 (the request cannot be scored as sent) is MLflow's 400
    ``BAD_REQUEST``. Field errors (``errors``: ``{"loc", "type", "msg"}`` each) replace ``message``:
    the first few are named in it, and all are listed in ``detail``, where driftloop's routes list them
    (``total``: how many there are when ``errors`` lists only the first ones, also in ``invalid_fields``).
    """
    if status == 415:
        return status, TEXT, message.encode()
    if status == 422:
        status = 400
    code = _CODES.get(status, "INTERNAL_ERROR")
    count = len(errors or ()) if total is None else total
    if errors:
        named = "; ".join(f"row {e['loc'][1]}, field {e['loc'][2]!r}: {e['msg']}" for e in errors[:_NAMED])
        more = f" (and {count - _NAMED} more, see detail)" if count > _NAMED else ""
        message = f"Invalid input. {count} invalid field(s): {named}{more}"
    body: dict[str, Any] = {"error_code": code, "message": message}
    if code in _CLASSES:
        body["sqlstate"], body["error_class"] = _CLASSES[code]
    if errors:
        body["detail"] = errors
        if count > len(errors):
            body["invalid_fields"] = count
    return status, JSON, orjson.dumps(body)


def mlflow_version() -> str:
    """What ``GET /version`` answers: the version of MLflow whose scoring protocol the service speaks
    (the installed one; ``mlflow models serve`` answers its own version)."""
    for distribution in ("mlflow", "mlflow-skinny"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"
