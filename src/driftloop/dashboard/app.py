"""The dashboard's web app: read-only pages and their JSON, behind the service's auth when auth is on.

Only ``GET`` (and ``HEAD``) exists: any other method is a 405 JSON answer, so the dashboard has no way to
change anything. With ``auth.enabled`` every route but ``/health`` needs a token with the ``view`` role
(every role implies it), checked by the same :class:`~driftloop.auth.Gate` the prediction service uses:
``Authorization: Bearer <token>`` from scripts, or HTTP Basic with the token as password from a browser
(the 401 challenges for Basic, so a browser asks once and resends it). The traffic page forwards the
caller's token to the service's ``/metrics``. Errors are JSON ``{"error", "detail"}`` with a 4xx status
(503 when the metadata database is down).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import importlib.resources
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from driftloop.auth import gate_for
from driftloop.dashboard.html import PAGES, frame
from driftloop.dashboard.pages import Views
from driftloop.errors import ConfigError, DriftloopError, UsageError
from driftloop.registry import Registry
from driftloop.storage import store_for
from driftloop.storage.metadata import open_metadata

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from driftloop.auth import Gate
    from driftloop.settings import Settings

__all__ = ["build_app", "service_url_for"]

_READ_METHODS = ("GET", "HEAD")
_OPEN_PATHS = ("/health",)
_CHALLENGE = 'Basic realm="driftloop dashboard", charset="UTF-8"'
_MAX_MODEL_NAME = 256
_SECURITY_HEADERS = {
    # Scripts only from the app itself (plotly.min.js and dashboard.js); Plotly sets inline styles.
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
_STATIC = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


def service_url_for(settings: Settings) -> str:
    """Where the prediction service of ``settings`` answers (a wildcard bind is reached on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
        settings.serving.host, settings.serving.host
    )
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{host}:{settings.serving.port}"


def build_app(settings: Settings, *, service_url: str | None = None) -> FastAPI:
    """The dashboard over ``settings``' platform, reading the service at ``service_url`` (default
    :func:`service_url_for`). Opens the metadata database now (:class:`MetadataError` when it cannot),
    closed when the app shuts down."""
    db = open_metadata(settings.database_url, echo=settings.database.echo)
    try:
        views = Views(
            settings, db, Registry(settings), store_for(settings), service_url or service_url_for(settings)
        )
        gate = gate_for(settings)
        assets = _assets()
    except BaseException:
        db.dispose()
        raise

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            db.dispose()

    app = FastAPI(
        title="driftloop dashboard", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.middleware("http")(_guard(gate))
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(DriftloopError, _driftloop_error)  # type: ignore[arg-type]

    @app.get("/health")
    def health() -> Response:
        return _json({"status": "ok"})

    @app.get("/")
    def index(request: Request) -> Response:
        return RedirectResponse(f"/models?{request.url.query}" if request.url.query else "/models", 302)

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in assets:
            raise HTTPException(404, f"no static file {name!r}")
        body, media_type = assets[name]
        return Response(body, media_type=media_type, headers={"cache-control": "public, max-age=3600"})

    @app.get("/api/{name}")
    def api(name: str, request: Request) -> Response:
        model = _model(request, settings)
        page = views.render(_page_name(name), model, _forwarded(request))
        return _json({"page": name, "model": model, **page.data})

    for path in PAGES:
        app.add_api_route(path, _html_page(views, settings, path.strip("/")), methods=["GET"])
    return app


def _html_page(views: Views, settings: Settings, name: str) -> Callable[[Request], Response]:
    """The handler of page ``name``: its only parameter is the request (a default argument would be
    a query parameter to FastAPI)."""

    def html_page(request: Request) -> Response:
        model = _model(request, settings)
        page = views.render(name, model, _forwarded(request))
        who = getattr(request.state, "who", None)
        return HTMLResponse(frame(f"/{name}", model, page.title, page.body, who=who))

    return html_page


def _assets() -> dict[str, tuple[bytes, str]]:
    """The files the pages load: Plotly's own bundle from the ``plotly`` package (no CDN) and ours."""
    try:
        plotly = importlib.resources.files("plotly") / "package_data" / "plotly.min.js"
        found = {"plotly.min.js": (plotly.read_bytes(), "text/javascript; charset=utf-8")}
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ConfigError(
            "the dashboard draws its charts with the plotly package's plotly.min.js, which is missing "
            f"({exc}): pip install plotly"
        ) from None
    here = importlib.resources.files("driftloop.dashboard") / "static"
    for name, media_type in _STATIC.items():
        found[name] = ((here / name).read_bytes(), media_type)
    return found


def _guard(
    gate: Gate | None,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """The middleware every request passes: reads only, then the token (``view`` role) when auth is on."""

    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.method not in _READ_METHODS:
            response = _error(405, f"the dashboard is read-only: {request.method} is not allowed")
            response.headers["allow"] = ", ".join(_READ_METHODS)
            return _secured(response)
        if gate is not None and request.url.path not in _OPEN_PATHS:
            client = request.client.host if request.client else None
            try:
                principal = await gate.admit("view", bearer(request.headers.get("authorization")), client)
            except DriftloopError as exc:
                response = _error(exc.http_status, exc.headline)
                if exc.http_status == 401:
                    response.headers["www-authenticate"] = _CHALLENGE
                return _secured(response)
            if principal is not None:
                request.state.who = principal.name
                request.state.forward = bearer(request.headers.get("authorization"))
        return _secured(await call_next(request))

    return guard


def bearer(authorization: str | None) -> str | None:
    """``authorization`` as the gate reads it (``Bearer <token>``): a Bearer header passes unchanged; HTTP
    Basic carries the token as its password (or, with an empty password, as its user name)."""
    if not authorization or authorization[:6].lower() != "basic ":
        return authorization
    try:
        user, _, password = base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "Basic (malformed)"  # refused by the gate with its usual message
    return f"Bearer {password or user}"


def _forwarded(request: Request) -> str | None:
    """The credentials to send the service's ``/metrics`` on the caller's behalf (auth on only)."""
    return getattr(request.state, "forward", None)


def _model(request: Request, settings: Settings) -> str:
    model = request.query_params.get("model") or settings.registry.model_name
    if len(model) > _MAX_MODEL_NAME or any(ord(c) < 32 for c in model):
        raise UsageError("invalid ?model=: a registered model name, printable and at most 256 characters")
    return model


def _page_name(name: str) -> str:
    if f"/{name}" not in PAGES:
        raise HTTPException(
            404, f"no dashboard page {name!r}: one of {', '.join(p.strip('/') for p in PAGES)}"
        )
    return name


def _json(content: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS), status, media_type="application/json"
    )


def _error(status: int, message: str) -> Response:
    return _json({"error": message, "detail": None}, status)


def _secured(response: Response) -> Response:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return _error(exc.status_code, str(exc.detail))


async def _driftloop_error(request: Request, exc: DriftloopError) -> Response:
    return _error(exc.http_status, exc.headline)
