"""The prediction service: FastAPI routes over a :class:`ModelHolder` and a capture sink.

Contract (docs/contract.md): ``POST /v1/predict``, ``POST /invocations`` (MLflow's scoring protocol,
with MLflow's ``GET /ping`` and ``GET /version``), ``POST /v1/feedback``, ``GET /health``, ``GET /ready``,
``GET /v1/model``, ``GET /metrics``; OpenAPI at ``/docs``. Bad input is a 422 naming each bad field
(on the MLflow routes MLflow's 400, naming them too), never a 500. A prediction is acknowledged (the
response sent) only after its capture record is durable.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeAlias

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from driftloop import __version__
from driftloop.core.requests import (
    JSON,
    RequestFormatError,
    UnsupportedMediaTypeError,
    media_type,
    mlflow_input,
    parse,
    prediction_items,
    request_rows,
)
from driftloop.errors import DriftloopError
from driftloop.serving import mlflow_api
from driftloop.serving.access import content_type_and_authorization, refusal_headers
from driftloop.serving.feedback import FeedbackCounters, InvalidFeedback, check_feedback, feedback_records
from driftloop.serving.inputs import InvalidInput
from driftloop.serving.limits import BodyTooLarge, check_declared, declared_length, limited, read_body
from driftloop.serving.metrics import ServiceMetrics
from driftloop.serving.openapi import document, mount_docs
from driftloop.serving.stamps import PredictionIds, utc_now_iso
from driftloop.serving.webhooks import verify

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence
    from contextlib import AbstractAsyncContextManager

    from starlette.types import Message, Receive, Scope, Send

    from driftloop.auth import Gate, Principal
    from driftloop.serving.access import Headers
    from driftloop.serving.batching import MicroBatcher
    from driftloop.serving.model import LoadedModel, ModelHolder, Prediction
    from driftloop.serving.stamps import IdKeys

__all__ = ["CaptureSink", "Reply", "create_app"]

log = logging.getLogger(__name__)
# Scoring bodies up to this size are parsed and validated on the event loop (well under a millisecond);
# bigger ones in a worker thread, so that a big body cannot hold the loop up (a 13 MB body of unknown
# fields took 10-16 s): the thread gives the GIL back at least every switch interval (5 ms).
_INLINE_BODY_BYTES = 64 * 1024

WEBHOOK_SIGNATURE, WEBHOOK_DELIVERY, WEBHOOK_TIMESTAMP = (
    "X-MLflow-Signature", "X-MLflow-Delivery-Id", "X-MLflow-Timestamp",
)  # fmt: skip


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


class ORJSONResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def _error_body(message: str, errors: list[dict[str, Any]] | None = None, total: int | None = None) -> bytes:
    body: dict[str, Any] = {"error": message}
    if errors is not None:
        body["detail"] = errors
        if total is not None and total > len(errors):  # detail lists the first serving.max_field_errors
            body["invalid_fields"] = total
    return orjson.dumps(body)


def _driftloop_error(
    status: int, message: str, errors: list[dict[str, Any]] | None = None, total: int | None = None
) -> tuple[int, bytes, bytes]:
    """A failed request to a driftloop route: (status, content type, ``{"error", "detail"}``)."""
    return status, _APPLICATION_JSON, _error_body(message, errors, total)


def _error(
    status: int, message: str, errors: list[dict[str, Any]] | None = None, headers: Headers = ()
) -> Response:
    return Response(
        _error_body(message, errors),
        status_code=status,
        media_type="application/json",
        headers={name.decode(): value.decode() for name, value in headers},
    )


def _json_body(raw: bytes) -> Any:
    try:
        return parse(raw)
    except RequestFormatError as exc:
        raise _BadRequest(422, str(exc)) from None


def _rows(endpoint: str, raw: bytes) -> list[Any]:
    """The rows of a scoring request (``core.requests``, the definition capture reads them back with)."""
    try:
        return request_rows(endpoint, raw)
    except RequestFormatError as exc:
        raise _BadRequest(422, str(exc)) from None


def _mlflow_input(raw: bytes, content_type: str | None) -> tuple[list[Any], dict[str, Any] | None, str]:
    """An ``/invocations`` body's rows, params and media type (``core.requests``, as capture reads it)."""
    try:
        media = media_type(content_type)
        rows, params = mlflow_input(raw, media)
    except UnsupportedMediaTypeError as exc:
        raise _BadRequest(415, str(exc)) from None
    except RequestFormatError as exc:
        raise _BadRequest(422, str(exc)) from None
    return rows, params, media


