"""Scoring a request: its body read into rows, validated, scored (micro-batched or not), answered and
captured. A prediction is acknowledged only after its capture record is durable.

The two scoring routes share this: ``POST /v1/predict`` (:meth:`Scorer.predict`) and MLflow's
``POST /invocations`` (:meth:`Scorer.invocations`, decision 0034). Each takes the raw body and its
``Content-Type`` and returns the JSON answer's bytes, or raises :class:`BadRequest` (or a
``DriftloopError``) that the route renders in its own error shape (``serving.scoring_route``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import orjson
from starlette.concurrency import run_in_threadpool

from driftloop.core.requests import (
    JSON,
    RequestFormatError,
    UnsupportedMediaTypeError,
    media_type,
    mlflow_input,
    prediction_items,
    request_rows,
)
from driftloop.errors import DriftloopError
from driftloop.serving import mlflow_api
from driftloop.serving.inputs import InvalidInput
from driftloop.serving.responses import BadRequest
from driftloop.serving.stamps import PredictionIds, utc_now_iso

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping, Sequence

    from driftloop.serving.batching import MicroBatcher
    from driftloop.serving.metrics import ServiceMetrics
    from driftloop.serving.model import LoadedModel, ModelHolder, Prediction

__all__ = ["CaptureSink", "Scorer"]

log = logging.getLogger(__name__)
# Scoring bodies up to this size are parsed and validated on the event loop (well under a millisecond);
# bigger ones in a worker thread, so that a big body cannot hold the loop up (a 13 MB body of unknown
# fields took 10-16 s): the thread gives the GIL back at least every switch interval (5 ms).
_INLINE_BODY_BYTES = 64 * 1024

# A request's predictions (id, score, fallback, label) and the model that made them.
_Answer: TypeAlias = "tuple[list[dict[str, Any]], LoadedModel]"
# What capture needs of a scored request: endpoint, start time, body, its media type (None: JSON).
_Context: TypeAlias = "tuple[str, float, bytes, str | None]"


class CaptureSink(Protocol):
    """Where interactions go (``driftloop.capture.CaptureStore``)."""

    async def append_async(self, record: Mapping[str, Any]) -> None: ...

    def append_many_async(
        self, records: Sequence[Mapping[str, Any]], *, trusted: bool = False
    ) -> Awaitable[None]: ...

    def append_nowait(
        self, records: Sequence[Mapping[str, Any]], *, trusted: bool = False
    ) -> Awaitable[None] | None:
        """Capture now from the event loop (None), or return what to await before acknowledging."""

    def stats(self) -> Mapping[str, Any]: ...


def _rows(endpoint: str, raw: bytes) -> list[Any]:
    """The rows of a scoring request (``core.requests``, the definition capture reads them back with)."""
    try:
        return request_rows(endpoint, raw)
    except RequestFormatError as exc:
        raise BadRequest(422, str(exc)) from None


def _mlflow_input(raw: bytes, content_type: str | None) -> tuple[list[Any], dict[str, Any] | None, str]:
    """An ``/invocations`` body's rows, params and media type (``core.requests``, as capture reads it)."""
    try:
        media = media_type(content_type)
        rows, params = mlflow_input(raw, media)
    except UnsupportedMediaTypeError as exc:
        raise BadRequest(415, str(exc)) from None
    except RequestFormatError as exc:
        raise BadRequest(422, str(exc)) from None
    return rows, params, media


