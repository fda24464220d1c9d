"""CPU accounting of benchmarked processes, from /proc (Linux): where a server's CPU goes per request
(its event loop, its other threads, its helper processes)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Cpu:
    """CPU seconds so far: a server's main thread (its event loop), its other threads, its descendants."""

    main: float
    threads: float
    helpers: float

    @property
    def total(self) -> float:
        return self.main + self.threads + self.helpers

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.main - other.main, self.threads - other.threads, self.helpers - other.helpers)


def _stat(path: Path) -> tuple[int, float]:
    """(parent pid, user + system CPU seconds) of /proc/…/stat; the command name may hold spaces."""
    fields = path.read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents.setdefault(_stat(entry / "stat")[0], []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        out += children
        todo += children
    return out


def cpu(pid: int) -> Cpu:
    main = _stat(Path(f"/proc/{pid}/task/{pid}/stat"))[1]
    total = _stat(Path(f"/proc/{pid}/stat"))[1]
    helpers = 0.0
    for child in _descendants(pid):
        with contextlib.suppress(OSError):  # exited meanwhile
            helpers += _stat(Path(f"/proc/{child}/stat"))[1]
    return Cpu(main, total - main, helpers)
