"""Progress inside a long step (epochs, rows), carried through the step log to whoever watches the run.

A step runs in its own process (or container, or Job) and its only channel back is its log, so progress
is a log line of a fixed shape, written by :func:`report`::

    … INFO driftloop.pipeline.step.train: progress 3/25 epochs: val_score 0.9132

The runner follows the log file while the step runs (:class:`LogFollower`) and hands each such line,
parsed, to its display. The same line is what a container's or a Job's log shows, and what the step log
keeps afterwards, so nothing else is needed for progress to reach a person.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["LogFollower", "StepProgress", "parse_progress", "report"]

_LINE = re.compile(r"\bprogress (\d+)/(\d+|\?) ([a-z][a-z ]*?)(?:: (.*))?$")


@dataclass(frozen=True)
class StepProgress:
    """``done`` of ``total`` ``unit`` (``total`` None: not known in advance), and a short detail."""

    done: int
    total: int | None
    unit: str
    detail: str = ""


def report(log: logging.Logger, done: int, total: int | None, unit: str, detail: str = "") -> None:
    """Write one progress line to a step's log (``unit``: a plural noun such as ``epochs``)."""
    tail = f": {detail}" if detail else ""
    log.info("progress %d/%s %s%s", done, "?" if total is None else total, unit, tail)


def parse_progress(line: str) -> StepProgress | None:
    """The progress a log line reports, or None for any other line."""
    found = _LINE.search(line.rstrip("\n"))
    if found is None:
        return None
    done, total, unit, detail = found.groups()
    return StepProgress(int(done), None if total == "?" else int(total), unit, detail or "")


class LogFollower:
    """Follows a growing log file in a thread and calls ``on_progress`` for each progress line.

    Use as a context manager around the step's execution; leaving it reads what is left and stops.
    Lines are taken whole: a line still being written is read on the next poll.
    """

    def __init__(
        self, path: Path, on_progress: Callable[[StepProgress], None], *, poll_s: float = 0.2
    ) -> None:
        self._path = path
        self._on_progress = on_progress
        self._poll_s = poll_s
        self._offset = path.stat().st_size if path.exists() else 0  # a resumed step's old lines are old
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="step-log-follower", daemon=True)

    def __enter__(self) -> LogFollower:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._read()

    def _follow(self) -> None:
        while not self._stop.wait(self._poll_s):
            self._read()

    def _read(self) -> None:
        try:
            with self._path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:  # not created yet
            return
        whole = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(whole)
        for raw in whole.splitlines():
            progress = parse_progress(raw.decode("utf-8", "replace"))
            if progress is not None:
                self._on_progress(progress)
