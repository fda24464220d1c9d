"""Building the effective configuration from the environment, the TOML file and the defaults."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError

from driftloop.errors import ConfigError
from driftloop.settings.root import ENV_PREFIX, NESTED, Settings

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["CONFIG_FILENAME", "TOKEN_ENV", "load_settings", "masked_dump"]

CONFIG_FILENAME = "driftloop.toml"
# The token the CLI and SDK act with: a short alias of DRIFTLOOP_AUTH__TOKEN, which wins over it.
TOKEN_ENV = "DRIFTLOOP_TOKEN"


def load_settings(config: Path | None = None, *, cwd: Path | None = None) -> Settings:
    """Build the effective configuration.

    ``config`` is an explicit file (it must exist); otherwise ``<cwd>/driftloop.toml`` is used when it
    exists. Raises :class:`ConfigError` for a missing/unparsable file, an unknown key or a bad value.
    """
    cwd = (cwd or Path.cwd()).resolve()
    path = _find_config(config, cwd)
    values: dict[str, Any] = _read_toml(path) if path else {}
    _reject_unknown_env_sections(os.environ)
    token = os.environ.get(TOKEN_ENV)
    if token and isinstance(values.get("auth", {}), dict):  # a non-table [auth] fails validation below
        values["auth"] = {**values.get("auth", {}), "token": token}
    try:
        settings = Settings(**values, config_file=path)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    base = path.parent if path else cwd
    return _resolve_paths(settings, base)


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The configuration as plain data with secrets and URL passwords masked, for display."""
    data = settings.model_dump(mode="json")
    data["database"]["url"] = _mask_url(settings.database_url)
    data["storage"]["root"] = settings.storage_root
    return data


def _find_config(config: Path | None, cwd: Path) -> Path | None:
    if config is not None:
        path = config if config.is_absolute() else cwd / config
        if not path.is_file():
            raise ConfigError(f"configuration file not found: {path}")
        return path.resolve()
    default = cwd / CONFIG_FILENAME
    return default if default.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse {path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _reject_unknown_env_sections(environ: Mapping[str, str]) -> None:
    # pydantic-settings silently ignores DRIFTLOOP_<NAME>__… when NAME is not a field; a typo there would
    # be invisible, so refuse it. Names without "__" (e.g. DRIFTLOOP_TEST_POSTGRES_URL) are not config.
    known = {name.upper() for name in Settings.model_fields if name != "config_file"}
    for key in environ:
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX) or NESTED not in upper:
            continue
        section = upper[len(ENV_PREFIX) :].split(NESTED, 1)[0]
        if section not in known:
            raise ConfigError(
                f"unknown configuration key in environment variable {key}: no section {section.lower()!r}"
            )


def _describe(exc: ValidationError, path: Path | None) -> str:
    problems = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        key = ".".join(loc)
        env = ENV_PREFIX + NESTED.join(loc).upper()
        what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].rstrip(".").lower()
        problems.append(f"{key} ({env}): {what}")
    where = f" in {path}" if path else ""
    return f"invalid configuration{where}: " + "; ".join(problems)


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    home = settings.home if settings.home.is_absolute() else base / settings.home
    root = settings.storage.root
    if root and "://" not in root and not Path(root).is_absolute():
        root = str(base / root)
    if root.startswith("file://"):
        root = root[len("file://") :]
    storage = settings.storage.model_copy(update={"root": root})
    wal_dir = settings.capture.wal_dir
    if wal_dir is not None and not wal_dir.is_absolute():
        wal_dir = (base / wal_dir).resolve()
    capture = settings.capture.model_copy(update={"wal_dir": wal_dir})
    return settings.model_copy(update={"home": home.resolve(), "storage": storage, "capture": capture})


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
