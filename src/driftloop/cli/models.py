"""``driftloop models``: registered versions, their stage, metrics and lineage."""

from __future__ import annotations

import json

import typer
from rich import box
from rich.table import Column, Table

from driftloop.cli._state import state

app = typer.Typer(help="Model registry: versions, stages, metrics, lineage.", no_args_is_help=True)

_KEY_METRICS = ("roc_auc", "pr_auc", "f1", "rmse")


@app.command("list")
def list_(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="Registered model [registry.model_name]."),
) -> None:
    """A model's versions, newest first: stage, aliases, key metrics, created."""
    from driftloop.registry import Registry

    st = state(ctx)
    model = name or st.settings.registry.model_name
    versions = Registry(st.settings).versions(model)
    table = Table(
        Column("version", justify="right"), "stage", "aliases", *_KEY_METRICS[:3],
        Column("created", no_wrap=True),
        title=model, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
    )  # fmt: skip
    for v in versions:
        metrics = [v.tags.get(f"driftloop.metric.{k}", "-")[:6] for k in _KEY_METRICS[:3]]
        table.add_row(
            str(v.version),
            v.stage.value,
            ",".join(v.aliases) or "-",
            *metrics,
            f"{v.created_at:%Y-%m-%d %H:%M}",
        )
    st.out.print(table)


@app.command("show")
def show(
    ctx: typer.Context, ref: str = typer.Argument(..., metavar="NAME[/VERSION]", help="Default: latest.")
) -> None:
    """One version: stage, aliases, hold-out metrics, and lineage back to data, run and commit."""
    from driftloop.core.models import ModelRef
    from driftloop.registry import Registry
    from driftloop.tracking import Tracker

    st = state(ctx)
    parsed = ModelRef.parse(ref)
    registry = Registry(st.settings)
    v = (
        registry.get(parsed.name, parsed.version)
        if parsed.version is not None
        else registry.latest(parsed.name)
    )
    st.out.print(
        f"[bold]{v.name}/{v.version}[/]  stage {v.stage.value}  aliases {', '.join(v.aliases) or '-'}"
    )
    st.out.print(f"created   {v.created_at:%Y-%m-%d %H:%M:%S %Z}")
    st.out.print(f"source    {v.source}")
    if v.run_id is None:
        return
    run = Tracker(st.settings).get_run(v.run_id)
    metrics = {
        k.removeprefix("holdout_"): val for k, val in sorted(run.metrics.items()) if k.startswith("holdout_")
    }
    st.out.print("metrics   " + "  ".join(f"{k} {_number(val)}" for k, val in metrics.items()))
    tags = run.tags
    lineage = {
        "mlflow run": f"{run.run_id} ({run.status})",
        "feature version": tags.get("driftloop.feature_version", "-"),
        "pipeline run": tags.get("driftloop.pipeline_run", "-"),
        "data window": _window(tags.get("driftloop.data_window")),
        "dataset": tags.get("driftloop.dataset", "-"),
        "source file": tags.get("driftloop.source", "-"),
        "git commit": f"{tags.get('driftloop.git.commit', '-')} (dirty: {tags.get('driftloop.git.dirty', '-')})",  # noqa: E501
        "driftloop": tags.get("driftloop.version", "-"),
    }
    st.out.print("lineage")
    for key, value in lineage.items():
        if value != "-":
            st.out.print(f"  {key:<16}{value}")


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.4g}"


def _window(text: str | None) -> str:
    if not text:
        return "-"
    window = json.loads(text)
    if window.get("prefix"):
        return f"prefix {window['prefix']}"
    return f"{window.get('start') or '…'} → {window.get('end') or '…'} (labels as of {window.get('as_of')})"