class _BadRequest(Exception):  # noqa: N818 — control flow to a 4xx response
    def __init__(
        self, status: int, message: str, errors: list[dict[str, Any]] | None = None, total: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors
        self.total = total  # of the field errors, when ``errors`` lists only the first ones


def create_app(
    holder: ModelHolder,
    *,
    capture: CaptureSink | None = None,
    max_rows: int = 10_000,
    max_body_bytes: int = 4 * 1024 * 1024,
    max_field_errors: int = 100,
    batcher: MicroBatcher | None = None,
    on_registry_event: Callable[[], None] | None = None,
    webhook_secret: str | None = None,
    monitor_gauges: Callable[[], bytes] | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    gate: Gate | None = None,
    id_keys: IdKeys | None = None,
    max_feedback_rows: int = 10_000,
) -> FastAPI:
    """The service around ``holder`` (already following the registry) and ``capture``.

    With ``batcher`` (built on ``holder.predict``), concurrent requests share model calls. With
    ``on_registry_event``, ``POST /v1/registry-events`` (MLflow webhooks, signed with ``webhook_secret``
    when given) calls it. ``monitor_gauges`` returns the latest monitoring pass's Prometheus text,
    appended to ``GET /metrics`` (it must not do I/O: ``serving.gauges`` reads in the background). A body
    over ``max_body_bytes`` is a 413; a 422 lists the first ``max_field_errors`` bad fields and counts all.
    ``gate`` admits requests to the protected routes (tokens, roles, rate limits: docs/auth.md); without
    one every route is open, as with auth off. Prediction ids are tagged with ``id_keys`` (default: a
    random key of this app's own), and ``POST /v1/feedback`` accepts labels for ids those keys
    recognise, at most ``max_feedback_rows`` per request.
    """
    metrics = ServiceMetrics(holder, capture)
    app = ServiceApp(
        metrics=metrics, title="driftloop prediction service", version=__version__, lifespan=lifespan,
        default_response_class=ORJSONResponse, docs_url=None, redoc_url=None,
    )  # fmt: skip
    mount_docs(app, app.title)  # Swagger UI and ReDoc from the package's own files: no CDN
    app.state.holder = holder
    app.state.metrics = metrics
    app.max_body_bytes = max_body_bytes
    app.gate = gate
    _error_handlers(app)

    service = _Service(holder, capture, metrics, max_rows, batcher, gate=gate)
    service.max_field_errors = max_field_errors
    if batcher is not None:
        batcher.on_batch = metrics.observe_batch
        batcher.finish = service.finish
    service.monitor_gauges = monitor_gauges
    if id_keys is not None:
        service.ids = PredictionIds(id_keys)
    service.max_feedback_rows = max_feedback_rows
    # The scoring routes are answered ahead of FastAPI's stack (ServiceApp); the routes declared here
    # give them their OpenAPI entries and answer through the very same handlers. Each renders its
    # errors its own way: driftloop's {"error", "detail"}, or MLflow's error body on /invocations.
    predict = Route(service.predict, _driftloop_error, "predict")
    invocations = Route(service.invocations, mlflow_api.error, "predict")
    app.fast_routes = {"/v1/predict": predict, "/invocations": invocations}
    app.add_api_route("/v1/predict", _routed(predict, gate), methods=["POST"], summary="Score raw rows")
    app.add_api_route(
        "/invocations", _routed(invocations, gate), methods=["POST"], summary="MLflow scoring protocol"
    )
    app.add_api_route("/ping", service.ping, methods=["GET"], summary="MLflow's health check")
    app.add_api_route("/version", service.version, methods=["GET"], summary="MLflow's version route")
    app.add_api_route(
        "/v1/feedback", service.feedback, methods=["POST"], summary="Ground truth by prediction id"
    )
    app.add_api_route("/health", service.health, methods=["GET"], summary="Alive")
    app.add_api_route("/ready", service.ready, methods=["GET"], summary="A model is loaded")
    app.add_api_route("/v1/model", service.model_info, methods=["GET"], summary="What is served")
    app.add_api_route("/metrics", service.prometheus, methods=["GET"], summary="Prometheus metrics")
    if on_registry_event is not None:
        wake = on_registry_event

        async def registry_event(request: Request) -> ORJSONResponse:
            """An MLflow registry webhook: check the alias now instead of at the next poll."""
            # With auth on, a delivery signed with the webhook secret needs no token (MLflow sends no
            # Authorization header); anything else needs a token with the promote role.
            signed = webhook_secret is not None and (
                WEBHOOK_SIGNATURE in request.headers or gate is None or not gate.auth
            )
            if not signed:
                await service.admit(request, "promote")
            body = await request.body()
            if signed:
                assert webhook_secret is not None
                verify(webhook_secret, body, signature=request.headers.get(WEBHOOK_SIGNATURE),
                       delivery_id=request.headers.get(WEBHOOK_DELIVERY), timestamp=request.headers.get(
                           WEBHOOK_TIMESTAMP))  # fmt: skip
            wake()
            return ORJSONResponse({"status": "checking the registry"}, status_code=202)

        app.add_api_route(
            "/v1/registry-events", registry_event, methods=["POST"], summary="MLflow registry webhook"
        )
    return app


_APPLICATION_JSON = b"application/json"
# (request body, its content type) → JSON response body; raises _BadRequest or DriftloopError.
RawHandler: TypeAlias = "Callable[[bytes, str | None], Awaitable[bytes]]"


class ErrorRenderer(Protocol):
    """(status, message, field errors, their total when only the first are listed) → (status, content
    type, body) of the failed request."""

    def __call__(
        self, status: int, message: str, errors: list[dict[str, Any]] | None = None, total: int | None = None
    ) -> tuple[int, bytes, bytes]: ...


class Route(NamedTuple):
    """A scoring route answered ahead of FastAPI: its handler, how it renders its errors, and the role a
    token needs to call it (when auth is on)."""

    handler: RawHandler
    error: ErrorRenderer
    role: str


class Reply(NamedTuple):
    """What a scoring route answers: status, content type, body and any extra headers."""

    status: int
    content_type: bytes
    body: bytes
    headers: Headers = ()


async def _answer(
    path: str,
    route: Route,
    body: bytes,
    content_type: str | None,
    *,
    gate: Gate | None = None,
    authorization: str | None = None,
    client: str | None = None,
) -> Reply:
    """``POST path`` with ``body``, admitted by ``gate`` first (its ``Authorization`` header and client
    address): what to send. Never raises for a request's fault or a bug: those are errors in the route's
    shape, a bug a 500 with the traceback in the log."""
    try:
        if gate is not None:
            await gate.admit(route.role, authorization, client)
        return Reply(200, _APPLICATION_JSON, await route.handler(body, content_type))
    except _BadRequest as exc:
        return Reply(*route.error(exc.status, str(exc), exc.errors, exc.total))
    except DriftloopError as exc:
        return Reply(*route.error(exc.http_status, str(exc), None), refusal_headers(exc))
    except Exception:
        log.exception("unhandled error answering POST %s", path)
        return Reply(*route.error(500, "internal server error", None))


def _routed(route: Route, gate: Gate | None) -> Callable[[Request], Awaitable[Response]]:
    """``route`` as a FastAPI endpoint, answering as the fast path does."""

    async def endpoint(request: Request) -> Response:
        try:
            body = await request.body()
        except BodyTooLarge as exc:  # in the route's own shape, as on the fast path
            status, content_type, payload = route.error(413, str(exc))
            return Response(payload, status_code=status, media_type=content_type.decode())
        status, content_type, payload, headers = await _answer(
            request.url.path,
            route,
            body,
            request.headers.get("content-type"),
            gate=gate,
            authorization=request.headers.get("authorization"),
            client=request.client.host if request.client else None,
        )
        return Response(
            payload,
            status_code=status,
            media_type=content_type.decode(),
            headers={name.decode(): value.decode() for name, value in headers},
        )

    endpoint.__doc__ = route.handler.__doc__
    return endpoint


class ServiceApp(FastAPI):
    """FastAPI, with the scoring routes answered before its middleware stack and router.

    A single-row prediction is mostly framework: routing, dependency solving, five middleware layers
    and a Response object cost more than validating, scoring and capturing the row. ``fast_routes``
    maps a path to a raw handler for ``POST``; everything else (and every other method) goes through
    FastAPI as usual. The fast path keeps the contract: the same handlers, errors as JSON with the
    same statuses. Request metrics for both paths are taken here (a plain ASGI wrapper: a
    BaseHTTPMiddleware would cost ~100 µs a call). ``driftloop serve`` goes one step further: its
    uvicorn protocol (``serving.protocol``) calls :meth:`respond` straight from the HTTP parser.
    """

    def __init__(self, *, metrics: ServiceMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics
        self.fast_routes: dict[str, Route] = {}
        self.max_body_bytes = 4 * 1024 * 1024  # serving.max_body_bytes: bigger bodies are a 413
        self.gate: Gate | None = None  # admits requests to the protected routes (None: all open)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every HTTP request is counted by path and status and timed, on either path."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if scope["method"] == "POST" and scope["path"] in self.fast_routes:
            try:
                check_declared(scope["headers"], self.max_body_bytes)
                body = await read_body(receive, self.max_body_bytes)
            except BodyTooLarge as exc:
                answer = Reply(*self.refuse(scope["path"], exc))
            else:
                if body is None:  # the client left before its body came
                    return
                content_type, authorization = content_type_and_authorization(scope["headers"])
                client = scope.get("client")
                answer = await self.respond(
                    scope["path"], body, content_type, authorization, client[0] if client else None
                )
            headers = [
                (b"content-type", answer.content_type),
                (b"content-length", str(len(answer.body)).encode()),
                *answer.headers,
            ]
            await send({"type": "http.response.start", "status": answer.status, "headers": headers})
            await send({"type": "http.response.body", "body": answer.body})
            return
        started, status = time.perf_counter(), 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        # Every route that reads its body reads at most the limit (serving.limits).
        receive = limited(receive, self.max_body_bytes, declared_length(scope["headers"]))
        try:
            await super().__call__(scope, receive, observed)
        finally:
            self.metrics.observe(scope["path"], status, time.perf_counter() - started)

    async def respond(
        self,
        path: str,
        body: bytes,
        content_type: str | None = None,
        authorization: str | None = None,
        client: str | None = None,
    ) -> Reply:
        """``POST path`` (a key of ``fast_routes``) with ``body`` of ``content_type`` (the header's value,
        None without one), from ``client`` (its address) with ``authorization`` (that header's value):
        the status, content type, body and extra headers to send.

        Never raises for a request's fault or a bug: those are errors in the route's shape with their
        status; a request the gate refuses is a 401, 403 or 429 before the handler runs. Counted and
        timed in the request metrics. The uvicorn protocol (``serving.protocol``) calls this too.
        """
        started = time.perf_counter()
        answer = await _answer(
            path,
            self.fast_routes[path],
            body,
            content_type,
            gate=self.gate,
            authorization=authorization,
            client=client,
        )
        self.metrics.observe(path, answer.status, time.perf_counter() - started)
        return answer

    def refuse(self, path: str, exc: BodyTooLarge) -> tuple[int, bytes, bytes]:
        """``POST path`` (a key of ``fast_routes``) whose body is over ``max_body_bytes``: the 413 to send,
        in the route's error shape, counted in the request metrics. The uvicorn protocol calls this too."""
        answer = self.fast_routes[path].error(413, str(exc))
        self.metrics.observe(path, 413, 0.0)
        return answer

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, with each route's request and response schemas (``serving.openapi``)."""
        if self.openapi_schema is None:
            self.openapi_schema = document(super().openapi())
        return self.openapi_schema


def _error_handlers(app: FastAPI) -> None:
    async def bad_request(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, _BadRequest)
        return _error(exc.status, str(exc), exc.errors)

    async def too_large(_: Request, exc: Exception) -> Response:
        return _error(413, str(exc))

    async def invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _error(422, "invalid request", [dict(e) for e in exc.errors()])

    async def known(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, DriftloopError)
        return _error(exc.http_status, str(exc), headers=refusal_headers(exc))

    app.add_exception_handler(_BadRequest, bad_request)
    app.add_exception_handler(BodyTooLarge, too_large)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(DriftloopError, known)


class _Service:
    """The route handlers and what they share."""

    max_feedback_rows: int  # labels per POST /v1/feedback (create_app sets it)

    def __init__(
        self, holder: ModelHolder, capture: CaptureSink | None, metrics: ServiceMetrics, max_rows: int,
        batcher: MicroBatcher | None, *, gate: Gate | None,
    ) -> None:  # fmt: skip
        self.holder = holder
        self.gate = gate
        self.batcher = batcher
        self.monitor_gauges: Callable[[], bytes] | None = None
        self.capture = capture
        self.metrics = metrics
        self.max_rows = max_rows
        self.max_field_errors = 100  # a 422 lists the first this many bad fields, and counts them all
        self.ids = PredictionIds()  # tagged with a key of its own unless create_app is given keys
        self.feedback_counters = FeedbackCounters(metrics.registry)
        self.mlflow_version = mlflow_api.mlflow_version()
        self.params_ignored = False  # said once in the log, not per request

    async def admit(self, request: Request, role: str) -> Principal | None:
        """The principal a FastAPI route's request acts as (None when nothing is checked); raises the
        gate's 401/403/429 (rendered by the error handlers)."""
        if self.gate is None:
            return None
        client = request.client.host if request.client else None
        return await self.gate.admit(role, request.headers.get("authorization"), client)

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
        if params and not self.params_ignored:
            # As MLflow does for a model whose signature has no params schema: accepted, not used.
            self.params_ignored = True
            log.warning("params %s ignored: the served model takes no inference parameters (said once)",
                        sorted(params))  # fmt: skip
        # The media type is captured with the body only when it is not JSON, the default when reading back.
        context = ("/invocations", started, raw, None if media == JSON else media)
        out, _ = await self._score(rows, context)
        return mlflow_api.predictions([item["score"] for item in out])

    async def ping(self) -> Response:
        """MLflow's health check: 200 once a model is loaded (404 before, as MLflow's unhealthy answer)."""
        ready = self.holder.current is not None
        return Response(b"\n", status_code=200 if ready else 404, media_type="application/json")

    async def version(self) -> Response:
        """The version of MLflow whose scoring protocol this service speaks, as MLflow's server answers."""
        return Response(self.mlflow_version, media_type="application/json")

    async def feedback(self, request: Request) -> ORJSONResponse:
        """Ground truth for earlier predictions: ``{"labels": [{"prediction_id": …, "label": 0|1}, …]}``;
        all or nothing, every label checked (:mod:`driftloop.serving.feedback`)."""
        principal = await self.admit(request, "label")
        # The identity that sent the labels (its token's name) is their source; "api" with auth off.
        source = principal.name if principal is not None else "api"
        body = _json_body(await request.body())
        model = self.holder.current
        try:
            spec = model.labels if model is not None else None
            labels = check_feedback(body, ids=self.ids, spec=spec, max_rows=self.max_feedback_rows)
        except InvalidFeedback as exc:
            self.feedback_counters.refuse(exc.refused)
            raise _BadRequest(exc.status, str(exc), exc.errors) from None
        if self.capture is not None:
            now = datetime.now(UTC).isoformat()
            await self.capture.append_many_async(feedback_records(labels, source=source, ts=now))
        self.feedback_counters.accepted.inc(len(labels))
        return ORJSONResponse({"accepted": len(labels)})

    async def health(self) -> ORJSONResponse:
        return ORJSONResponse({"status": "alive"})

    async def ready(self) -> Response:
        model = self.holder.current
        if model is None:
            return _error(503, "no model loaded yet")
        return ORJSONResponse({"status": "ready", "model": {"name": model.name, "version": model.version}})

    async def model_info(self, request: Request) -> ORJSONResponse:
        await self.admit(request, "view")
        return ORJSONResponse(self.holder.describe())

    async def prometheus(self, request: Request) -> Response:
        await self.admit(request, "view")
        body, content_type = self.metrics.render()
        if self.monitor_gauges is not None:
            body += self.monitor_gauges()  # the last copy read in the background (serving.gauges)
        return Response(body, media_type=content_type)

    async def _capture_rejection(
        self, model_name: str, endpoint: str, rows: int, errors: list[dict[str, Any]]
    ) -> None:
        """Record a refused request for the monitor's data-quality share; never turns a 422 into a 503."""
        if self.capture is None:
            return
        record = {"kind": "rejection", "ts": utc_now_iso(),
                  "model_name": model_name, "endpoint": endpoint, "rows": rows, "errors": errors}  # fmt: skip
        try:
            await self.capture.append_many_async([record], trusted=True)
        except DriftloopError as exc:
            log.warning("could not capture a refused request: %s", exc.headline)

    async def _score(self, rows: list[Any], context: _Context) -> _Answer:
        endpoint = context[0]
        if not rows:
            raise _BadRequest(422, "no rows to score")
        if len(rows) > self.max_rows:
            raise _BadRequest(
                413, f"{len(rows)} rows in one request; the limit is {self.max_rows} (serving.max_rows)"
            )
        model = self.holder.current
        if model is None:
            raise _BadRequest(503, "no model loaded yet (see GET /v1/model)")
        try:
            if len(context[2]) > _INLINE_BODY_BYTES:
                await run_in_threadpool(model.spec.validate, rows, self.max_field_errors)
            else:
                model.spec.validate(rows, self.max_field_errors)
        except InvalidInput as exc:
            self.metrics.invalid_fields.inc(exc.total)
            errors = [e.to_json() for e in exc.errors]
            await self._capture_rejection(model.name, endpoint, len(rows), errors)
            message = "invalid input"
            if exc.total > len(errors):
                message += (
                    f": {exc.total} invalid fields, the first {len(errors)} listed (serving.max_field_errors)"
                )
            raise _BadRequest(422, message, errors, exc.total) from None
        if self.batcher is not None:
            result: _Answer = await self.batcher.submit(rows, context)
            return result
        prediction = await run_in_threadpool(self.holder.predict, rows)
        results, durable = self.finish([(context, rows)], prediction)
        if durable is not None:
            await durable
        return results[0]

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
        counts = [len(rows) for _, rows in batch]
        answers: list[_Answer] = []
        offset = 0
        for count in counts:
            answers.append((items[offset : offset + count], answered))
            offset += count
        if fallback:
            self.metrics.fallbacks.inc(len(batch))
        capture = self.capture
        if capture is None:
            return answers, None
        clock = time.perf_counter()
        record: dict[str, Any] = {
            "kind": "request_batch", "ts": utc_now_iso(), "model_name": answered.name,
            "model_version": answered.version, "fallback": fallback, "threshold": answered.threshold,
            "ids": ids, "scores": scores, "rows": counts,
            "latency_ms": [(clock - started) * 1000 for (_, started, _, _), _ in batch],
            "endpoints": [endpoint for (endpoint, _, _, _), _ in batch],
            "bodies": [raw for (_, _, raw, _), _ in batch],
        }  # fmt: skip
        types = [media for (_, _, _, media), _ in batch]
        if any(types):  # a CSV or Parquet body: read back by its type (JSON when the list is absent)
            record["content_types"] = [media or JSON for media in types]
        if prediction.shadow is not None and prediction.shadow_scores is not None:
            record["shadow_version"] = prediction.shadow.version
            record["shadow_scores"] = prediction.shadow_scores.tolist()
        return answers, capture.append_nowait([record], trusted=True)
