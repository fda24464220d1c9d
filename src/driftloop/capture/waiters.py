"""Who waits for an append, and how they are woken: thread futures, event-loop futures, loop groups."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Callable

    from driftloop.capture.records import CaptureRecord

__all__ = ["Group", "LoopGroups", "Waiter", "settle", "settle_here"]

# Who waits for an append: a thread (a running concurrent Future) or a coroutine (its loop and future).
Waiter: TypeAlias = Future[None] | tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]
Group: TypeAlias = "list[CaptureRecord]"  # the records of one append, all or none


def settle(waiters: list[Waiter], error: BaseException | None) -> None:
    """Wake every waiter of a group: one ``call_soon_threadsafe`` per event loop, not one per append."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for waiter in waiters:
        if isinstance(waiter, Future):
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)
        else:
            by_loop.setdefault(waiter[0], []).append(waiter[1])
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(settle_here, futures, error)


def settle_here(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    """On the futures' own loop: resolve each one still awaited (a cancelled one: the client left)."""
    for future in futures:
        if not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


class LoopGroups:
    """Appends made on an event loop during one of its iterations, written together at the next.

    Under load the requests of a micro-batch finish in the same loop iteration; each used to pay a
    ``write`` system call and a lock. :meth:`join` files an append and returns a future of its own (a
    cancelled waiter never cancels the others'); the first append of an iteration schedules ``write``
    for the next one, which gets every group filed meanwhile and returns, per group, None (written) or
    the exception that group's waiter gets.
    """

    def __init__(self, write: Callable[[list[Group]], list[BaseException | None]]) -> None:
        self.write = write
        self._open: dict[asyncio.AbstractEventLoop, tuple[list[Group], list[asyncio.Future[None]]]] = {}

    def join(self, loop: asyncio.AbstractEventLoop, group: Group) -> asyncio.Future[None]:
        pending = self._open.get(loop)
        if pending is None:
            pending = self._open[loop] = ([], [])
            loop.call_soon(self._close, loop)
        future = loop.create_future()
        pending[0].append(group)
        pending[1].append(future)
        return future

    def _close(self, loop: asyncio.AbstractEventLoop) -> None:
        groups, futures = self._open.pop(loop)
        try:
            outcomes = self.write(groups)
        except Exception as exc:  # a bug in writing: every waiter hears of it rather than hang
            outcomes = [exc] * len(groups)
        for future, outcome in zip(futures, outcomes, strict=True):
            if not future.done():  # cancelled: the client went away
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)
