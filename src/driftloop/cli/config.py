"""``driftloop config``: the effective configuration."""

from __future__ import annotations

import json
from typing import Any

import typer

from driftloop.cli._state import state
from driftloop.settings import masked_dump

app = typer.Typer(help="Configuration: show what driftloop will use.", no_args_is_help=True)


@app.command("show")
def show(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of TOML."),
) -> None:
    """Print the effective configuration (file + environment + defaults), secrets masked."""
    st = state(ctx)
    settings = st.settings
    data = masked_dump(settings)
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    source = str(settings.config_file) if settings.config_file else "none (defaults and environment)"
    typer.echo(f"# configuration file: {source}")
    typer.echo(to_toml(data))


def to_toml(data: dict[str, Any]) -> str:
    """Render nested plain data as TOML; ``None`` values are shown as comments (TOML has no null)."""
    lines: list[str] = []
    _emit(data, [], lines)
    return "\n".join(lines).strip()


def _emit(table: dict[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if path and scalars:
        lines.append(f"\n[{'.'.join(path)}]")
    for key, value in scalars.items():
        lines.append(f"# {key} = (unset)" if value is None else f"{key} = {_value(value)}")
    for key, value in tables.items():
        _emit(value, [*path, key], lines)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value))