class Scorer:
    """The scoring routes' handlers over ``holder``, capturing to ``capture`` (None: capture off).

    ``batcher`` (built on ``holder.predict``) lets concurrent requests share model calls; its ``finish``
    must be :meth:`finish` (``create_app`` wires it). A request of more than ``max_rows`` rows is a 413; a
    422 lists the first ``max_field_errors`` bad fields and counts all. Prediction ids come from ``ids``.
    """

    def __init__(
        self,
        holder: ModelHolder,
        capture: CaptureSink | None,
        metrics: ServiceMetrics,
        *,
        batcher: MicroBatcher | None,
        ids: PredictionIds,
        max_rows: int,
        max_field_errors: int,
    ) -> None:
        self.holder = holder
        self.capture = capture
        self.metrics = metrics
        self.batcher = batcher
        self.ids = ids
        self.max_rows = max_rows
        self.max_field_errors = max_field_errors
        self._params_ignored = False  # said once in the log, not per request

    async def predict(self, raw: bytes, content_type: str | None = None) -> bytes:
        """``{"instances": [{field: value, …}, …]}`` → one prediction (id, score, label) per instance."""
        started = time.perf_counter()
        big = len(raw) > _INLINE_BODY_BYTES
        rows = await run_in_threadpool(_rows, "/v1/predict", raw) if big else _rows("/v1/predict", raw)
        out, answered = await self._score(rows, ("/v1/predict", started, raw, None))
        return orjson.dumps(
            {"model": {"name": answered.name, "version": answered.version}, "predictions": out}
        )

    async def invocations(self, raw: bytes, content_type: str | None = None) -> bytes:
        """MLflow's scoring protocol: a JSON body (dataframe_split, dataframe_records, instances or inputs,
        and optional params), CSV or Parquet → ``{"predictions": [score, …]}``."""
        started = time.perf_counter()
        if len(raw) > _INLINE_BODY_BYTES:
            rows, params, media = await run_in_threadpool(_mlflow_input, raw, content_type)
        else:
            rows, params, media = _mlflow_input(raw, content_type)
        if params and not self._params_ignored:
            # As MLflow does for a model whose signature has no params schema: accepted, not used.
            self._params_ignored = True
            log.warning(
                "params %s ignored: the served model takes no inference parameters (said once)",
                sorted(params),
            )
        # The media type is captured with the body only when it is not JSON, the default when reading back.
        context = ("/invocations", started, raw, None if media == JSON else media)
        out, _ = await self._score(rows, context)
        return mlflow_api.predictions([item["score"] for item in out])

    async def _score(self, rows: list[Any], context: _Context) -> _Answer:
        if not rows:
            raise BadRequest(422, "no rows to score")
        if len(rows) > self.max_rows:
            raise BadRequest(
                413, f"{len(rows)} rows in one request; the limit is {self.max_rows} (serving.max_rows)"
            )
        model = self.holder.current
        if model is None:
            raise BadRequest(503, "no model loaded yet (see GET /v1/model)")
        try:
            if len(context[2]) > _INLINE_BODY_BYTES:
                await run_in_threadpool(model.spec.validate, rows, self.max_field_errors)
            else:
                model.spec.validate(rows, self.max_field_errors)
        except InvalidInput as exc:
            await self._refused(model.name, context[0], len(rows), exc)
        if self.batcher is not None:
            result: _Answer = await self.batcher.submit(rows, context)
            return result
        prediction = await run_in_threadpool(self.holder.predict, rows)
        results, durable = self.finish([(context, rows)], prediction)
        if durable is not None:
            await durable
        return results[0]

    async def _refused(self, model_name: str, endpoint: str, rows: int, exc: InvalidInput) -> None:
        """Count and capture a request with invalid fields, then raise its 422."""
        self.metrics.invalid_fields.inc(exc.total)
        errors = [e.to_json() for e in exc.errors]
        await self._capture_rejection(model_name, endpoint, rows, errors)
        message = "invalid input"
        if exc.total > len(errors):
            message += (
                f": {exc.total} invalid fields, the first {len(errors)} listed (serving.max_field_errors)"
            )
        raise BadRequest(422, message, errors, exc.total) from None

    async def _capture_rejection(
        self, model_name: str, endpoint: str, rows: int, errors: list[dict[str, Any]]
    ) -> None:
        """Record a refused request for the monitor's data-quality share; never turns a 422 into a 503."""
        if self.capture is None:
            return
        record = {
            "kind": "rejection",
            "ts": utc_now_iso(),
            "model_name": model_name,
            "endpoint": endpoint,
            "rows": rows,
            "errors": errors,
        }
        try:
            await self.capture.append_many_async([record], trusted=True)
        except DriftloopError as exc:
            log.warning("could not capture a refused request: %s", exc.headline)

    def finish(
        self, batch: list[tuple[Any, Sequence[Any]]], prediction: Prediction
    ) -> tuple[list[_Answer], Awaitable[None] | None]:
        """The answers of a batch of requests scored in one model call (``MicroBatcher``'s ``finish``),
        and the capture of all of them, which each answer waits for: an acknowledged prediction is
        durable. ``batch``: per request ((endpoint, start time, body, media type or None for JSON),
        rows), in the prediction's row order. The capture is one ``request_batch`` record: the request
        bodies as received plus what the model answered (decision 0028), not a JSON rendering of every
        row, and the media type of each body when one is not JSON (decision 0034)."""
        answered, fallback = prediction.model, prediction.fallback
        scores = prediction.scores.tolist()
        ids = self.ids.take(len(scores))
        items = prediction_items(ids, scores, fallback, answered.threshold)
        answers: list[_Answer] = []
        offset = 0
        for _, rows in batch:
            answers.append((items[offset : offset + len(rows)], answered))
            offset += len(rows)
        if fallback:
            self.metrics.fallbacks.inc(len(batch))
        if self.capture is None:
            return answers, None
        record = _batch_record(batch, prediction, ids, scores)
        return answers, self.capture.append_nowait([record], trusted=True)


def _batch_record(
    batch: list[tuple[Any, Sequence[Any]]], prediction: Prediction, ids: list[str], scores: list[float]
) -> dict[str, Any]:
    """The ``request_batch`` capture record of a batch (:meth:`Scorer.finish`)."""
    answered, clock = prediction.model, time.perf_counter()
    contexts: list[_Context] = [context for context, _ in batch]
    record: dict[str, Any] = {
        "kind": "request_batch",
        "ts": utc_now_iso(),
        "model_name": answered.name,
        "model_version": answered.version,
        "fallback": prediction.fallback,
        "threshold": answered.threshold,
        "ids": ids,
        "scores": scores,
        "rows": [len(rows) for _, rows in batch],
        "latency_ms": [(clock - started) * 1000 for _, started, _, _ in contexts],
        "endpoints": [endpoint for endpoint, _, _, _ in contexts],
        "bodies": [raw for _, _, raw, _ in contexts],
    }
    types = [media for _, _, _, media in contexts]
    if any(types):  # a CSV or Parquet body: read back by its type (JSON when the list is absent)
        record["content_types"] = [media or JSON for media in types]
    if prediction.shadow is not None and prediction.shadow_scores is not None:
        record["shadow_version"] = prediction.shadow.version
        record["shadow_scores"] = prediction.shadow_scores.tolist()
    return record
