"""``driftloop features``: the versioned feature store."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich import box
from rich.table import Column, Table

from driftloop.cli._output import json_option, print_json
from driftloop.cli._state import state

app = typer.Typer(help="Feature store: DVC-versioned feature snapshots.", no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = json_option()) -> None:
    """Every feature version, newest first (lineage: driftloop features show VERSION)."""
    from driftloop.features import feature_store_for

    st = state(ctx)
    versions = feature_store_for(st.settings).list()
    if as_json:
        print_json(versions)
        return
    if not versions:
        st.out.print("no feature versions yet (create one: driftloop pipeline run --until features)")
        return
    table = Table(
        Column("version", no_wrap=True),
        Column("created", no_wrap=True),
        Column("rows", justify="right"),
        Column("window", no_wrap=True),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for v in versions:
        window = v.lineage.get("window", {})
        span = f"{window.get('start') or '…'} → {window.get('end') or '…'}"
        table.add_row(v.short, f"{v.created_at:%Y-%m-%d %H:%M}", f"{v.rows:,}", span)
    st.out.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    version: str = typer.Argument(..., metavar="VERSION", help="Version id or prefix."),
    as_json: bool = json_option(),
) -> None:
    """A version's size, columns and lineage (raw partitions, validation, pipeline run)."""
    from driftloop.features import feature_store_for

    st = state(ctx)
    v = feature_store_for(st.settings).get(version)
    if as_json:
        print_json(v)
        return
    st.out.print(f"version  [bold]{v.id}[/]")
    st.out.print(f"created  {v.created_at:%Y-%m-%d %H:%M:%S %Z}")
    st.out.print(f"rows     {v.rows:,} ({_size(v.size)})")
    st.out.print(f"columns  {', '.join(v.columns)}")
    st.out.print("lineage")
    typer.echo(json.dumps(v.lineage, indent=2, sort_keys=True))


@app.command("pull")
def pull(
    ctx: typer.Context,
    version: str = typer.Argument(..., metavar="VERSION", help="Version id or prefix."),
    out: Path | None = typer.Option(
        None, "--out", help="Where to write the CSV (default: ./features-<id>.csv)."
    ),
) -> None:
    """Fetch a version's CSV through DVC; the bytes are exactly those that were versioned."""
    from driftloop.features import feature_store_for

    st = state(ctx)
    store = feature_store_for(st.settings)
    full = store.resolve(version)
    target = out or Path(f"features-{full[:12]}.csv")
    store.pull(full, target)
    st.out.print(f"pulled {full[:12]} → {target}")


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover
