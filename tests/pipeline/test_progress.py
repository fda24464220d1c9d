"""Progress inside a step: a log line of a fixed shape, followed by the runner, shown by `pipeline run`."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

from rich.console import Console

from driftloop.cli.pipeline import _StepDisplay
from driftloop.pipeline.progress import LogFollower, StepProgress, parse_progress, report
from driftloop.pipeline.runner import Runner, StepEvent
from driftloop.pipeline.training import training_pipeline
from tests.conftest import wait_for
from tests.pipeline.conftest import InProcessExecutor, params

if TYPE_CHECKING:
    from pathlib import Path

    from tests.pipeline.conftest import Env


def _line(done: int, total: int | None, unit: str, detail: str = "") -> str:
    """What a step's log holds after ``report`` (with the step logger's format)."""
    out = io.StringIO()
    log = logging.getLogger("tests.progress")
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        report(log, done, total, unit, detail)
    finally:
        log.removeHandler(handler)
    return out.getvalue()


def test_a_reported_line_parses_back() -> None:
    assert parse_progress(_line(3, 25, "epochs", "val_score 0.91")) == StepProgress(
        3, 25, "epochs", "val_score 0.91"
    )
    assert parse_progress(_line(7, None, "files")) == StepProgress(7, None, "files", "")
    assert parse_progress("2026-01-01 INFO driftloop.pipeline.step.train: saved model → x") is None


def test_the_follower_reports_whole_new_lines_only(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text(_line(9, 9, "epochs"))  # a resumed step's earlier attempt: not news
    seen: list[StepProgress] = []
    with LogFollower(log, seen.append, poll_s=0.01), log.open("a") as fh:
        fh.write(_line(1, 2, "epochs", "val_score 0.5"))
        fh.write("unrelated line\n")
        fh.flush()
        wait_for(lambda: len(seen) == 1, what="the first progress line")
        half = _line(2, 2, "epochs")
        fh.write(half[:20])  # a line being written is not read yet
        fh.flush()
        fh.write(half[20:])
    assert seen == [StepProgress(1, 2, "epochs", "val_score 0.5"), StepProgress(2, 2, "epochs", "")]


def test_plain_lines_off_a_terminal() -> None:
    out = io.StringIO()
    display = _StepDisplay(Console(file=out, force_terminal=False, width=200))
    display(StepEvent("r1", "train", "start"))
    display(StepEvent("r1", "train", "progress", progress=StepProgress(3, 25, "epochs", "val_score 0.91")))
    display(StepEvent("r1", "ingest", "progress", progress=StepProgress(2, None, "files", "")))
    display.close()
    assert out.getvalue().splitlines() == [
        "  … train",
        "    train: epochs 3/25  val_score 0.91",
        "    ingest: files 2",
    ]


def test_a_live_bar_on_a_terminal_that_the_step_line_replaces() -> None:
    out = io.StringIO()
    display = _StepDisplay(Console(file=out, force_terminal=True, width=120))
    display(StepEvent("r1", "train", "progress", progress=StepProgress(1, 25, "epochs", "val_score 0.5")))
    assert display._bar is not None
    display(StepEvent("r1", "train", "failed"))  # a step's end takes the bar away
    assert display._bar is None
    assert "train: epochs" not in out.getvalue()  # no plain lines on a terminal


def test_the_runner_turns_a_steps_progress_lines_into_events(env: Env) -> None:
    env.simulate(days=2, rows=200)
    pipe = training_pipeline()
    inner = InProcessExecutor(env.settings, env.db, env.store, pipe)

    class WritesProgress:
        """The in-process step, plus a progress line in its log as a step process would write."""

        def run(self, step: str, run_id: str, log: Path, timeout_s: float) -> int:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as fh:
                fh.write(_line(1, 1, "checks", step))
            return inner.run(step, run_id, log, timeout_s)

    events: list[StepEvent] = []
    Runner(env.settings, env.db, env.store, pipe, WritesProgress(), on_event=events.append).run(
        params(until="ingest")
    )
    progress = [(e.step, e.progress) for e in events if e.kind == "progress"]
    assert progress == [("ingest", StepProgress(1, 1, "checks", "ingest"))]
    assert [e.kind for e in events] == ["start", "progress", "done"]
