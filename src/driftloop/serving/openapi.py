"""What the service's OpenAPI document (``/openapi.json``, ``/docs``, ``/redoc``) says of each route.

The scoring routes are plain ASGI endpoints that read and answer bytes (decision 0047), so FastAPI
neither lists them nor could infer their schemas; giving them pydantic parameters would put pydantic
validation on every prediction. The models here only *describe*: :func:`document` adds the scoring
operations and writes each route's responses, by status, and request body into the document FastAPI
generates, with the models among its components. Nothing here runs per request.

Swagger UI and ReDoc are served from the package's own files (``fastapi_offline``'s static copy of
``swagger-ui-dist`` 5 and ReDoc 2; Swagger UI 4, as the ``swagger-ui-bundle`` package ships it, cannot
render the OpenAPI 3.1 that FastAPI writes): ``/docs`` works with no network (decision 0039).
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from driftloop.serving.row_schema import row_schema

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    from driftloop.serving.model import LoadedModel

__all__ = ["STATIC", "Row", "document", "mount_docs"]

STATIC = "/static/docs"  # where the documentation pages' scripts and styles are served

Scalar = str | float | int | bool | None


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # the service ignores keys it does not read


class Row(_Open):
    """One row: field → value. With a model loaded, :func:`document` replaces this schema with the
    served model's own (``serving.row_schema``): its field names, types and bounds."""


class PredictRequest(_Open):
    """Rows to score: the raw fields of the served model (``GET /v1/model`` lists them as ``inputs``)."""

    instances: list[Row] = Field(
        description="One object per row: field → value. An unknown field, a missing or malformed value "
        "is a 422 naming it; more than serving.max_rows rows is a 413."
    )


class ModelRef(BaseModel):
    name: str
    version: int


class Prediction(BaseModel):
    id: str = Field(description="The prediction's id: give it to POST /v1/feedback with the truth.")
    score: float
    fallback: bool = Field(description="Answered by the previous version because the current one failed.")
    label: Literal[0, 1] | None = Field(
        default=None, description="score ≥ the model's threshold, when it has one"
    )


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[Prediction]


class FieldProblem(BaseModel):
    loc: list[str | int] = Field(description='["instances" or "labels", row, field]')
    type: str = Field(description="missing | type | range | category | unknown")
    msg: str


class ErrorBody(BaseModel):
    """A refused request: what was wrong, and for invalid rows each bad field."""

    error: str
    detail: list[FieldProblem] | None = Field(default=None, description="The first serving.max_field_errors")
    invalid_fields: int | None = Field(default=None, description="All of them, when detail lists only some")


class DataframeSplit(BaseModel):
    columns: list[str]
    data: list[list[Scalar]]
    index: list[Scalar] | None = None


class InvocationsRequest(_Open):
    """MLflow's scoring protocol: exactly one of the four inputs, and optionally ``params`` (accepted,
    unused: the served model takes none)."""

    dataframe_split: DataframeSplit | None = None
    dataframe_records: list[Row] | None = None
    instances: list[Row] | dict[str, Scalar | list[Scalar]] | None = None
    inputs: list[Row] | dict[str, Scalar | list[Scalar]] | None = None
    params: dict[str, Any] | None = None


class InvocationsResponse(BaseModel):
    predictions: list[float]


class MlflowError(BaseModel):
    """MLflow's error body (``mlflow models serve`` answers the same)."""

    error_code: str
    message: str
    sqlstate: str | None = None
    error_class: str | None = None
    detail: list[FieldProblem] | None = None
    invalid_fields: int | None = None


class Label(_Open):
    prediction_id: str
    label: float


class FeedbackRequest(_Open):
    labels: list[Label]


class FeedbackResponse(BaseModel):
    accepted: int


class Status(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    model: ModelRef


class Served(BaseModel):
    name: str
    version: int
    run_id: str
    loaded_at: str
    inputs: list[str]
    threshold: float | None
    engine: str
    engine_note: str | None


class ModelInfo(BaseModel):
    current: Served | None
    fallback: Served | None
    shadow: Served | None
    swaps: int
    shadow_failures: int
    load_failures: int
    last_error: str | None
    last_error_at: str | None


_REF = "#/components/schemas/{model}"


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}}
    return {"description": description, "content": content}


