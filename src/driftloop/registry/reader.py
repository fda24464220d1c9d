"""Read-only views of MLflow's registry for the read commands, without importing MLflow (decision 0073).

MLflow is the registry: every write goes through ``MlflowClient`` (:mod:`driftloop.registry.client`).
But a command that only reads (``models list``, ``models show``) and imports MLflow pays for it before
it prints anything: importing MLflow and setting up its store take seconds. These readers answer the
same two questions — a model's versions with their tags and aliases, a run's status, metrics and tags —
through what MLflow itself publishes:

- an ``http(s)`` tracking URI: MLflow's REST API (``/api/2.0/mlflow/…``), the protocol MLflow's own
  client speaks, with the tracking server's basic-auth login when one is configured;
- a database tracking URI (SQLite, PostgreSQL): ``SELECT``s on the registry's tables, only when the
  store's schema revision (``alembic_version``) is one this driftloop was tested against
  (:data:`TESTED_REVISIONS`; ``tests/registry/test_reader.py`` compares both readers with
  ``MlflowClient`` on a real store).

:func:`registry_reader` returns None for anything else (another scheme, an unknown schema revision):
the caller then uses the MLflow client, slower but always right.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from driftloop.core.logins import login_refused
from driftloop.core.models import ModelVersion, TrackedRun
from driftloop.errors import NotFoundError, StorageError, StorageUnavailableError

if TYPE_CHECKING:
    from driftloop.core.models import ModelRef
    from driftloop.settings import Settings

__all__ = ["TESTED_REVISIONS", "RegistryReader", "registry_reader", "resolve"]

# MLflow's schema head revisions whose registry and run tables the SQL reader was checked against.
TESTED_REVISIONS = frozenset({"dc11669786a5"})  # mlflow 3.17
_DEFAULT_WORKSPACE = "default"
_PAGE = 1000
_OF_MODEL = "WHERE name = :name AND workspace = :ws"


class RegistryReader(Protocol):
    """What the read commands need from the registry."""

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, newest first (:class:`NotFoundError` when it is not registered)."""
        ...

    def run(self, run_id: str) -> TrackedRun:
        """The run's status, params, metrics (latest values) and tags (:class:`NotFoundError`)."""
        ...


def registry_reader(settings: Settings) -> RegistryReader | None:
    """A reader that does not import MLflow for the configured tracking URI, or None (use the client)."""
    uri = settings.tracking_uri
    if uri.startswith(("http://", "https://")):
        t = settings.tracking
        login = (t.username, t.password.get_secret_value()) if t.username and t.password else None
        return RestReader(uri, login)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None  # connecting would create an empty file
    url = _sqlalchemy_url(uri)
    return SqlReader.if_tested(url) if url is not None else None


def resolve(reader: RegistryReader, ref: ModelRef) -> ModelVersion:
    """``NAME/VERSION`` as that version, ``NAME`` alone as its latest (as ``Registry.resolve``)."""
    versions = reader.versions(ref.name)
    if ref.version is None:
        if not versions:
            raise NotFoundError(f"registered model {ref.name!r} has no versions")
        return versions[0]
    for v in versions:
        if v.version == ref.version:
            return v
    raise NotFoundError(f"no model version {ref.name}/{ref.version} (see: driftloop models list {ref.name})")


def _sqlalchemy_url(uri: str) -> str | None:
    if uri.startswith("sqlite:///"):
        return uri
    for scheme in ("postgresql://", "postgres://"):
        if uri.startswith(scheme):  # MLflow's default driver is psycopg2; driftloop ships psycopg 3
            return "postgresql+psycopg://" + uri.removeprefix(scheme)
    return uri if uri.startswith("postgresql+psycopg://") else None


def _millis(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, UTC)


