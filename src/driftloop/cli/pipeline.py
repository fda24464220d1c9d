"""``driftloop pipeline``: run the training DAG, list runs, show a run, run one step."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import typer
from rich import box
from rich.table import Column, Table

from driftloop.cli._output import json_option, print_json
from driftloop.cli._state import CliState, state
from driftloop.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.console import Console
    from rich.progress import Progress, TaskID

    from driftloop.pipeline.progress import StepProgress
    from driftloop.pipeline.records import RunView, StepView
    from driftloop.pipeline.runner import StepEvent
    from driftloop.storage.metadata import Database

app = typer.Typer(help="Training pipeline: ingest → validate → transform → features.", no_args_is_help=True)

_ICON = {
    "succeeded": "[green]✓[/]",
    "cached": "[cyan]↺[/]",
    "failed": "[red]✗[/]",
    "running": "…",
    "pending": "·",
}


@contextlib.contextmanager
def _database(st: CliState) -> Iterator[Database]:
    from driftloop.storage.metadata import open_metadata

    db = open_metadata(st.settings.database_url, echo=st.settings.database.echo)
    try:
        yield db
    finally:
        db.dispose()


@app.command("run")
def run(
    ctx: typer.Context,
    start: str | None = typer.Option(
        None, "--from", help="First raw day to read, YYYY-MM-DD (default: all)."
    ),
    end: str | None = typer.Option(None, "--to", help="Last raw day to read, YYYY-MM-DD (inclusive)."),
    prefix: str | None = typer.Option(None, "--prefix", help="Read every CSV under this raw prefix instead."),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Use labels known by this time (ISO 8601; default now)."
    ),
    until: str | None = typer.Option(None, "--until", help="Stop after this step."),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Run every step even if an identical one succeeded."
    ),
    resume: str | None = typer.Option(
        None, "--resume", help="Continue this failed run from its failed step."
    ),
) -> None:
    """Run the training pipeline, each step in its own process, and print each step as it finishes."""
    from driftloop.pipeline.executors import executor_for
    from driftloop.pipeline.params import RunParams
    from driftloop.pipeline.runner import Runner
    from driftloop.pipeline.training import training_pipeline
    from driftloop.storage import store_for

    st = state(ctx)
    settings = st.settings
    if resume and any(v is not None for v in (start, end, prefix, as_of, until)):
        raise UsageError(
            "--resume continues a run with its own parameters; drop --from/--to/--prefix/--as-of/--until"
        )
    pipeline = training_pipeline()
    if until is not None:
        pipeline.step(until)
    display = _StepDisplay(st.out)
    with _database(st) as db, contextlib.closing(display):
        runner = Runner(settings, db, store_for(settings), pipeline, executor_for(settings), on_event=display)
        if resume:
            st.out.print(f"resuming run [bold]{resume}[/]")
            with _trigger_held(st, db, resume):
                view = runner.resume(resume)
        else:
            params = RunParams(
                dataset=settings.data.dataset,
                start=_day(start, "--from"),
                end=_day(end, "--to"),
                prefix=prefix,
                as_of=_instant(as_of) if as_of else datetime.now(UTC),
                until=until,
                use_cache=not no_cache,
            )
            if params.start and params.end and params.start > params.end:
                raise UsageError(f"--from {params.start} is after --to {params.end}")
            run_id = runner.create(params)
            st.out.print(
                f"pipeline run [bold]{run_id}[/] ({', '.join(s.name for s in pipeline.until(until))})"
            )
            view = runner.execute(run_id)
    st.out.print(f"[green]run {view.id} succeeded[/] in {_elapsed(view)}")
    version = next((s.summary.get("version") for s in view.steps if s.step == "features"), None)
    if version:
        st.out.print(f"feature version [bold]{version}[/] (driftloop features show {str(version)[:12]})")


@contextlib.contextmanager
def _trigger_held(st: CliState, db: Database, run_id: str) -> Iterator[None]:
    """Resume a loop trigger's run only under that trigger's lease: refused while a live scheduler works
    on it (it resumes the run itself); otherwise held for the run, so none takes it over meanwhile, and
    the trigger learns the candidate at the loop's next pass (docs/loop.md)."""
    from datetime import timedelta

    from driftloop.core.triggers import ACTIVE, TriggerState
    from driftloop.errors import ConflictError
    from driftloop.pipeline.records import get_run
    from driftloop.runtime.holders import new_holder
    from driftloop.scheduling.ledger import Ledger

    kind, _, number = get_run(db, run_id).trigger.partition(":")
    ledger = Ledger(db)
    trigger = next((t for t in ledger.triggers(st.settings.registry.model_name) if str(t.id) == number), None)
    if trigger is None or trigger.pipeline_run != run_id:  # not a loop trigger's run
        yield
        return
    lease = timedelta(seconds=st.settings.schedule.trigger_lease_s)
    with ledger.holding(trigger, new_holder(), lease) as held:
        if held is None:
            raise ConflictError(
                f"run {run_id} is the retraining of trigger {trigger.id} ({kind}), which {trigger.holder} is "
                "working on: the loop resumes it itself (see driftloop loop history)"
            )
        yield
    if trigger.state in ACTIVE:
        st.out.print(f"trigger {trigger.id} learns the candidate at the loop's next pass")
    elif trigger.state == TriggerState.AWAITING_APPROVAL:
        st.out.print(f"trigger {trigger.id}'s candidate awaits an approval (driftloop approve)")
    else:
        st.err.print(
            f"trigger {trigger.id} has ended ({trigger.state}): the loop will not take this run's "
            "version through the gates; promote it by hand if you want it"
        )


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", min=1, help="How many runs."),
    as_json: bool = json_option(),
) -> None:
    """Recent runs, newest first."""
    from driftloop.pipeline.records import list_runs

    st = state(ctx)
    with _database(st) as db:
        runs = list_runs(db, limit)
    if as_json:
        print_json(runs)
        return
    table = Table(
        Column("run", no_wrap=True),
        "status",
        Column("created", no_wrap=True),
        "duration",
        "steps",
        "trigger",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for view in runs:
        done = sum(1 for s in view.steps if s.status.done)
        failed = next((s.step for s in view.steps if s.status.value == "failed"), None)
        steps = f"{done}/{len(view.steps)}" + (f" ✗ {failed}" if failed else "")
        created = f"{view.created_at:%Y-%m-%d %H:%M}"
        table.add_row(view.id, _status(view.status.value), created, _elapsed(view), steps, view.trigger)
    if not runs:
        st.out.print("no pipeline runs yet (start one: driftloop pipeline run)")
        return
    st.out.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN", help="Run id."),
    as_json: bool = json_option(),
) -> None:
    """A run's parameters and steps: status, duration, outputs, summary, log."""
    from driftloop.pipeline.records import get_run

    st = state(ctx)
    with _database(st) as db:
        view = get_run(db, run_id)
    if as_json:
        print_json(view)
        return
    st.out.print(
        f"run [bold]{view.id}[/]  {_status(view.status.value)}  "
        f"pipeline {view.pipeline}  trigger {view.trigger}"
    )
    st.out.print(
        "params: "
        + json.dumps({k: v for k, v in view.params.items() if v not in (None, {}, [])}, sort_keys=True)
    )
    if view.error:
        st.out.print(f"[red]error:[/] {view.error}")
    for s in view.steps:
        origin = f" (reused from run {s.cached_from})" if s.cached_from else ""
        icon = _ICON.get(s.status.value, "?")
        st.out.print(
            f"{icon} [bold]{s.step}[/] {_status(s.status.value)}{origin}  "
            f"{_duration(s)}  attempts {s.attempts}"
        )
        if s.summary:
            st.out.print("    summary  " + json.dumps(s.summary, sort_keys=True), soft_wrap=True)
        for name, ref in s.outputs.items():
            st.out.print(
                f"    {name:<9}{ref.uri}  [dim]sha256 {ref.sha256[:12]}, {ref.size:,} B[/]", soft_wrap=True
            )
        if s.error:
            st.out.print(f"    [red]error[/]    {s.error}", soft_wrap=True)
        if s.log_uri:
            st.out.print(f"    log      {s.log_uri}", soft_wrap=True)


