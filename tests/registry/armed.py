"""Test hooks armed from outside the code under test: a process killed at a named point, or a
promotion that holds its registry lease long enough for another to overlap it.

``python -m tests.registry.armed crash POINT ARGS…``: ``driftloop ARGS…``, ``kill -9``-ed at POINT.
``python -m tests.registry.armed hold SECONDS ARGS…``: ``driftloop ARGS…``, each promotion holding the
model's registry lease SECONDS before it changes anything. :func:`arm_crash` arms a point in the
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
import time
from typing import TYPE_CHECKING, Any

from driftloop.core.models import Stage
from driftloop.core.triggers import TriggerState
from driftloop.registry.changes import Changes
from driftloop.registry.lease import Lease
from driftloop.registry.promotion import Promoter
from driftloop.scheduling.gates import Gates
from driftloop.scheduling.loop import Loop

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


def hold_lease(seconds: float) -> None:
    """Every promotion holds the model's registry lease ``seconds`` before applying its change."""
    original = Promoter._apply

    @functools.wraps(original)
    def slow(self: Promoter, *args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)  # the overlap the race test needs, under the lease like the real work
        return original(self, *args, **kwargs)

    Promoter._apply = slow  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    hook, value, *args = argv
    if hook == "crash":
        arm_crash(value)
    elif hook == "hold":
        hold_lease(float(value))
    else:
        raise SystemExit(f"unknown hook {hook!r}: crash POINT or hold SECONDS")
    from driftloop.cli.main import main as driftloop

    sys.argv = ["driftloop", *args]
    driftloop()


if __name__ == "__main__":
    main(sys.argv[1:])