class SqlReader:
    """The registry's and runs' tables of a database-backed MLflow store, read with SQLAlchemy Core."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self._engine = sa.create_engine(url)

    @classmethod
    def if_tested(cls, url: str) -> SqlReader | None:
        """A reader when the store exists at a tested schema revision; None otherwise."""
        reader = cls(url)
        try:
            with reader._engine.connect() as conn:
                revision = conn.execute(reader._sa.text("SELECT version_num FROM alembic_version")).scalar()
        except reader._sa.exc.SQLAlchemyError:
            revision = None  # no store yet, or not MLflow's: the client says what is wrong
        if revision not in TESTED_REVISIONS:
            reader._engine.dispose()
            return None
        return reader

    def versions(self, name: str) -> list[ModelVersion]:
        text, where = self._sa.text, {"name": name, "ws": _DEFAULT_WORKSPACE}
        with self._engine.connect() as conn:
            known = conn.execute(
                text("SELECT 1 FROM registered_models WHERE name = :name AND workspace = :ws"), where
            ).first()
            if known is None:
                raise NotFoundError(f"no registered model {name!r}")
            rows = conn.execute(
                text(
                    "SELECT version, creation_time, description, source, run_id, status FROM model_versions"
                    " WHERE name = :name AND workspace = :ws AND current_stage != 'Deleted_Internal'"
                ),
                where,
            ).all()
            tags: dict[int, dict[str, str]] = {}
            for version, key, value in conn.execute(
                text(f"SELECT version, key, value FROM model_version_tags {_OF_MODEL}"),
                where,
            ):
                tags.setdefault(int(version), {})[key] = value
            aliases: dict[int, list[str]] = {}
            for alias, version in conn.execute(
                text(f"SELECT alias, version FROM registered_model_aliases {_OF_MODEL}"),
                where,
            ):
                aliases.setdefault(int(version), []).append(alias)
        out = [
            ModelVersion(
                name=name,
                version=int(r.version),
                run_id=r.run_id,
                source=r.source,
                status=r.status,
                created_at=_millis(r.creation_time),
                tags=tags.get(int(r.version), {}),
                aliases=tuple(sorted(aliases.get(int(r.version), ()))),
                description=r.description or "",
            )
            for r in rows
        ]
        return sorted(out, key=lambda v: v.version, reverse=True)

    def run(self, run_id: str) -> TrackedRun:
        text, where = self._sa.text, {"run": run_id}
        with self._engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT run_uuid, experiment_id, name, status, artifact_uri, start_time FROM runs"
                    " WHERE run_uuid = :run AND lifecycle_stage = 'active'"
                ),
                where,
            ).first()
            if row is None:
                raise NotFoundError(f"no tracked run {run_id!r}")
            metrics = {
                key: float("nan") if is_nan else float(value)
                for key, value, is_nan in conn.execute(
                    text("SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = :run"), where
                )
            }
            params = {
                k: v
                for k, v in conn.execute(text("SELECT key, value FROM params WHERE run_uuid = :run"), where)
            }
            tags = {
                str(k): str(v)
                for k, v in conn.execute(text("SELECT key, value FROM tags WHERE run_uuid = :run"), where)
            }
        return TrackedRun(
            run_id=row.run_uuid,
            experiment_id=str(row.experiment_id),
            name=row.name or "",
            status=row.status,
            artifact_uri=row.artifact_uri,
            start_time=_millis(row.start_time) if row.start_time else None,
            params=params,
            metrics=metrics,
            tags=tags,
        )


class RestReader:
    """MLflow's REST API (``/api/2.0/mlflow``) on a tracking server."""

    def __init__(self, uri: str, login: tuple[str, str] | None = None, *, timeout_s: float = 30.0) -> None:
        self._base = uri.rstrip("/") + "/api/2.0/mlflow/"
        self._headers = {"Accept": "application/json"}
        if login is not None:
            token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._uri = uri
        self._timeout_s = timeout_s

    def versions(self, name: str) -> list[ModelVersion]:
        action = f"list versions of {name}"
        model = self._get(
            "registered-models/get", {"name": name}, action, missing=f"no registered model {name!r}"
        )
        aliases: dict[int, list[str]] = {}
        for a in model["registered_model"].get("aliases") or ():
            aliases.setdefault(int(a["version"]), []).append(a["alias"])
        found: list[dict[str, Any]] = []
        token = None
        while True:
            query = {"filter": f"name = '{_quoted(name)}'", "max_results": str(_PAGE)}
            page = self._get(
                "model-versions/search", {**query, **({"page_token": token} if token else {})}, action
            )
            found += page.get("model_versions") or []
            token = page.get("next_page_token")
            if not token:
                break
        out = [
            ModelVersion(
                name=mv["name"],
                version=int(mv["version"]),
                run_id=mv.get("run_id"),
                source=mv.get("source", ""),
                status=mv.get("status", ""),
                created_at=_millis(mv["creation_timestamp"]),
                tags={t["key"]: t.get("value", "") for t in mv.get("tags") or ()},
                aliases=tuple(sorted(aliases.get(int(mv["version"]), ()))),
                description=mv.get("description") or "",
            )
            for mv in found
        ]
        return sorted(out, key=lambda v: v.version, reverse=True)

    def run(self, run_id: str) -> TrackedRun:
        missing = f"no tracked run {run_id!r} at {self._uri}"
        run = self._get("runs/get", {"run_id": run_id}, f"read run {run_id}", missing=missing)["run"]
        info, data = run["info"], run.get("data") or {}
        start = info.get("start_time")
        return TrackedRun(
            run_id=info["run_id"],
            experiment_id=str(info.get("experiment_id", "")),
            name=info.get("run_name") or "",
            status=info.get("status", ""),
            artifact_uri=info.get("artifact_uri", ""),
            start_time=_millis(start) if start else None,
            params={p["key"]: p.get("value", "") for p in data.get("params") or ()},
            metrics={m["key"]: float(m["value"]) for m in data.get("metrics") or ()},
            tags={t["key"]: t.get("value", "") for t in data.get("tags") or ()},
        )

    def _get(
        self, path: str, query: dict[str, str], action: str, *, missing: str | None = None
    ) -> dict[str, Any]:
        """GET one endpoint; errors worded as the MLflow client path words them (``cannot ACTION: …``)."""
        url = self._base + path + "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(url, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            if exc.code == 404 and missing is not None and "RESOURCE_DOES_NOT_EXIST" in body:
                raise NotFoundError(missing) from None
            said = login_refused(f"error code {exc.code}", self._uri)
            detail = said or f"MLflow at {self._uri} answered {exc.code}: {body.strip()[:200]}"
            raise StorageError(f"cannot {action}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            raise StorageUnavailableError(f"cannot {action}: MLflow at {self._uri} is unreachable") from None


def _quoted(name: str) -> str:
    return name.replace("'", "\\'")
