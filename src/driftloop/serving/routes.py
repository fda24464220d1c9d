"""The service's FastAPI routes besides scoring: feedback, health and readiness, MLflow's ``/ping`` and
``/version``, what is served, metrics, and the registry webhook. Errors are raised (``BadRequest``, a
``DriftloopError``) and rendered by the app's exception handlers (``serving.app``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fastapi import Request  # noqa: TC002 — FastAPI reads the handlers' annotations at runtime
from fastapi.responses import Response

from driftloop.core.requests import RequestFormatError, parse
from driftloop.serving import mlflow_api
from driftloop.serving.feedback import FeedbackCounters, InvalidFeedback, check_feedback, feedback_records
from driftloop.serving.responses import BadRequest, ORJSONResponse, error_response
from driftloop.serving.webhooks import verify

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from driftloop.auth import Gate, Principal
    from driftloop.serving.metrics import ServiceMetrics
    from driftloop.serving.model import ModelHolder
    from driftloop.serving.scoring import CaptureSink
    from driftloop.serving.stamps import PredictionIds

__all__ = ["ServiceRoutes", "registry_event"]

WEBHOOK_SIGNATURE = "X-MLflow-Signature"
WEBHOOK_DELIVERY = "X-MLflow-Delivery-Id"
WEBHOOK_TIMESTAMP = "X-MLflow-Timestamp"


async def admit(gate: Gate | None, request: Request, role: str) -> Principal | None:
    """The principal ``request`` acts as (None when ``gate`` is None: nothing is checked); raises the
    gate's 401/403/429."""
    if gate is None:
        return None
    client = request.client.host if request.client else None
    return await gate.admit(role, request.headers.get("authorization"), client)


class ServiceRoutes:
    """The handlers of the routes that read or report state, over ``holder``. ``POST /v1/feedback``
    takes labels for ids ``ids`` recognise, at most ``max_feedback_rows`` a request, into ``capture``;
    ``monitor_gauges`` returns the latest monitoring pass's Prometheus text for ``GET /metrics`` (it must
    not do I/O)."""

    def __init__(
        self,
        holder: ModelHolder,
        capture: CaptureSink | None,
        metrics: ServiceMetrics,
        *,
        gate: Gate | None,
        ids: PredictionIds,
        max_feedback_rows: int,
        monitor_gauges: Callable[[], bytes] | None,
    ) -> None:
        self.holder = holder
        self.capture = capture
        self.metrics = metrics
        self.gate = gate
        self.ids = ids
        self.max_feedback_rows = max_feedback_rows
        self.monitor_gauges = monitor_gauges
        self.feedback_counters = FeedbackCounters(metrics.registry)
        self.mlflow_version = mlflow_api.mlflow_version()

    async def feedback(self, request: Request) -> ORJSONResponse:
        """Ground truth for earlier predictions: ``{"labels": [{"prediction_id": …, "label": 0|1}, …]}``;
        all or nothing, every label checked (:mod:`driftloop.serving.feedback`)."""
        principal = await admit(self.gate, request, "label")
        # The identity that sent the labels (its token's name) is their source; "api" with auth off.
        source = principal.name if principal is not None else "api"
        try:
            body = parse(await request.body())
        except RequestFormatError as exc:
            raise BadRequest(422, str(exc)) from None
        model = self.holder.current
        try:
            spec = model.labels if model is not None else None
            labels = check_feedback(body, ids=self.ids, spec=spec, max_rows=self.max_feedback_rows)
        except InvalidFeedback as exc:
            self.feedback_counters.refuse(exc.refused)
            raise BadRequest(exc.status, str(exc), exc.errors) from None
        if self.capture is not None:
            now = datetime.now(UTC).isoformat()
            await self.capture.append_many_async(feedback_records(labels, source=source, ts=now))
        self.feedback_counters.accepted.inc(len(labels))
        return ORJSONResponse({"accepted": len(labels)})

    async def ping(self) -> Response:
        """MLflow's health check: 200 once a model is loaded (404 before, as MLflow's unhealthy answer)."""
        ready = self.holder.current is not None
        return Response(b"\n", status_code=200 if ready else 404, media_type="application/json")

    async def version(self) -> Response:
        """The version of MLflow whose scoring protocol this service speaks, as MLflow's server answers."""
        return Response(self.mlflow_version, media_type="application/json")

    async def health(self) -> ORJSONResponse:
        return ORJSONResponse({"status": "alive"})

    async def ready(self) -> Response:
        model = self.holder.current
        if model is None:
            return error_response(503, "no model loaded yet")
        return ORJSONResponse({"status": "ready", "model": {"name": model.name, "version": model.version}})

    async def model_info(self, request: Request) -> ORJSONResponse:
        await admit(self.gate, request, "view")
        return ORJSONResponse(self.holder.describe())

    async def prometheus(self, request: Request) -> Response:
        await admit(self.gate, request, "view")
        body, content_type = self.metrics.render()
        if self.monitor_gauges is not None:
            body += self.monitor_gauges()  # the last copy read in the background (serving.gauges)
        return Response(body, media_type=content_type)


def registry_event(
    wake: Callable[[], None], secret: str | None, gate: Gate | None
) -> Callable[[Request], Awaitable[ORJSONResponse]]:
    """``POST /v1/registry-events``: an MLflow registry webhook (signed with ``secret`` when given) that
    calls ``wake`` to check the alias now instead of at the next poll."""

    async def endpoint(request: Request) -> ORJSONResponse:
        """An MLflow registry webhook: check the alias now instead of at the next poll."""
        # With auth on, a delivery signed with the webhook secret needs no token (MLflow sends no
        # Authorization header); anything else needs a token with the promote role.
        signed = secret is not None and (
            WEBHOOK_SIGNATURE in request.headers or gate is None or not gate.auth
        )
        if not signed:
            await admit(gate, request, "promote")
        body = await request.body()
        if secret is not None and signed:
            verify(
                secret,
                body,
                signature=request.headers.get(WEBHOOK_SIGNATURE),
                delivery_id=request.headers.get(WEBHOOK_DELIVERY),
                timestamp=request.headers.get(WEBHOOK_TIMESTAMP),
            )
        wake()
        return ORJSONResponse({"status": "checking the registry"}, status_code=202)

    return endpoint
