"""Adaptive micro-batching: concurrent requests share one model call.

A request's rows join a queue; one drainer task (alive while there is work) takes everything queued,
up to ``max_rows``, scores it in one call on a worker thread and hands each request its slice. While a
batch is being scored the next one gathers, so the batch size follows the load by itself: a lone
request is scored at once (no added latency), and under load the per-call overhead (DataFrame
construction, the transform, the torch dispatch) is paid once per batch instead of once per request.
``max_wait_s`` adds an optional short wait to fill a batch, and only when the previous batch already
had company — a single client never waits.

Where a batch is scored: handing a call to a worker thread and back costs the event loop more than a
small batch's scoring itself (and, under load, a GIL hand-off that can wait a whole switch interval).
So a batch whose size has recently scored within ``inline_budget_s`` is scored on the event loop; the
rest, and every size not measured yet, go to the worker thread, where a slow model or a big request
never blocks the loop. Costs are remembered per power-of-two batch size (moving average), so a slower
model after a swap moves its batches back to the thread within a few calls. (A scorer that blocks
without computing looks cheap on the thread; its rare inline calls, timed by the wall clock, send it
back.)

What a request gets back is decided per batch, too: ``finish`` turns the batch's prediction into each
request's result (by default its slice of the prediction) and may hand back an awaitable that must
complete before any request of the batch resumes. The service uses it to build the batch's answers and
capture records at once and to wait for their capture in one write (a single wait per batch, not one
per request; ``docs/decisions/0027-capture-per-micro-batch.md``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from starlette.concurrency import run_in_threadpool

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from driftloop.serving.model import Prediction

__all__ = ["Finish", "MicroBatcher", "slices"]

Rows: TypeAlias = "Sequence[Mapping[str, Any]]"
# (context, rows) of each request of a batch, in order, and the batch's prediction → per request what
# ``submit`` returns, and None or an awaitable to complete before any of them is returned.
Finish: TypeAlias = "Callable[[list[tuple[Any, Rows]], Prediction], tuple[list[Any], Awaitable[None] | None]]"


def slices(batch: list[tuple[Any, Rows]], prediction: Prediction) -> tuple[list[Any], None]:
    """The default ``finish``: each request gets its rows' slice of the prediction."""
    out, offset = [], 0
    for _, rows in batch:
        out.append(prediction.rows(offset, offset + len(rows)))
        offset += len(rows)
    return out, None


@dataclass
class _Item:
    rows: Rows
    future: asyncio.Future[Any]
    context: Any


class MicroBatcher:
    """Coalesces concurrent ``score(rows)`` calls on one event loop into batched calls."""

    def __init__(
        self,
        score: Callable[[list[Mapping[str, Any]]], Prediction],
        *,
        max_rows: int = 256,
        max_wait_s: float = 0.0,
        inline_budget_s: float = 0.001,
        on_batch: Callable[[int, int], None] | None = None,
        finish: Finish = slices,
    ) -> None:
        self._score = score
        self.finish = finish
        self._max_rows = max_rows
        self._max_wait = max_wait_s
        self._inline_budget = inline_budget_s
        self._costs: dict[int, float] = {}  # batch size class (bit length) → seconds per call, averaged
        self.inline_calls = self.thread_calls = 0
        self.on_batch = on_batch  # (requests, rows) per model call, for metrics
        self._queue: list[_Item] = []
        self._queued_rows = 0
        self._drainer: asyncio.Task[None] | None = None
        self._arrived: asyncio.Event | None = None
        self._crowded = False  # did the last batch have company? only then is waiting for more worth it

    async def submit(self, rows: Rows, context: Any = None) -> Any:
        """Score ``rows`` (already validated), batched with whatever else is waiting; what ``finish``
        makes of them (by default their :class:`Prediction`). ``context`` is handed to ``finish``."""
        loop = asyncio.get_running_loop()
        item = _Item(rows, loop.create_future(), context)
        self._queue.append(item)
        self._queued_rows += len(rows)
        if self._drainer is None or self._drainer.get_loop() is not loop:
            self._arrived = asyncio.Event()
            self._drainer = loop.create_task(self._drain(), name="driftloop-micro-batcher")
        elif self._arrived is not None:
            self._arrived.set()
        return await item.future

    async def _drain(self) -> None:
        try:
            while self._queue:
                if self._crowded and self._max_wait > 0:
                    await self._fill(time.monotonic() + self._max_wait)
                batch = self._take()
                self._crowded = len(batch) > 1 or bool(self._queue)
                live = [item for item in batch if not item.future.done()]  # cancelled: client went away
                if not live:
                    continue
                rows = [row for item in live for row in item.rows]
                try:
                    if self._inline(len(rows)):
                        self.inline_calls += 1
                        prediction = self._timed(rows, time.perf_counter)  # what the loop was blocked
                        await asyncio.sleep(0)  # let the loop read the requests that form the next batch
                    else:
                        self.thread_calls += 1
                        prediction = await run_in_threadpool(self._timed, rows, time.thread_time)
                except Exception as exc:  # the model and its fallback failed: every request hears why
                    _fail(live, exc)
                    continue
                if self.on_batch is not None:
                    self.on_batch(len(live), len(rows))
                try:
                    results, durable = self.finish([(item.context, item.rows) for item in live], prediction)
                except Exception as exc:
                    _fail(live, exc)
                    continue
                if durable is None:
                    _deliver(live, results)
                else:  # the requests resume once it is done; meanwhile the next batch is scored
                    asyncio.ensure_future(durable).add_done_callback(functools.partial(_after, live, results))
        finally:
            self._drainer = None

    def _inline(self, rows: int) -> bool:
        cost = self._costs.get(rows.bit_length())
        return cost is not None and cost <= self._inline_budget

    def _timed(self, rows: list[Mapping[str, Any]], clock: Callable[[], float]) -> Prediction:
        """Score, and learn what a batch of this size costs by ``clock``: on the loop, the wall time it
        was blocked; on the worker thread, its CPU time, so that waiting there for the GIL or being
        preempted does not count (the scorers compute on the calling thread)."""
        started = clock()
        prediction = self._score(rows)
        seconds, size = clock() - started, len(rows).bit_length()
        previous = self._costs.get(size)
        self._costs[size] = seconds if previous is None else 0.8 * previous + 0.2 * seconds
        return prediction

    async def _fill(self, deadline: float) -> None:
        assert self._arrived is not None
        while self._queued_rows < self._max_rows:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    def _take(self) -> list[_Item]:
        """The oldest requests up to ``max_rows`` rows (always at least one, however big)."""
        taken, rows = 0, 0
        for item in self._queue:
            if taken and rows + len(item.rows) > self._max_rows:
                break
            taken += 1
            rows += len(item.rows)
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        self._queued_rows -= rows
        return batch


def _after(items: list[_Item], results: list[Any], done: asyncio.Future[None]) -> None:
    if done.cancelled():
        _fail(items, asyncio.CancelledError())
    elif (error := done.exception()) is not None:
        _fail(items, error)
    else:
        _deliver(items, results)


def _deliver(items: list[_Item], results: list[Any]) -> None:
    for item, result in zip(items, results, strict=True):
        if not item.future.done():  # cancelled: the client went away
            item.future.set_result(result)


def _fail(items: list[_Item], error: BaseException) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(error)
