"""Test hooks armed from outside the code under test: a process killed at a named point, or a
promotion that holds its registry lease until another process has found it held.

``python -m tests.registry.armed crash POINT ARGS…``: ``driftloop ARGS…``, ``kill -9``-ed at POINT.
``python -m tests.registry.armed hold DIR ARGS…``: ``driftloop ARGS…``, a promotion that takes the
model's registry lease first holding it, before it changes anything, until another process sharing
DIR has found the lease held. :func:`arm_crash` arms a point in the
calling process (the loop worker of tests/scheduling does).

The points, each right after what it names: ``intent`` (a stage change's intent committed), ``op-N``
(its Nth MLflow operation applied), ``complete`` (its audit entries committed), ``loop:registered``
(the trigger learnt its candidate), ``loop:shadow`` (the trigger went into shadow), ``loop:promoted``
(a promotion to production went through, not yet recorded on the trigger).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.core.models import Stage
from driftloop.core.triggers import TriggerState
from driftloop.registry import lease as lease_module
from driftloop.registry.changes import Changes
from driftloop.registry.lease import Lease, Leases
from driftloop.registry.promotion import Promoter
from driftloop.scheduling.gates import Gates
from driftloop.scheduling.loop import Loop
from tests.waiting import poll_until

if TYPE_CHECKING:
    from collections.abc import Callable

POINTS = ("intent", "complete", "loop:registered", "loop:shadow", "loop:promoted")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _after(cls: type, name: str, crash: Callable[[tuple[Any, ...], dict[str, Any], Any], bool]) -> None:
    """Wrap ``cls.name``: call it, then die when ``crash(args, kwargs, result)`` says so."""
    original = getattr(cls, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if crash(args, kwargs, result):
            _die()
        return result

    setattr(cls, name, wrapper)


def arm_crash(point: str) -> None:
    """Kill this process (SIGKILL) at ``point`` (see the module docstring)."""
    if point not in POINTS and not (point.startswith("op-") and point[3:].isdigit()):
        raise SystemExit(f"unknown crash point {point!r}")
    # Operations applied by the stage change this process decided (None: none under way; finishing an
    # intent another process left, or adopting aliases, is not it).
    applied: dict[str, int | None] = {"ops": None}
    carry_out = Changes.carry_out

    @functools.wraps(carry_out)
    def deciding(self: Changes, *args: Any) -> None:
        applied["ops"] = 0
        try:
            carry_out(self, *args)
        finally:
            applied["ops"] = None

    Changes.carry_out = deciding  # type: ignore[method-assign]

    def nth_op(*_: Any) -> bool:
        if applied["ops"] is None:
            return False
        applied["ops"] += 1
        return point == f"op-{applied['ops']}"

    if point == "intent":
        _after(Lease, "commit_intent", lambda *_: True)
    elif point == "complete":
        _after(Lease, "complete", lambda *_: applied["ops"] is not None)
    elif point.startswith("op-"):
        _after(Changes, "_apply", nth_op)
    elif point == "loop:registered":  # the gates are what the trigger does next with its candidate
        _before(Gates, "gate")
    elif point == "loop:shadow":
        _after(Loop, "_update", lambda _a, kw, _r: kw.get("state") == TriggerState.SHADOW)
    else:  # loop:promoted; promote(self, name, version, to, …)
        _after(Promoter, "promote", lambda a, _kw, result: a[3] == Stage.PRODUCTION and result.changed)


def _before(cls: type, name: str) -> None:
    """Die on entering ``cls.name``."""

    def wrapper(*_: Any, **__: Any) -> Any:
        _die()

    setattr(cls, name, wrapper)


def hold_until_contended(directory: Path, timeout_s: float = 120.0) -> None:
    """Racing promotions overlap for certain, not by timing: a process that finds the lease held
    leaves a marker in ``directory``; one that took the lease without having waited for it holds it
    until another's marker is there."""
    directory.mkdir(parents=True, exist_ok=True)
    mine = directory / f"blocked-{os.getpid()}"
    seen_alive = lease_module.holder_gone

    def noting(*args: Any, **kwargs: Any) -> bool:
        gone = seen_alive(*args, **kwargs)
        if not gone:
            mine.touch()
        return gone

    acquire = Leases._acquire

    @functools.wraps(acquire)
    def acquiring(self: Leases, model: str) -> Lease:
        # Only a wait for the lease counts (a registry command's start also looks at holders).
        lease_module.holder_gone = noting  # type: ignore[assignment]
        try:
            return acquire(self, model)
        finally:
            lease_module.holder_gone = seen_alive

    Leases._acquire = acquiring  # type: ignore[method-assign]
    original = Promoter._apply

    @functools.wraps(original)
    def contended(self: Promoter, *args: Any, **kwargs: Any) -> Any:
        # Under the lease, like the real work: until this process waited for it or another one did.
        if not poll_until(lambda: mine.exists() or any(p != mine for p in directory.iterdir()), timeout_s):
            raise SystemExit(f"no other process came for the lease within {timeout_s:g} s")
        return original(self, *args, **kwargs)

    Promoter._apply = contended  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    hook, value, *args = argv
    if hook == "crash":
        arm_crash(value)
    elif hook == "hold":
        hold_until_contended(Path(value))
    else:
        raise SystemExit(f"unknown hook {hook!r}: crash POINT or hold DIR")
    from driftloop.cli.main import main as driftloop

    sys.argv = ["driftloop", *args]
    driftloop()


if __name__ == "__main__":
    main(sys.argv[1:])
