"""``driftloop train``, ``reproduce`` and ``experiment``: local development on MLflow (seeds 1–3, 002)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from driftloop.cli._state import CliState, state
from driftloop.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from driftloop.pipeline.datasets import CsvReport
    from driftloop.pipeline.modeling import TrainingData
    from driftloop.settings import Settings


def _columns(text: str | None) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()] if text else []


def _with_overrides(settings: Settings, overrides: list[str], task: str | None) -> Settings:
    from driftloop.pipeline.experiments import configurations, parse_grid

    grid = parse_grid(overrides)
    if task:
        grid["task"] = [task]
    if not grid:
        return settings
    cfg = configurations(settings.training, grid)[0][1]
    return settings.model_copy(update={"training": cfg})


def _load_data(
    st: CliState,
    settings: Settings,
    workdir: Path,
    *,
    data: Path | None,
    features: str | None,
    target: str | None,
    categorical: str | None,
    numeric: str | None,
    timestamp: str | None,
    id_column: str | None,
) -> TrainingData:
    from driftloop.pipeline.datasets import from_csv, from_feature_version

    if (data is None) == (features is None):
        raise UsageError("give exactly one of --data FILE.csv (with --target) or --features VERSION")
    if features is not None:
        return from_feature_version(settings, features, workdir)
    if not target:
        raise UsageError("--data needs --target COLUMN (the column to predict)")
    assert data is not None
    loaded, report = from_csv(
        settings,
        data,
        target,
        workdir,
        categorical=_columns(categorical),
        numeric=_columns(numeric),
        timestamp=timestamp,
        id_column=id_column,
    )
    _print_report(st, report)
    return loaded


def _print_report(st: CliState, report: CsvReport) -> None:
    """What train made of the CSV: the inputs it used, what it dropped and why, the rows it skipped."""
    inputs = ", ".join(f"{name} ({kind})" for name, kind in report.inputs)
    st.err.print(f"inputs: {inputs}", highlight=False, markup=False)
    for dropped in report.dropped:
        st.err.print(f"not an input: {dropped.name} — {dropped.reason}", highlight=False, markup=False)
    st.err.print(f"rows: {report.rows_read:,} read, {report.trained_rows:,} used", highlight=False)
    if report.unlabelled:
        st.err.print(f"[yellow]{report.unlabelled:,} rows have no target value: skipped[/]")
    if report.malformed:
        st.err.print(
            f"[yellow]{report.malformed:,} lines are not CSV rows (not text, wrong number of "
            "fields): set aside[/]",
            highlight=False,
        )
    if report.rejected:
        reasons = ", ".join(f"{k} ({v})" for k, v in list(report.reasons.items())[:3])
        st.err.print(f"[yellow]{report.rejected:,} rows rejected: {reasons}[/]", highlight=False, markup=True)
    if report.quarantine:
        st.err.print(f"quarantine (with reasons): {report.quarantine}", highlight=False, markup=False)
    st.err.print(
        f"feature version {report.feature_version[:12]} (driftloop features show "
        f"{report.feature_version[:12]})",
        highlight=False,
    )


def _epochs(console: Console, total: int) -> tuple[Progress, Any]:
    progress = Progress(
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs  {task.fields[note]}"),
        console=console,
        transient=True,
    )
    task = progress.add_task("train", total=total, note="")

    def on_epoch(record: Any) -> None:
        note = f"val_score {record.val_score:.4f}"
        progress.update(task, advance=1, note=note)
        if not console.is_terminal:  # no live bar off a terminal (a log, CI): one line per epoch
            console.print(f"    train: epochs {record.epoch}/{total}  {note}", markup=False, highlight=False)

    return progress, on_epoch


def train(
    ctx: typer.Context,
    data: Path | None = typer.Option(
        None, "--data", help="Any tabular CSV (local development).", dir_okay=False
    ),
    target: str | None = typer.Option(None, "--target", help="The column to predict (with --data)."),
    features: str | None = typer.Option(None, "--features", help="Train on a feature version instead."),
    categorical: str | None = typer.Option(
        None, "--categorical", help="Columns to treat as categories: a,b."
    ),
    numeric: str | None = typer.Option(None, "--numeric", help="Columns to treat as numbers: a,b."),
    timestamp: str | None = typer.Option(
        None, "--timestamp", help="Time column: the hold-out is the latest rows."
    ),
    id_column: str | None = typer.Option(None, "--id", help="Row id column (not a model input)."),
    task: str | None = typer.Option(None, "--task", help="classification or regression \\[training.task]."),
    override: list[str] = typer.Option(
        [], "--set", help="Training setting for this run: KEY=VALUE (repeat)."
    ),
    register: bool = typer.Option(
        False, "--register", help="Register the model as a new version (stage None)."
    ),
    name: str | None = typer.Option(None, "--name", help="Registered model name \\[registry.model_name]."),
) -> None:
    """Train a PyTorch model and track it in MLflow: params, epoch metrics, .pth, model, plots, profile."""
    from driftloop.auth import run_origin
    from driftloop.pipeline import modeling
    from driftloop.registry import Registry
    from driftloop.tracking import Tracker
    from driftloop.training.model import check_factory

    st = state(ctx)
    settings = _with_overrides(st.settings, override, task)
    check_factory(settings.training)  # a configuration error is one line, before any data is read
    tracker = Tracker(settings, origin=run_origin(settings, "driftloop train"))
    with tempfile.TemporaryDirectory() as tmp:
        loaded = _load_data(
            st,
            settings,
            Path(tmp),
            data=data,
            features=features,
            target=target,
            categorical=categorical,
            numeric=numeric,
            timestamp=timestamp,
            id_column=id_column,
        )
        progress, on_epoch = _epochs(st.err, settings.training.max_epochs)
        with progress:
            outcome = modeling.train_and_log(settings, tracker, loaded, run_name="train", on_epoch=on_epoch)
        evaluation = modeling.evaluate_and_log(settings, tracker, loaded, outcome)
    st.out.print(
        f"trained {len(loaded.table):,} rows, {len(loaded.feature_names)} features: "
        f"{outcome.epochs} epochs (best {outcome.best_epoch})"
    )
    _print_metrics(st.out, evaluation["overall"])
    st.out.print(f"MLflow run [bold]{outcome.run_id}[/] at {tracker.tracking_uri}")
    if register:
        model_name = name or settings.registry.model_name
        version = modeling.register_version(Registry(settings), model_name, outcome, loaded.tags, evaluation)
        st.out.print(f"registered [bold]{version.name}/{version.version}[/] (stage None)")


def reproduce(
    ctx: typer.Context,
    model: str = typer.Argument(..., metavar="NAME/VERSION", help="The version to retrain."),
) -> None:
    """Retrain a registered version from its recorded feature version, parameters and seed; print deltas."""
    from driftloop.auth import run_origin
    from driftloop.core.models import ModelRef
    from driftloop.pipeline.experiments import reproduce as run_reproduce
    from driftloop.registry import Registry
    from driftloop.tracking import Tracker

    st = state(ctx)
    ref = ModelRef.parse(model)
    tracker = Tracker(st.settings, origin=run_origin(st.settings, f"driftloop reproduce {ref}"))
    with tempfile.TemporaryDirectory() as tmp:
        result = run_reproduce(st.settings, tracker, Registry(st.settings), ref, Path(tmp))
    table = Table(
        "metric", "original", "reproduced", "delta", title=f"reproduce {result.ref}", title_justify="left"
    )
    for key, delta in sorted(result.deltas.items()):
        table.add_row(key, f"{result.original[key]:.6g}", f"{result.reproduced[key]:.6g}", f"{delta:+.2e}")
    st.out.print(table)
    worst = max((abs(d) for d in result.deltas.values()), default=0.0)
    st.out.print(
        f"largest |delta| {worst:.2e} — {'reproduced' if worst < 1e-6 else 'differs'}; run {result.run_id}"
    )


def experiment(
    ctx: typer.Context,
    grid: list[str] = typer.Option(..., "--grid", help="KEY=V1,V2 (repeat); tuples as 64x32; params.NAME."),
    features: str | None = typer.Option(None, "--features", help="Feature version (default: the newest)."),
    data: Path | None = typer.Option(None, "--data", help="Or any tabular CSV.", dir_okay=False),
    target: str | None = typer.Option(None, "--target", help="The column to predict (with --data)."),
) -> None:
    """Run a grid of trainings as child runs under one MLflow parent run and report the best."""
    from driftloop.auth import run_origin
    from driftloop.features import feature_store_for
    from driftloop.pipeline.experiments import configurations, parse_grid, run_grid
    from driftloop.tracking import Tracker
    from driftloop.training.model import check_factory

    st = state(ctx)
    settings = st.settings
    parsed = parse_grid(grid)
    for _, cfg in configurations(settings.training, parsed):  # bad keys and values before any data
        check_factory(cfg)
    if data is None and features is None:
        versions = feature_store_for(settings).list()
        if not versions:
            raise UsageError("no feature versions yet: run the pipeline first or give --data/--features")
        features = versions[0].id
    tracker = Tracker(settings, origin=run_origin(settings, "driftloop experiment"))
    with tempfile.TemporaryDirectory() as tmp:
        loaded = _load_data(
            st,
            settings,
            Path(tmp),
            data=data,
            features=features,
            target=target,
            categorical=None,
            numeric=None,
            timestamp=None,
            id_column=None,
        )

        def on_child(row: dict[str, Any]) -> None:
            st.err.print(f"  {row['values']}  val_score {row['val_score']:.4f}", highlight=False)

        result = run_grid(settings, tracker, loaded, parsed, on_child=on_child)
    table = Table(
        *parsed,
        "val_score",
        "holdout roc_auc" if settings.training.task == "classification" else "holdout rmse",
        "run",
    )
    metric = "roc_auc" if settings.training.task == "classification" else "rmse"
    for row in result.rows:
        mark = " ★" if row is result.best else ""
        value = row.get(metric)
        table.add_row(
            *row["values"].values(),
            f"{row['val_score']:.4f}{mark}",
            "-" if value is None else f"{value:.4f}",
            row["run_id"][:12],
        )
    st.out.print(table)
    st.out.print(f"best (on validation): {result.best['values']} — parent run {result.parent_run_id}")


def _print_metrics(console: Console, metrics: dict[str, Any]) -> None:
    table = Table("hold-out metric", "value", title_justify="left")
    for key in (
        "roc_auc",
        "pr_auc",
        "f1",
        "precision",
        "recall",
        "brier",
        "threshold",
        "rmse",
        "mae",
        "r2",
        "n",
    ):
        value = metrics.get(key)
        if value is not None:
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
