"""``driftloop models``: registered versions, their stage, metrics and lineage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.table import Column, Table

from driftloop.cli._output import json_option, print_json
from driftloop.cli._state import CliState, state
from driftloop.errors import NotFoundError

if TYPE_CHECKING:
    from datetime import datetime

    from driftloop.core.models import ModelVersion, Stage
    from driftloop.settings import Settings

app = typer.Typer(help="Model registry: versions, stages, metrics, lineage.", no_args_is_help=True)

_SQLITE = "sqlite:///"
_KEY_METRICS = ("roc_auc", "pr_auc", "f1", "rmse")
# Padded to one width: the history's columns line up.
_OUTCOMES = {
    "done": "[green]done[/]     ",
    "refused": "[red]refused[/]  ",
    "unchanged": "unchanged",
    "detected": "[red]detected[/] ",
}


@app.command("list")
def list_(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="Registered model \\[registry.model_name]."),
    as_json: bool = json_option(),
) -> None:
    """A model's versions, newest first: stage (by the audit), aliases, key metrics, created.

    The stage is what driftloop's audit recorded; an MLflow alias or stage tag moved by hand is shown
    and flagged, never counted as a second production version.
    """
    st = state(ctx)
    model = name or st.settings.registry.model_name
    if no_registry_yet(st.settings):
        if as_json:
            print_json([])
        else:
            st.out.print(f"no versions of {model} yet (register one: driftloop pipeline run)")
        return
    from driftloop.core.models import Stage
    from driftloop.registry.changes import ALIASES

    versions, audited = _versions_and_stages(ctx, st, model)
    table = Table(
        Column("v", justify="right"),
        Column("stage", no_wrap=True),
        Column("aliases", no_wrap=True),
        *(Column(k, no_wrap=True) for k in _KEY_METRICS[:3]),
        Column("created", no_wrap=True),
        title=model,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    flagged = []
    for v in versions:
        stage = audited.get(v.version, Stage.NONE)
        expected = {a for s, a in ALIASES.items() if s == stage}
        if v.stage != stage or set(v.aliases) & set(ALIASES.values()) != expected:
            flagged.append(v.version)
    if as_json:
        print_json(
            [_version_json(v, audited.get(v.version, Stage.NONE), v.version in flagged) for v in versions]
        )
        _warn_flagged(st, flagged)
        return
    for v in versions:
        stage = audited.get(v.version, Stage.NONE)
        metrics = [v.tags.get(f"driftloop.metric.{k}", "-")[:6] for k in _KEY_METRICS[:3]]
        table.add_row(
            str(v.version),
            stage.value + (" [red]![/]" if v.version in flagged else ""),
            ",".join(v.aliases) or "-",
            *metrics,
            f"{v.created_at:%Y-%m-%d %H:%M}",
        )
    st.out.print(table)
    _warn_flagged(st, flagged)


def _versions_and_stages(
    ctx: typer.Context, st: CliState, model: str
) -> tuple[list[ModelVersion], dict[int, Stage]]:
    """``model``'s versions (MLflow) and stages (the audit). Read without importing MLflow when a
    reader can (decision 0073) and nothing needs writing; through the MLflow client otherwise: to
    finish a stage change a dead process left, or to adopt the aliases of a model the audit never saw."""
    from driftloop.registry.audit import AuditLog
    from driftloop.registry.lease import Leases
    from driftloop.registry.reader import registry_reader
    from driftloop.storage.metadata import open_metadata

    db = open_metadata(st.settings.database_url, echo=st.settings.database.echo)
    ctx.call_on_close(db.dispose)
    audit = AuditLog(db)
    reader = registry_reader(st.settings)
    if reader is not None and not Leases(db).interrupted() and audit.last(model) is not None:
        return reader.versions(model), audit.stages(model)
    from driftloop.registry import Registry
    from driftloop.registry.changes import Changes

    registry = Registry(st.settings)
    changes = Changes(db, registry)
    for interrupted in changes.recover():
        st.err.print(f"finished an interrupted stage change of {interrupted} (see: driftloop models history)")
    return registry.versions(model), changes.stages(model)  # unseen by the audit: aliases adopted once


def no_registry_yet(settings: Settings) -> bool:
    """Whether the embedded MLflow store (a SQLite file) does not exist yet: then no model has a
    version, and a read command says so at once instead of importing MLflow and creating the store
    (seconds of migrations on a fresh home)."""
    uri = settings.tracking_uri
    return uri.startswith(_SQLITE) and not Path(uri.removeprefix(_SQLITE)).exists()


def _warn_flagged(st: CliState, flagged: list[int]) -> None:
    for number in flagged:
        st.err.print(
            f"[red]![/] v{number}: MLflow's stage tag or aliases differ from the audit (changed outside "
            "driftloop; the service follows the audit and puts them back: see driftloop models history)"
        )


def _version_json(v: ModelVersion, stage: Stage, flagged: bool) -> dict[str, Any]:
    """A version for ``--json``: its stage by the audit, and MLflow's own tag when they differ."""
    return {
        "name": v.name,
        "version": v.version,
        "stage": stage.value,
        "mlflow_stage": v.stage.value,
        "changed_outside_driftloop": flagged,
        "aliases": list(v.aliases),
        "metrics": {
            k.removeprefix("driftloop.metric."): _float(val)
            for k, val in sorted(v.tags.items())
            if k.startswith("driftloop.metric.")
        },
        "created_at": v.created_at,
        "run_id": v.run_id,
        "source": v.source,
    }