def _text(description: str, media: str = "text/plain") -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": {"type": "string"}}}}


def _body(model: type[BaseModel], *media: str) -> dict[str, Any]:
    content = _json(model, "")["content"] | {
        m: {"schema": {"type": "string", "format": "binary"}} for m in media
    }
    return {"required": True, "content": content}


_TOO_LARGE = "The body is over serving.max_body_bytes, or has more rows than serving.max_rows"
_UNAVAILABLE = "No model loaded yet, the model and its fallback failed, or the capture buffer is full"
_ERRORS = {"413": _json(ErrorBody, _TOO_LARGE), "503": _json(ErrorBody, _UNAVAILABLE)}
_MLFLOW_ERRORS = {
    "400": _json(MlflowError, "Malformed body or invalid fields (MLflow's BAD_REQUEST)"),
    "413": _json(MlflowError, _TOO_LARGE),
    "415": _text("Not JSON, CSV or Parquet, or not UTF-8: MLflow's plain-text answer"),
    "503": _json(MlflowError, _UNAVAILABLE),
}
# MLflow answers /ping and /version with application/json bodies that are not JSON ("\n", "3.17.2"), and
# so does the service (decision 0034): the content type is declared, a schema would be a lie.
_MLFLOW_TEXT: dict[str, Any] = {"content": {"application/json": {}}}

# (path, method) → its responses by status, and its request body.
_ROUTES: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any] | None]] = {
    ("/v1/predict", "post"): (
        {
            "200": _json(PredictResponse, "One prediction per row"),
            "422": _json(ErrorBody, "Malformed body, or invalid fields (each named)"),
            **_ERRORS,
        },
        _body(PredictRequest),
    ),
    ("/invocations", "post"): (
        {"200": _json(InvocationsResponse, "One score per row"), **_MLFLOW_ERRORS},
        _body(InvocationsRequest, "text/csv", "application/vnd.apache.parquet"),
    ),
    ("/v1/feedback", "post"): (
        {
            "200": _json(FeedbackResponse, "Labels accepted"),
            "422": _json(ErrorBody, "Malformed body or labels"),
            **_ERRORS,
        },
        _body(FeedbackRequest),
    ),
    ("/ping", "get"): (
        {
            "200": {"description": "A model is loaded", **_MLFLOW_TEXT},
            "404": {"description": "No model loaded yet", **_MLFLOW_TEXT},
        },
        None,
    ),
    ("/version", "get"): ({"200": {"description": "The MLflow version spoken", **_MLFLOW_TEXT}}, None),
    ("/health", "get"): ({"200": _json(Status, "The process answers")}, None),
    ("/ready", "get"): (
        {"200": _json(Ready, "A model is loaded"), "503": _json(ErrorBody, "No model yet")},
        None,
    ),
    ("/v1/model", "get"): ({"200": _json(ModelInfo, "The versions served")}, None),
    ("/metrics", "get"): ({"200": _text("Prometheus text exposition")}, None),
    ("/v1/registry-events", "post"): (
        {
            "202": _json(Status, "The registry alias is checked now"),
            "401": _json(ErrorBody, "Bad or missing signature"),
            "413": _json(ErrorBody, _TOO_LARGE),
        },
        None,
    ),
}
# The scoring routes' operations, which FastAPI does not generate (module docstring).
_SCORING: dict[str, dict[str, Any]] = {
    "/v1/predict": {
        "summary": "Score raw rows",
        "description": '``{"instances": [{field: value, …}, …]}`` → one prediction (id, score, label) '
        "per instance.",
        "operationId": "predict_v1_predict_post",
    },
    "/invocations": {
        "summary": "MLflow scoring protocol",
        "description": "MLflow's scoring protocol: a JSON body (dataframe_split, dataframe_records, "
        'instances or inputs, and optional params), CSV or Parquet → ``{"predictions": [score, …]}``.',
        "operationId": "invocations_invocations_post",
    },
}
_MODELS = (
    Row,
    PredictRequest,
    PredictResponse,
    ErrorBody,
    InvocationsRequest,
    InvocationsResponse,
    MlflowError,
    FeedbackRequest,
    FeedbackResponse,
    Status,
    Ready,
    ModelInfo,
)


