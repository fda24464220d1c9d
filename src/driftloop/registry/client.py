"""The registry adapter: MLflow model versions, their tags and aliases, as driftloop types.

Stages are never MLflow's deprecated stage API: the ``driftloop.stage`` version tag holds the stage and
the aliases ``staging`` / ``production`` point at the versions that hold them.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from driftloop.core.models import STAGE_TAG, ModelVersion, Stage
from driftloop.errors import NotFoundError, StorageError, StorageUnavailableError
from driftloop.registry.descriptions import model_description, version_description
from driftloop.tracking import configure_mlflow, login_refused

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from driftloop.core.models import ModelRef
    from driftloop.settings import Settings

__all__ = ["Registry"]


class Registry:
    """Registered models in the configured MLflow registry."""

    def __init__(self, settings: Settings) -> None:
        configure_mlflow(settings)
        self._uri = settings.tracking_uri
        self._client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)

    def register(self, model_uri: str, name: str, *, run_id: str, tags: Mapping[str, str]) -> ModelVersion:
        """A new version of ``name`` (created on first use), stage None, with ``tags``; waits until READY.

        One training run gives one version: when ``run_id`` already has a version of ``name`` (a step
        killed after MLflow registered it, then resumed), that version is returned, not a second one."""
        with self._errors(f"register {name}"):
            with contextlib.suppress(MlflowException):  # already exists
                self._client.create_registered_model(name)
            earlier = self._client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
            if earlier:
                return self.get(name, min(int(mv.version) for mv in earlier))
            all_tags = {STAGE_TAG: Stage.NONE.value, **tags}
            # MLflow 3 logged models (``models:/m-…``) must be named by id as well as by source.
            model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
            created = self._client.create_model_version(
                name, model_uri, run_id=run_id, tags=all_tags, model_id=model_id, await_creation_for=300
            )
        return self.get(name, int(created.version))

    def get(self, name: str, version: int) -> ModelVersion:
        try:
            mv = self._client.get_model_version(name, str(version))
        except MlflowException as exc:
            raise NotFoundError(
                f"no model version {name}/{version} (see: driftloop models list {name})"
            ) from exc
        return _version(mv)

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, newest first; :class:`NotFoundError` when the model does not exist."""
        with self._errors(f"list versions of {name}"):
            try:
                model = self._client.get_registered_model(name)
            except MlflowException as exc:
                if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
                    raise NotFoundError(f"no registered model {name!r}") from exc
                raise
            found = self._client.search_model_versions(f"name = '{name}'")
        # Searches do not fill in aliases; the registered model has the authoritative alias → version map.
        aliases: dict[int, list[str]] = {}
        for alias, number in (getattr(model, "aliases", None) or {}).items():
            aliases.setdefault(int(number), []).append(alias)
        versions = [_version(mv, aliases.get(int(mv.version))) for mv in found]
        return sorted(versions, key=lambda v: v.version, reverse=True)

    def resolve(self, ref: ModelRef) -> ModelVersion:
        """``NAME/VERSION`` as that version, ``NAME`` alone as its latest version."""
        return self.get(ref.name, ref.version) if ref.version is not None else self.latest(ref.name)

    def latest(self, name: str) -> ModelVersion:
        versions = self.versions(name)
        if not versions:
            raise NotFoundError(f"registered model {name!r} has no versions")
        return versions[0]

    def set_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        with self._errors(f"tag {name}/{version}"):
            for key, value in tags.items():
                self._client.set_model_version_tag(name, str(version), key, str(value))

    def by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` points at, or None when no version holds it."""
        try:
            mv = self._client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if "not found" in str(exc).lower() or "RESOURCE_DOES_NOT_EXIST" in str(exc):
                return None
            first = str(exc).splitlines()[0]
            raise StorageError(
                f"cannot read alias {alias!r} of {name}: {login_refused(first, self._uri) or first}"
            ) from exc
        return _version(mv)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version`` (moving it from any other version: MLflow keeps aliases unique)."""
        with self._errors(f"set alias {alias} on {name}/{version}"):
            self._client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        with self._errors(f"delete alias {alias} of {name}"), contextlib.suppress(MlflowException):
            self._client.delete_registered_model_alias(name, alias)

    def describe_stages(self, name: str) -> None:
        """Rewrite the stage blocks of ``name``'s description and of its staged versions' descriptions
        from its aliases and ``driftloop.stage`` tags (:mod:`driftloop.registry.descriptions`); only
        the texts that change are written. Idempotent: a repeat after a crash writes the same."""
        with self._errors(f"describe the stages of {name}"):
            model = self._client.get_registered_model(name)
            found = self._client.search_model_versions(f"name = '{name}'")
            aliases = {alias: int(v) for alias, v in (getattr(model, "aliases", None) or {}).items()}
            versions = [_version(mv) for mv in found]
            text = model_description(model.description or "", aliases, {v.version: v.stage for v in versions})
            if text != (model.description or ""):
                self._client.update_registered_model(name, description=text)
            for v in versions:
                held = [a for a, number in aliases.items() if number == v.version]
                line = version_description(v.description, v.stage, held)
                if line is not None and line != v.description:
                    self._client.update_model_version(name, str(v.version), description=line)

    def models(self) -> list[str]:
        with self._errors("list registered models"):
            return sorted(m.name for m in self._client.search_registered_models())

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except MlflowException as exc:
            message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "unknown error"
            if "Connection" in message or "Max retries" in message:
                raise StorageUnavailableError(
                    f"cannot {action}: MLflow at {self._uri} is unreachable"
                ) from exc
            raise StorageError(f"cannot {action}: {login_refused(message, self._uri) or message}") from exc


def _version(mv: Any, aliases: list[str] | None = None) -> ModelVersion:
    created = datetime.fromtimestamp(int(mv.creation_timestamp) / 1000, UTC)
    return ModelVersion(
        name=mv.name,
        version=int(mv.version),
        run_id=mv.run_id,
        source=mv.source,
        status=mv.status,
        created_at=created,
        tags=dict(mv.tags or {}),
        aliases=tuple(sorted(aliases if aliases is not None else (getattr(mv, "aliases", []) or []))),
        description=mv.description or "",
    )
