"""``driftloop config``: the effective configuration, as TOML that loads back or as JSON."""

from __future__ import annotations

import json
import re
from typing import Any

import typer

from driftloop.cli._output import print_json
from driftloop.cli._state import state
from driftloop.errors import UsageError
from driftloop.settings import masked_dump

app = typer.Typer(help="Configuration: show what driftloop will use.", no_args_is_help=True)

# What masked_dump puts where a secret was: pydantic's SecretStr mask, and a URL's password.
_MASK = "**********"
_MASKED_PASSWORD = ":***@"
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@app.command("show")
def show(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of TOML."),
    as_toml: bool = typer.Option(
        False, "--toml", help="Print TOML (the default) that loads back: driftloop --config FILE."
    ),
) -> None:
    """Print the effective configuration (file + environment + defaults), secrets masked.

    The TOML is a configuration file: saved and given back with ``--config`` it yields the same
    configuration, except masked secrets, which appear as comments (set them in the file or the
    environment).
    """
    if as_json and as_toml:
        raise UsageError("give --json or --toml, not both")
    st = state(ctx)
    settings = st.settings
    data = masked_dump(settings)
    if as_json:
        print_json(data)
        return
    source = str(settings.config_file) if settings.config_file else "none (defaults and environment)"
    typer.echo(f"# configuration file: {source}")
    typer.echo(to_toml(data))


def to_toml(data: dict[str, Any]) -> str:
    """Render nested plain data as TOML that ``tomllib`` reads back to the same data.

    ``None`` (TOML has no null) and masked secrets are written as comments, so loading the text back
    leaves them at their default (or at what the environment says) instead of a literal mask.
    """
    lines: list[str] = []
    _emit(data, [], lines)
    return "\n".join(lines).strip()


def _emit(table: dict[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    # An empty table still gets its header: `[policy.metric_floors]` alone means "no floors", which
    # differs from leaving the key out (the default floors).
    if path and (scalars or not tables):
        lines.append(f"\n[{'.'.join(_key(part) for part in path)}]")
    for key, value in scalars.items():
        if value is None:
            lines.append(f"# {_key(key)} = (unset)")
        elif _masked(value):
            lines.append(f"# {_key(key)} = {_value(value)}  (secret: masked, not written back)")
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in tables.items():
        _emit(value, [*path, key], lines)


def _masked(value: Any) -> bool:
    if isinstance(value, list):
        return any(_masked(v) for v in value)
    return isinstance(value, str) and (value == _MASK or _MASKED_PASSWORD in value)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # TOML spells the non-finite floats inf and nan, as repr does; 1e-05 is valid TOML as it is.
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):  # a table inside an array: an inline table
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None) + "}"
    # A JSON string is a TOML basic string (same escapes) as long as nothing outside the BMP is escaped
    # as a surrogate pair, which TOML refuses: ensure_ascii=False keeps such characters as they are.
    return json.dumps(str(value), ensure_ascii=False)