# The role each protected route needs (docs/auth.md); the others are open even with auth on.
_ROLES = {
    ("/v1/predict", "post"): "predict",
    ("/invocations", "post"): "predict",
    ("/v1/feedback", "post"): "label",
    ("/v1/model", "get"): "view",
    ("/metrics", "get"): "view",
    ("/v1/registry-events", "post"): "promote",
}
_BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "A driftloop token: `driftloop auth create NAME --role ROLE` (docs/auth.md)",
}


def document(
    schema: dict[str, Any], *, model: LoadedModel | None = None, auth: bool = False, limited: bool = False
) -> dict[str, Any]:
    """``schema`` (FastAPI's document) with the scoring routes' operations, each route's responses and
    request body, and the models they refer to among its components. With ``model``, a row is that
    model's (``Row``: its fields, types and bounds); with ``auth``, the protected routes declare the
    bearer token and their 401 and 403; ``limited`` (rate limits on), their 429."""
    _, defs = models_json_schema([(m, "validation") for m in _MODELS], ref_template=_REF)
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(defs.get("$defs", {}))
    scoring = {path: {"post": dict(operation)} for path, operation in _SCORING.items()}
    schema["paths"] = scoring | schema.get("paths", {})
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses, body = _ROUTES.get((path, method), (None, None))
            if responses is not None:
                operation["responses"] = dict(responses)  # a copy: _access adds to it
            if body is not None:
                operation["requestBody"] = body
    if model is not None:
        served = f"{model.name}/{model.version}"
        schemas["Row"] = row_schema(model.spec.transform, served)
        schema["info"]["x-driftloop-model"] = {"name": model.name, "version": model.version}
        schema["info"]["description"] = (
            f"Rows are described as {served} takes them, the version served when this document was "
            "made; the document follows the version the service serves."
        )
    _access(schema, auth=auth, limited=limited)
    return schema


def _access(schema: dict[str, Any], *, auth: bool, limited: bool) -> None:
    """The service's access rules in the document: a bearer token with the route's role, a rate limit."""
    if auth:
        schema["components"]["securitySchemes"] = {"bearer": _BEARER}
    for (path, method), role in _ROLES.items():
        operation = schema["paths"].get(path, {}).get(method)
        if operation is None:
            continue
        shape = MlflowError if path == "/invocations" else ErrorBody
        responses = operation["responses"]
        if auth:
            operation["security"] = [{"bearer": []}]
            needs = f"Needs a token with the `{role}` role."
            operation["description"] = f"{operation.get('description', '')}\n\n{needs}".strip()
            responses.setdefault("401", _json(shape, "No token, or one that is unknown, revoked or expired"))
            responses["403"] = _json(shape, f"The token lacks the {role} role")
        if limited:
            responses["429"] = _json(shape, "Over the rate limit: retry after Retry-After seconds")


def mount_docs(app: FastAPI, title: str) -> None:
    """``/docs`` (Swagger UI), its OAuth2 redirect and ``/redoc`` (ReDoc), served with no network: their
    scripts and styles come from ``STATIC``. ``app`` must be made with ``docs_url=None, redoc_url=None``."""
    static = resources.files("fastapi_offline") / "static"
    app.mount(STATIC, StaticFiles(directory=str(static)), name="docs-static")
    favicon = f"{STATIC}/favicon.png"
    openapi_url = app.openapi_url or "/openapi.json"
    redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=redirect,
            swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC}/swagger-ui.css",
            swagger_favicon_url=favicon,
            swagger_ui_parameters={"validatorUrl": None},
        )

    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{STATIC}/redoc.standalone.js",
            redoc_favicon_url=favicon,
            with_google_fonts=False,
        )

    app.add_api_route("/docs", swagger, methods=["GET"], include_in_schema=False)
    app.add_api_route(redirect, oauth2_redirect, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
