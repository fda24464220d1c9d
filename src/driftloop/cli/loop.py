"""``driftloop loop history``: what the closed loop did — each trigger, what it started, how it ended."""

from __future__ import annotations

import typer
from rich.table import Table

from driftloop.cli._output import json_option, print_json
from driftloop.cli._state import state

app = typer.Typer(
    help="The closed loop's record: triggers, retrainings, gates, guards.", no_args_is_help=True
)


@app.command("history")
def history(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="Registered model \\[registry.model_name]."),
    limit: int = typer.Option(20, "--limit", min=1, help="The latest N triggers."),
    as_json: bool = json_option(),
) -> None:
    """Each trigger (drift, decay, schedule, manual) with its reason, pipeline run, candidate and outcome,
    then the rollback guards."""
    from driftloop.scheduling.ledger import Ledger
    from driftloop.storage.metadata import open_metadata

    st = state(ctx)
    model = name or st.settings.registry.model_name
    db = open_metadata(st.settings.database_url, echo=st.settings.database.echo)
    try:
        ledger = Ledger(db)
        triggers, guards = ledger.triggers(model, limit=limit), ledger.guards(model)
    finally:
        db.dispose()
    if as_json:
        print_json({"model": model, "triggers": triggers, "guards": guards})
        return
    if not triggers:
        st.out.print(f"no triggers recorded for {model}")
        return
    table = Table("id", "at", "kind", "state", "run", "candidate", "why", title=f"{model}: triggers")
    for t in triggers:
        # The outcome's reason, else the policy's verdict on the decision (the monitor's reasons are in
        # `driftloop monitor history`).
        why = str(t.detail.get("why") or t.reason.rsplit(" — ", 1)[-1])
        why = why if len(why) <= 90 else why[:89] + "…"
        table.add_row(
            str(t.id),
            f"{t.created_at:%Y-%m-%d %H:%M}",
            t.kind,
            t.state,
            t.pipeline_run or "-",
            f"v{t.candidate_version}" if t.candidate_version else "-",
            why,
        )
    st.out.print(table)
    if guards:
        watch = Table(
            "version", "previous", "baseline", "state", "verdict", title=f"{model}: rollback guards"
        )
        for g in guards:
            verdict = "; ".join(g.verdict.get("reasons", [])) or str(g.verdict.get("note", "")) or "-"
            watch.add_row(
                f"v{g.version}",
                f"v{g.previous_version}" if g.previous_version else "-",
                f"{g.baseline:.4f}",
                g.state,
                verdict,
            )
        st.out.print(watch)