def _float(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _headline(st: CliState, v: ModelVersion) -> None:
    st.out.print(
        f"[bold]{v.name}/{v.version}[/]  stage {v.stage.value}  aliases {', '.join(v.aliases) or '-'}"
    )


@app.command("show")
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME[/VERSION]", help="Default: latest."),
    as_json: bool = json_option(),
) -> None:
    """One version: stage, aliases, hold-out metrics, and lineage back to data, run and commit."""
    from driftloop.core.models import ModelRef

    st = state(ctx)
    if no_registry_yet(st.settings):
        raise NotFoundError(f"no registered model {ModelRef.parse(ref).name!r} (nothing is registered yet)")
    from driftloop.registry.reader import registry_reader, resolve

    reader = registry_reader(st.settings)
    if reader is not None:
        v = resolve(reader, ModelRef.parse(ref))
        run = reader.run(v.run_id) if v.run_id is not None else None
    else:
        from driftloop.registry import Registry
        from driftloop.tracking import Tracker

        v = Registry(st.settings).resolve(ModelRef.parse(ref))
        run = Tracker(st.settings).get_run(v.run_id) if v.run_id is not None else None
    metrics = {
        k.removeprefix("holdout_"): val
        for k, val in sorted(run.metrics.items() if run is not None else ())
        if k.startswith("holdout_")
    }
    if as_json:
        print_json(
            {
                "name": v.name,
                "version": v.version,
                "stage": v.stage.value,
                "aliases": list(v.aliases),
                "created_at": v.created_at,
                "source": v.source,
                "run_id": v.run_id,
                "metrics": metrics,
                "tags": run.tags if run is not None else {},
            }
        )
        return
    _headline(st, v)
    st.out.print(f"created   {v.created_at:%Y-%m-%d %H:%M:%S %Z}")
    st.out.print(f"source    {v.source}")
    if run is None:
        return
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


@app.command("history")
def history(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="Registered model \\[registry.model_name]."),
    version: int | None = typer.Option(None, "--version", help="Only this version."),
    checks: bool = typer.Option(False, "--checks", help="List each check and its evidence."),
    as_json: bool = json_option(),
) -> None:
    """Every stage transition and approval — who, when, from → to, outcome, reasons, check results."""
    from driftloop.registry.audit import AuditLog
    from driftloop.storage.metadata import open_metadata

    st = state(ctx)
    model = name or st.settings.registry.model_name
    db = open_metadata(st.settings.database_url, echo=st.settings.database.echo)
    ctx.call_on_close(db.dispose)
    audit = AuditLog(db)
    entries = audit.history(model, version=version)
    approvals = audit.approvals(model, version)
    if as_json:
        print_json({"model": model, "transitions": entries, "approvals": approvals})
        return
    if not entries and not approvals:
        st.out.print(f"no transitions recorded for {model}")
        return
    # One line per entry (soft-wrapped, never folded): greppable, and readable at any width. Approvals
    # are interleaved by time: who approved is part of how a version got where it is.
    count = f"{len(entries)} entries" + (f", {len(approvals)} approvals" if approvals else "")
    st.out.print(f"[bold]{model}[/] history ({count}, oldest first)")
    lines: list[tuple[datetime, str]] = []
    for t in entries:
        outcome = _OUTCOMES.get(t.outcome, t.outcome)
        passed = sum(c.passed for c in t.checks)
        evidence = f" [{passed}/{len(t.checks)} checks passed]" if t.checks else ""
        comment = f" — {t.comment}" if t.comment else ""
        move = f"{t.from_stage.value} → {t.to_stage.value}"
        line = (
            f"#{t.id:<4} {t.at:%Y-%m-%d %H:%M:%S}  v{t.version:<3} {t.action:<11} {move:<24} {outcome} "
            f"by {t.actor}: {'; '.join(t.reasons)}{evidence}{comment}"
        )
        lines.append((t.at, line))
    for a in approvals:
        target = f"for {a.stage.value}"
        line = (
            f"{'':5} {a.at:%Y-%m-%d %H:%M:%S}  v{a.version:<3} {'approve':<11} {target:<24} "
            f"[green]given[/]     by {a.actor}: {a.comment}"
        )
        lines.append((a.at, line))
    for _, line in sorted(lines, key=lambda item: item[0]):
        st.out.print(line)
    if checks:
        for t in entries:
            for c in t.checks:
                mark = "✓" if c.passed else "✗"
                st.out.print(f"  #{t.id} v{t.version} {mark} {c.name}: {c.detail}")
