"""``driftloop demo``: the closed loop on simulated time, end to end, with a timeline and a report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from driftloop.cli._state import state
from driftloop.errors import DriftloopError

if TYPE_CHECKING:
    from driftloop.demo.plan import DayRow

# The demo's own home, inside the platform's default one but apart from it: the quick tour's data in
# ./.driftloop stays, and `driftloop demo` after the tour (or `make demo` twice) just works.
DEFAULT_HOME = Path(".driftloop") / "demo"


def demo(
    ctx: typer.Context,
    home: Path = typer.Option(
        DEFAULT_HOME,
        "--home",
        help="Where the demo's platform lives, apart from ./.driftloop's own state (reset on every run; "
        "refused when it holds data the demo did not make).",
    ),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="Port of the demo's prediction service (default: a free one)."
    ),
    quick: bool = typer.Option(False, "--quick", help="A shorter story (fewer days and rows)."),
) -> None:
    """Run the whole loop: simulate → v1 → serve → drift → detect → retrain → shadow → promote → swap."""
    from driftloop.demo.plan import DemoPlan
    from driftloop.demo.run import run_demo

    st = state(ctx)
    plan = (
        DemoPlan(history_days=6, live_days=8, rows_per_day=2000, requests_per_day=50) if quick else DemoPlan()
    )
    table = Table("day", "serving", "live ROC AUC", "live F1", "monitor", "loop events", title="timeline")

    def on_day(row: DayRow) -> None:
        auc = f"{row.roc_auc:.3f}" if row.roc_auc is not None else "-"
        f1 = f"{row.f1:.3f}" if row.f1 is not None else "-"
        st.out.print(
            f"  {row.day}  v{row.version}  ROC AUC {auc}  F1 {f1}  {row.decision:<5} "
            + " | ".join(row.events)
        )
        table.add_row(str(row.day), f"v{row.version}", auc, f1, row.decision, "\n".join(row.events))

    with st.out.status("running the closed loop…"):
        result = run_demo(
            home.resolve(),
            plan,
            port=port,
            say=lambda text: st.out.print(f"[bold]·[/] {text}"),
            on_day=on_day,
        )
    st.out.print(table)
    st.out.print(f"report: {result.report}")
    st.out.print(
        f"drift onset {result.onset}, detected {result.detected}, promoted {result.promoted}; "
        f"production is now v{result.final_version} ({result.seconds:.0f} s)"
    )
    if result.promoted is not None:
        st.out.print(
            f"recovery: drift onset → retrained version in production in "
            f"{(result.promoted - result.onset).days} simulated days (labels arrive the day after)"
        )
    kept = [e.message for _, e in result.events if e.kind == "kept"]
    if kept:
        st.out.print(f"gates kept the champion {len(kept)} time(s): {kept[-1]}")
    if result.promoted is None:
        raise DriftloopError(
            "the loop did not close: no retrained version reached production (see the report)"
        )
    st.out.print(f"see it all in the MLflow UI: DRIFTLOOP_HOME={home} driftloop up", markup=False)