@app.command("step")
def step(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Step name."),
    run_id: str = typer.Option(..., "--run", help="The run the step belongs to."),
) -> None:
    """Execute one step of a run in this process (the command every runner isolates)."""
    from driftloop.pipeline.execute import run_step_command

    code = run_step_command(state(ctx).config, run_id, name)
    if code:
        raise typer.Exit(code)


class _StepDisplay:
    """What ``pipeline run`` shows: a line as each step starts and ends and, inside a long step (epochs,
    rows), a live bar on a terminal or one plain line per report elsewhere (a log file, a CI job)."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, event: StepEvent) -> None:
        if event.kind == "progress":
            if event.progress is not None:
                self._progress(event.step, event.progress)
            return
        self.close()
        view = event.view
        if event.kind == "start":
            self._console.print(f"  … {event.step}", highlight=False)
            return
        if view is None:
            return
        brief = ", ".join(f"{k}={v}" for k, v in view.summary.items() if isinstance(v, int | float | str))
        label = {
            "done": _ICON["succeeded"],
            "cached": _ICON["cached"] + " cached",
            "failed": _ICON["failed"],
        }[event.kind]
        self._console.print(f"  {label} {event.step} {_duration(view)}  {brief}", highlight=False)

    def _progress(self, step: str, p: StepProgress) -> None:
        if not self._console.is_terminal:
            count = f"{p.done}/{p.total}" if p.total is not None else str(p.done)
            detail = f"  {p.detail}" if p.detail else ""
            self._console.print(f"    {step}: {p.unit} {count}{detail}", highlight=False, markup=False)
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        if self._bar is None or self._task is None:
            self._bar = Progress(
                TextColumn("    {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}  {task.fields[detail]}", markup=False),
                console=self._console,
                transient=True,  # the step's own line replaces it when the step ends
            )
            self._bar.start()
            self._task = self._bar.add_task(step, total=p.total, unit=p.unit, detail=p.detail)
        self._bar.update(self._task, completed=p.done, total=p.total, unit=p.unit, detail=p.detail)

    def close(self) -> None:
        """Take a live bar off the screen (at a step's end, or when the run stops)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar, self._task = None, None


def _day(text: str | None, flag: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"invalid {flag} {text!r}: expected a date like 2026-01-31") from None


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"invalid --as-of {text!r}: expected ISO 8601 like 2026-01-31 or 2026-01-31T12:00"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _status(status: str) -> str:
    color = {"succeeded": "green", "failed": "red", "running": "yellow", "cached": "cyan"}.get(
        status, "white"
    )
    return f"[{color}]{status}[/]"


def _duration(view: StepView) -> str:
    seconds = view.duration_s
    return "-" if seconds is None else f"{seconds:.1f}s"


def _elapsed(view: RunView) -> str:
    if view.started_at is None or view.finished_at is None:
        return "-"
    return f"{(view.finished_at - view.started_at).total_seconds():.1f}s"
