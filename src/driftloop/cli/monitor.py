"""``driftloop monitor``: one monitoring pass over a window, and the decisions recorded so far.

A pass is a report: it exits 0 whatever it decides (OK, WARN, DRIFT, DECAY, or INSUFFICIENT for a
window too small to judge); it fails, with one
line, only when it cannot run (no production model, no predictions in the window, a bad option).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer

from driftloop.cli._output import json_option, print_json
from driftloop.cli._state import state
from driftloop.errors import UsageError

if TYPE_CHECKING:
    from driftloop.cli._state import CliState
    from driftloop.monitoring.run import MonitorResult
    from driftloop.monitoring.stats import FeatureDrift

app = typer.Typer(
    help="Monitor the production model: drift, data quality and decay of its captured predictions.",
    invoke_without_command=True,
)

_COLOURS = {"OK": "green", "WARN": "yellow", "DRIFT": "red", "DECAY": "magenta", "INSUFFICIENT": "blue"}
_TOP_FEATURES = 5


@app.callback()
def monitor(
    ctx: typer.Context,
    window: str | None = typer.Option(
        None, "--window", help="Window ending at --to (or now), e.g. 24h, 7d (default: monitoring.window)."
    ),
    start: str | None = typer.Option(None, "--from", help="Window start (ISO 8601, UTC unless given)."),
    end: str | None = typer.Option(None, "--to", help="Window end, exclusive (ISO 8601; default now)."),
    as_of: str | None = typer.Option(None, "--as-of", help="Use labels known by this time (default now)."),
    model: str | None = typer.Option(None, "--model", help="Registered model \\[registry.model_name]."),
) -> None:
    """One monitoring pass: writes the HTML/JSON report and records the decision (exit 0 for any decision)."""
    if ctx.invoked_subcommand is not None:
        if any(v is not None for v in (window, start, end, as_of, model)):
            raise UsageError(
                "--window/--from/--to/--as-of/--model belong to the pass, not to 'monitor history'"
            )
        return
    from driftloop.core.durations import parse_duration
    from driftloop.monitoring.run import monitor_once

    st = state(ctx)
    settings = st.settings
    if model:
        settings = settings.model_copy(
            update={"registry": settings.registry.model_copy(update={"model_name": model})}
        )
    if window is not None and start is not None:
        raise UsageError("give either --window or --from (with an optional --to), not both")
    stop = _instant(end, "--to") if end else datetime.now(UTC)
    begin = (
        _instant(start, "--from") if start else stop - parse_duration(window or settings.monitoring.window)
    )
    result = monitor_once(
        settings, start=begin, end=stop, as_of=_instant(as_of, "--as-of") if as_of else None
    )
    _print(st, result)


@app.command("history")
def history(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="Registered model \\[registry.model_name]."),
    limit: int = typer.Option(20, "--limit", min=1, help="The latest N decisions."),
    as_json: bool = json_option(),
) -> None:
    """The recorded decisions of a model, oldest first: window, version, decision, drift share, report."""
    from driftloop.monitoring.history import decision_history
    from driftloop.storage.metadata import open_metadata

    st = state(ctx)
    model = name or st.settings.registry.model_name
    db = open_metadata(st.settings.database_url, echo=st.settings.database.echo)
    try:
        decisions = decision_history(db, model, limit=limit)
    finally:
        db.dispose()
    if as_json:
        print_json(decisions)
        return
    if not decisions:
        st.out.print(f"no monitoring decisions recorded for {model}")
        return
    st.out.print(f"[bold]{model}[/] monitoring history ({len(decisions)} decisions, oldest first)")
    for d in decisions:
        colour = _COLOURS.get(d.decision, "white")
        share = d.summary.get("drift_share")
        drifted = ", ".join(d.summary.get("drifted_features", [])) or "-"
        st.out.print(
            f"#{d.id:<4} {d.created_at:%Y-%m-%d %H:%M:%S}  v{d.version:<3} "
            f"{d.period[0]:%Y-%m-%d %H:%M} → {d.period[1]:%Y-%m-%d %H:%M}  [{colour}]{d.decision:<5}[/] "
            f"rows {d.summary.get('rows', 0):,}  drift share {share if share is None else f'{share:.2f}'}  "
            f"drifted {drifted}  {d.report_uri}",
            markup=True,
        )


def _print(st: CliState, result: MonitorResult) -> None:
    a = result.assessment
    d = result.decision
    colour = _COLOURS.get(a.decision, "white")
    st.out.print(
        f"[bold {colour}]{a.decision}[/]  {d.model} v{d.version}  {d.start:%Y-%m-%d %H:%M} → "
        f"{d.end:%Y-%m-%d %H:%M} UTC  {a.rows:,} predictions, {result.labels:,} labels read"
    )
    for reason in a.reasons:
        st.out.print(f"  - {reason}", markup=False)
    ranked = sorted(a.features, key=lambda f: (not f.drifted, -_severity(f)))[:_TOP_FEATURES]
    if ranked:
        st.out.print(
            f"drift     share {a.dataset.share:.2f} (threshold {a.dataset.threshold:.2f}); top features:"
        )
        for f in ranked:
            mark = "[red]drifted[/]" if f.drifted else "ok"
            st.out.print(
                f"  {f.name:<24} {f.method:<13} {f.score:>9.4g}  threshold {f.threshold:<7.4g} "
                f"({f.direction}, {f.threshold_source:<10}) {mark}"
            )
    if a.prediction is not None:
        p = a.prediction
        st.out.print(
            f"scores    {p.method} {p.score:.4g} (threshold {p.threshold:.4g}, {p.direction}) "
            f"{'[red]drifted[/]' if p.drifted else 'ok'}"
        )
    q = a.quality
    st.out.print(
        f"quality   {len(q['alarms'])} alarm(s); invalid share {q['invalid_share']:.2%}, "
        f"{q['malformed']} malformed inputs, {q['fallback']} fallback predictions"
    )
    perf = a.performance
    if perf is not None and perf.get("judged"):
        verdict = "[magenta]decayed[/]" if perf["decayed"] else "ok"
        st.out.print(
            f"decay     {perf['metric']} {perf['current']:.4f} against {perf['reference']:.4f} "
            f"on {perf['labelled']} labels: {verdict}"
        )
    elif perf is not None:
        st.out.print(f"decay     not judged: {perf.get('why')}", markup=False)
    st.out.print(f"report    {result.report_uri}", markup=False)
    st.out.print(f"json      {result.json_uri}", markup=False)
    st.out.print(f"gauges    {result.prometheus_uri}", markup=False)
    st.out.print(f"decision  #{d.id} (driftloop monitor history)")
    if result.mlflow_run_id is not None:
        st.out.print(f"mlflow    run {result.mlflow_run_id}")
    for warning in result.warnings:
        st.err.print(f"warning: {warning}", markup=False)


def _severity(f: FeatureDrift) -> float:
    # p-values drift downwards, distances upwards: rank both by how far past (or near) the threshold.
    if f.statistic == "p_value":
        return f.threshold / max(f.score, 1e-300)
    return f.score / f.threshold


def _instant(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"invalid {option} {text!r}: expected ISO 8601 like 2026-01-31 or 2026-01-31T12:00"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
