"""``driftloop simulate``: write simulated plant data (and delayed labels) to the object store."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from driftloop.cli._state import state
from driftloop.core.durations import format_duration, parse_duration
from driftloop.errors import UsageError
from driftloop.simulate import SCENARIOS, SimulationRequest, parse_drift

if TYPE_CHECKING:
    from rich.console import Console

    from driftloop.simulate import SimulationSummary

_DRIFT_HELP = (
    "Drift scenario NAME[:start=YYYY-MM-DD,severity=X,option=value…]; repeat to compose. "
    "Scenarios: " + ", ".join(sorted(SCENARIOS)) + "."
)


def simulate(
    ctx: typer.Context,
    start: str | None = typer.Option(None, "--start", help="First day, YYYY-MM-DD (default: DAYS ago)."),
    days: int = typer.Option(7, "--days", help="Number of days to simulate.", min=1),
    rows_per_day: int | None = typer.Option(
        None, "--rows-per-day", help="Rows per day \\[simulate.rows_per_day]."
    ),
    machines: int | None = typer.Option(
        None, "--machines", help="Machines in the fleet \\[simulate.machines]."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed; same arguments give identical bytes."),
    drift: list[str] = typer.Option([], "--drift", help=_DRIFT_HELP),
    label_delay: str | None = typer.Option(
        None,
        "--label-delay",
        help="When ground truth becomes known, e.g. 24h, 2d \\[simulate.label_delay_hours].",
    ),
    out: str | None = typer.Option(
        None,
        "--out",
        help="Storage root to write raw/ and labels/ under: a path or s3://bucket/prefix \\[storage.root].",
    ),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset name under raw/ \\[data.dataset]."),
) -> None:
    """Simulate a predictive-maintenance plant: sensor readings, failures by physical rules, delayed labels.

    Writes raw/<dataset>/date=YYYY-MM-DD/part-0000.csv and labels/<dataset>/date=…/ (partitioned by the
    day each label becomes known), then prints a summary. See the scenario list in docs/simulate.md.
    """
    from driftloop.simulate import simulate as run_simulation
    from driftloop.simulate.records import record_simulation
    from driftloop.storage import open_store
    from driftloop.storage.metadata import open_metadata

    st = state(ctx)
    settings = st.settings
    cfg = settings.simulate
    first_day = _parse_day(start) if start else datetime.now(UTC).date() - timedelta(days=days)
    delay = parse_duration(label_delay) if label_delay else timedelta(hours=cfg.label_delay_hours)
    request = SimulationRequest(
        dataset=dataset or settings.data.dataset,
        start=first_day,
        days=days,
        rows_per_day=cfg.rows_per_day if rows_per_day is None else rows_per_day,
        machines=cfg.machines if machines is None else machines,
        seed=cfg.seed if seed is None else seed,
        label_delay=delay,
        drifts=tuple(parse_drift(text, default_start=first_day) for text in drift),
    )
    root = out or settings.storage_root
    store = open_store(root, settings.storage.s3)

    with Progress(
        TextColumn("simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days"),
        TimeRemainingColumn(),
        console=st.err,
        transient=True,
    ) as progress:
        task = progress.add_task("simulate", total=days)
        summary = run_simulation(request, store, on_day=lambda _day, _rows: progress.advance(task))

    db = open_metadata(settings.database_url, echo=settings.database.echo)
    try:
        record_simulation(db, request, summary, store.root)
    finally:
        db.dispose()
    _print_summary(st.out, request, summary, store.root)


def _parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"invalid --start {text!r}: expected a date like 2026-01-31") from None


def _print_summary(
    console: Console, request: SimulationRequest, summary: SimulationSummary, root: str
) -> None:
    last = request.start + timedelta(days=request.days - 1)
    head = Table(title=f"simulated plant → {root}", show_header=False, title_justify="left")
    head.add_row("dataset", request.dataset)
    head.add_row("days", f"{request.start} … {last} ({request.days})")
    head.add_row("rows", f"{summary.rows:,}  ({request.rows_per_day:,}/day, {request.machines} machines)")
    head.add_row("files", f"{len(summary.raw_keys)} raw, {len(summary.label_keys)} label partitions")
    head.add_row("label delay", format_duration(request.label_delay))
    console.print(head)

    modes = Table(title="failures", title_justify="left")
    modes.add_column("mode")
    modes.add_column("rows", justify="right")
    modes.add_column("rate", justify="right")
    for mode, label in _MODES:
        modes.add_row(label, f"{summary.failures[mode]:,}", f"{summary.failure_rate(mode):.2%}")
    console.print(modes)

    drifts = Table(title="drift applied", title_justify="left")
    for col in ("scenario", "from", "severity", "options"):
        drifts.add_column(col)
    for spec in summary.drifts:
        options = ", ".join(f"{k}={v}" for k, v in spec.params)
        drifts.add_row(spec.name, str(spec.start), f"{spec.severity:g}", options or "-")
    if not summary.drifts:
        drifts.add_row("none", "-", "-", "-")
    console.print(drifts)
    for scenario, count in summary.quarantine_hint.items():
        console.print(f"[yellow]{count:,} rows touched by {scenario!r}: validation will quarantine them[/]")


_MODES = (
    ("machine_failure", "machine failure (any)"),
    ("twf", "tool wear (TWF)"),
    ("hdf", "heat dissipation (HDF)"),
    ("pwf", "power (PWF)"),
    ("osf", "overstrain (OSF)"),
    ("rnf", "random (RNF)"),
)
