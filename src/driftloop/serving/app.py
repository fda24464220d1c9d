"""The prediction service: a FastAPI app over a :class:`ModelHolder` and a capture sink.

Contract (docs/contract.md, docs/serving.md): ``POST /v1/predict``, ``POST /invocations`` (MLflow's
scoring protocol, with MLflow's ``GET /ping`` and ``GET /version``), ``POST /v1/feedback``,
``GET /health``, ``GET /ready``, ``GET /v1/model``, ``GET /metrics``; OpenAPI at ``/docs``. Bad input is
a 422 naming each bad field (on the MLflow routes MLflow's 400, naming them too), never a 500. A
prediction is acknowledged (the response sent) only after its capture record is durable.

Every request takes one path: ``ObservedRequests`` (metrics, body limit), FastAPI's router, then the
route. The two scoring routes are plain ASGI endpoints (``ScoringRoute``, decision 0047) that read and
answer bytes; the others are ordinary FastAPI routes (``ServiceRoutes``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.routing import Route

from driftloop import __version__
from driftloop.errors import DriftloopError
from driftloop.serving import mlflow_api
from driftloop.serving.access import refusal_headers
from driftloop.serving.limits import BodyTooLarge
from driftloop.serving.metrics import ServiceMetrics
from driftloop.serving.observed import ObservedRequests
from driftloop.serving.openapi import document, mount_docs
from driftloop.serving.responses import BadRequest, ORJSONResponse, driftloop_error, error_response
from driftloop.serving.routes import ServiceRoutes, registry_event
from driftloop.serving.scoring import CaptureSink, Scorer
from driftloop.serving.scoring_route import ScoringRoute
from driftloop.serving.stamps import PredictionIds

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    from fastapi.responses import Response

    from driftloop.auth import Gate
    from driftloop.serving.batching import MicroBatcher
    from driftloop.serving.model import ModelHolder
    from driftloop.serving.stamps import IdKeys

__all__ = ["CaptureSink", "create_app"]


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
    metrics_dir: Path | None = None,
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
    recognise, at most ``max_feedback_rows`` per request. With ``metrics_dir`` (``serve --workers N``),
    ``GET /metrics`` merges every worker's metrics from that directory (``serving.worker_metrics``).
    """
    metrics = ServiceMetrics(holder, capture, multiprocess_dir=metrics_dir)
    app = FastAPI(
        title="driftloop prediction service",
        version=__version__,
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(ObservedRequests, metrics=metrics, max_body_bytes=max_body_bytes)
    mount_docs(app, app.title)  # Swagger UI and ReDoc from the package's own files: no CDN
    _openapi_from_routes(app, holder, gate)
    _error_handlers(app)
    app.state.holder = holder
    app.state.metrics = metrics

    ids = PredictionIds(id_keys) if id_keys is not None else PredictionIds()
    scorer = Scorer(
        holder,
        capture,
        metrics,
        batcher=batcher,
        ids=ids,
        max_rows=max_rows,
        max_field_errors=max_field_errors,
    )
    if batcher is not None:
        batcher.on_batch = metrics.observe_batch
        batcher.finish = scorer.finish
    # Each scoring route renders its errors its own way: driftloop's {"error", "detail"}, or MLflow's
    # error body on /invocations. Their OpenAPI entries come from serving.openapi.
    predict = ScoringRoute(scorer.predict, driftloop_error, "predict", gate)
    invocations = ScoringRoute(scorer.invocations, mlflow_api.error, "predict", gate)
    app.router.routes += [
        Route("/v1/predict", predict, methods=["POST"], name="predict"),
        Route("/invocations", invocations, methods=["POST"], name="invocations"),
    ]

    routes = ServiceRoutes(
        holder,
        capture,
        metrics,
        gate=gate,
        ids=ids,
        max_feedback_rows=max_feedback_rows,
        monitor_gauges=monitor_gauges,
    )
    add = app.add_api_route
    add("/ping", routes.ping, methods=["GET"], summary="MLflow's health check")
    add("/version", routes.version, methods=["GET"], summary="MLflow's version route")
    add("/v1/feedback", routes.feedback, methods=["POST"], summary="Ground truth by prediction id")
    add("/health", routes.health, methods=["GET"], summary="Alive")
    add("/ready", routes.ready, methods=["GET"], summary="A model is loaded")
    add("/v1/model", routes.model_info, methods=["GET"], summary="What is served")
    add("/metrics", routes.prometheus, methods=["GET"], summary="Prometheus metrics")
    if on_registry_event is not None:
        webhook = registry_event(on_registry_event, webhook_secret, gate)
        add("/v1/registry-events", webhook, methods=["POST"], summary="MLflow registry webhook")
    return app


def _openapi_from_routes(app: FastAPI, holder: ModelHolder, gate: Gate | None) -> None:
    """``app.openapi()``: FastAPI's document completed by ``serving.openapi`` (schemas, scoring routes,
    the served model's rows, the access rules), made again only when the served version changes."""
    make = app.openapi
    limited = gate is not None and gate.limiter is not None
    auth = gate is not None and gate.auth
    made_for: tuple[str, int] | None = None  # the version the cached document describes

    def openapi() -> dict[str, Any]:
        nonlocal made_for
        model = holder.current  # one read: a swap meanwhile is picked up by the next request
        served = (model.name, model.version) if model is not None else None
        if app.openapi_schema is None or served != made_for:
            app.openapi_schema = None  # FastAPI's own method returns the cached one when set
            app.openapi_schema = document(make(), model=model, auth=auth, limited=limited)
            made_for = served
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it


def _error_handlers(app: FastAPI) -> None:
    async def bad_request(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, BadRequest)
        return error_response(exc.status, str(exc), exc.errors)

    async def too_large(_: Request, exc: Exception) -> Response:
        return error_response(413, str(exc))

    async def invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, "invalid request", [dict(e) for e in exc.errors()])

    async def known(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, DriftloopError)
        return error_response(exc.http_status, str(exc), headers=refusal_headers(exc))

    app.add_exception_handler(BadRequest, bad_request)
    app.add_exception_handler(BodyTooLarge, too_large)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(DriftloopError, known)
