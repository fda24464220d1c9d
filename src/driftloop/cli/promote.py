"""``driftloop promote``, ``approve``, ``rollback`` and ``lineage``: stages with gates and an audit trail."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from driftloop.cli._output import json_option, print_json
from driftloop.cli._state import CliState, state
from driftloop.errors import UsageError

if TYPE_CHECKING:
    from driftloop.core.models import ModelVersion
    from driftloop.registry.promotion import Promoter
    from driftloop.storage.metadata import Database
    from driftloop.tracking import Tracker


def _stage(text: str) -> object:
    from driftloop.core.models import Stage

    stages = {"staging": Stage.STAGING, "production": Stage.PRODUCTION}
    if text.lower() not in stages:
        raise UsageError(f"invalid --to {text!r}: use staging or production")
    return stages[text.lower()]


def _promoter(st: CliState, db: Database) -> tuple[Promoter, Tracker]:
    from driftloop.registry.promotion import Promoter
    from driftloop.tracking import Tracker

    tracker = Tracker(st.settings)
    promoter = Promoter(st.settings, db, tracker=tracker)
    for model in promoter.recover():  # a promotion killed half-way is finished first (and said so)
        st.err.print(f"finished an interrupted stage change of {model} (see: driftloop models history)")
    return promoter, tracker


def _actor(ctx: typer.Context, role: str, by: str | None) -> tuple[str, Database]:
    """Who acts (with auth on: the verified token's identity, which needs ``role``), checked before any
    work is done, and the metadata database it was checked in (closed with the command)."""
    from driftloop.auth import acting_identity
    from driftloop.storage.metadata import open_metadata

    st = state(ctx)
    db = open_metadata(st.settings.database_url, echo=st.settings.database.echo)
    ctx.call_on_close(db.dispose)
    return acting_identity(st.settings, db, role, by=by), db


def promote(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model."),
    version: int = typer.Argument(..., help="Version number."),
    to: str = typer.Option(
        ..., "--to", help="staging (runs the compliance checks) or production (compares)."
    ),
    by: str | None = typer.Option(
        None, "--by", help="Who is promoting \\[current user]; with auth on, the token's identity."
    ),
    comment: str = typer.Option("", "--comment", help="Why, for the audit history."),
) -> None:
    """Promote a version: None → Staging (compliance checks) → Production (approval + comparison).

    With auth on, acts as the token in DRIFTLOOP_TOKEN, which needs the promote role."""
    from driftloop.core.models import Stage
    from driftloop.pipeline.promotion import promote as run_promote
    from driftloop.registry import Registry

    st = state(ctx)
    stage = _stage(to)
    assert isinstance(stage, Stage)
    actor, db = _actor(ctx, "promote", by)
    promoter, tracker = _promoter(st, db)
    with st.err.status(f"promoting {name}/{version} to {stage.value}: checks and evidence…"):
        result = run_promote(
            promoter,
            st.settings,
            tracker,
            Registry(st.settings),
            name=name,
            version=version,
            to=stage,
            actor=actor,
            comment=comment,
        )
    for check in result.checks:
        mark = "[green]✓[/]" if check.passed else ("[red]✗[/]" if check.required else "[yellow]![/]")
        st.out.print(f"  {mark} {check.name:<20} {check.detail}")
    if not result.changed:
        st.out.print(f"{name}/{version} is already in {result.to_stage.value}: nothing to do")
        return
    replaced = f" (replaces {name}/{result.replaced})" if result.replaced else ""
    st.out.print(f"[bold]{name}/{version}[/]: {result.from_stage.value} → {stage.value}{replaced}")


def approve(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model."),
    version: int = typer.Argument(..., help="Version number."),
    by: str | None = typer.Option(
        None, "--by", help="Who approves (recorded); with auth on, the token's identity."
    ),
    comment: str = typer.Option(..., "--comment", help="Why (recorded)."),
    to: str = typer.Option("production", "--to", help="The stage approved for."),
) -> None:
    """Record a person's approval of a version for a stage (policy.require_approval_for).

    With auth on, the approver is the token in DRIFTLOOP_TOKEN, which needs the approve role."""
    from driftloop.core.models import Stage

    st = state(ctx)
    stage = _stage(to)
    assert isinstance(stage, Stage)
    if by is None and not st.settings.auth.enabled:
        raise UsageError(
            "approve needs --by WHO: the approver is recorded (with auth on: the token's identity)"
        )
    actor, db = _actor(ctx, "approve", by)
    promoter, _ = _promoter(st, db)
    approval = promoter.approve(name, version, stage, actor=actor, comment=comment)
    st.out.print(f"approved {name}/{version} for {stage.value} by {approval.actor}: {approval.comment}")


def rollback(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model."),
    by: str | None = typer.Option(
        None, "--by", help="Who rolls back \\[current user]; with auth on, the token's identity."
    ),
    comment: str = typer.Option("", "--comment", help="Why, for the audit history."),
) -> None:
    """Return production to the version the current one replaced (the current one is archived).

    With auth on, acts as the token in DRIFTLOOP_TOKEN, which needs the promote role."""
    st = state(ctx)
    actor, db = _actor(ctx, "promote", by)
    promoter, _ = _promoter(st, db)
    result = promoter.rollback(name, actor=actor, comment=comment)
    st.out.print(f"[bold]{name}/{result.version}[/] is Production again; {name}/{result.replaced} archived")


def lineage(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME/VERSION", help="A registered version."),
    as_json: bool = json_option(),
) -> None:
    """From a version back to its run, commit, feature version, pipeline run and raw data partitions."""
    from driftloop.core.models import ModelRef
    from driftloop.registry import Registry

    st = state(ctx)
    v = Registry(st.settings).resolve(ModelRef.parse(ref))
    trail = _trail(st, v)
    if as_json:
        print_json(trail)
        return
    _print_trail(st, trail)


def _trail(st: CliState, v: ModelVersion) -> dict[str, Any]:
    """The lineage as data: version → run → commit, pipeline run, feature version → partitions."""
    from driftloop.errors import NotFoundError
    from driftloop.features import feature_store_for
    from driftloop.tracking import Tracker

    trail: dict[str, Any] = {
        "model": {"name": v.name, "version": v.version, "stage": v.stage.value, "aliases": list(v.aliases)},
        "source": v.source,
        "run": None,
    }
    if not v.run_id:
        return trail
    run = Tracker(st.settings).get_run(v.run_id)
    tags = run.tags
    feature_version = tags.get("driftloop.feature_version")
    trail["run"] = {"id": run.run_id, "name": run.name, "status": run.status}
    trail["git"] = {"commit": tags.get("driftloop.git.commit"), "dirty": tags.get("driftloop.git.dirty")}
    trail["pipeline_run"] = tags.get("driftloop.pipeline_run")
    trail["data_file"] = None if feature_version else tags.get("driftloop.source")
    trail["features"] = None
    if feature_version:
        try:
            info = feature_store_for(st.settings).get(feature_version)
        except NotFoundError:
            trail["features"] = {"version": feature_version, "in_store": False}
            return trail
        trail["features"] = {
            "version": feature_version,
            "in_store": True,
            "window": info.lineage.get("window", {}),
            "raw_partitions": info.lineage.get("raw_partitions", {}),
            "label_partitions": info.lineage.get("label_partitions", {}),
        }
    return trail


def _print_trail(st: CliState, trail: dict[str, Any]) -> None:
    import json

    model = trail["model"]
    st.out.print(
        f"[bold]{model['name']}/{model['version']}[/]  stage {model['stage']}  "
        f"aliases {', '.join(model['aliases']) or '-'}"
    )
    st.out.print(f"└─ model        {trail['source']}")
    run = trail["run"]
    if run is None:
        return
    st.out.print(f"   └─ run      {run['id']} ({run['name']}, {run['status']})")
    git = trail["git"]
    st.out.print(f"      ├─ code     git {git['commit'] or '-'} (dirty: {git['dirty'] or '-'})")
    if trail["pipeline_run"]:
        st.out.print(f"      ├─ pipeline {trail['pipeline_run']} (driftloop pipeline show …)")
    features = trail["features"]
    if features is None:
        st.out.print(f"      └─ data     {trail['data_file'] or '-'} (a local file)")
        return
    st.out.print(f"      └─ features {features['version']}")
    if not features["in_store"]:
        st.out.print("         └─ (the feature version is no longer in the store)")
        return
    raw, labels = features["raw_partitions"], features["label_partitions"]
    st.out.print(f"         ├─ window   {json.dumps(features['window'], sort_keys=True)}")
    st.out.print(f"         ├─ raw      {len(raw)} partitions")
    for key, meta in sorted(raw.items()):
        st.out.print(f"         │   {key}  sha256 {str(meta.get('sha256', ''))[:16]}")
    st.out.print(f"         └─ labels   {len(labels)} partitions")
    for key, digest in sorted(labels.items()):
        st.out.print(f"             {key}  sha256 {str(digest)[:16]}")
