"""Adaptive micro-batching: concurrent requests share model calls and each gets exactly its own answer."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from driftloop.capture import CaptureStore, read_captures
from driftloop.serving.app import create_app
from driftloop.serving.batching import MicroBatcher
from driftloop.serving.model import ModelHolder, NoModelError, Prediction
from driftloop.settings import CaptureSettings
from driftloop.storage import open_store
from tests.conftest import SETTLE_S
from tests.serving.fakes import MemoryCapture, plant_model, plant_rows

if TYPE_CHECKING:
    from pathlib import Path


class SlowScorer:
    """Scores row ``{"x": v}`` as ``v * 10``; each call takes ``delay``, and waits for ``release`` to be
    set first when one is given, so that a test decides when requests pile up."""

    def __init__(
        self, delay: float = 0.02, fail: bool = False, release: threading.Event | None = None
    ) -> None:
        self.delay = delay
        self.fail = fail
        self.release = release
        self.calls: list[int] = []  # rows per call, noted as each call starts
        self.model = plant_model(1)
        self._lock = threading.Lock()

    def __call__(self, rows: list[dict[str, Any]]) -> Prediction:
        with self._lock:
            self.calls.append(len(rows))
        if self.release is not None:
            assert self.release.wait(30), "the test never released the scorer"
        time.sleep(self.delay)
        if self.fail:
            raise NoModelError("the model and its fallback both failed (simulated)")
        return Prediction(np.array([r["x"] * 10.0 for r in rows]), self.model, fallback=False)


class BusyScorer:
    """Scores ``{"x": v}`` as ``v``, computing for ``cpu_s`` per call; notes the thread of each call."""

    def __init__(self, cpu_s: float) -> None:
        self.cpu_s = cpu_s
        self.threads: list[int] = []
        self.model = plant_model(1)

    def __call__(self, rows: list[dict[str, Any]]) -> Prediction:
        self.threads.append(threading.get_ident())
        end = time.thread_time() + self.cpu_s
        while time.thread_time() < end:
            pass
        return Prediction(np.array([r["x"] for r in rows]), self.model, fallback=False)


def _one_by_one(batcher: MicroBatcher, requests: list[list[dict[str, Any]]]) -> int:
    """Submit each request after the previous one is answered; the event loop's thread id."""

    async def run() -> int:
        for rows in requests:
            assert list((await batcher.submit(rows)).scores) == [r["x"] for r in rows]
        return threading.get_ident()

    return asyncio.run(run())


def test_cheap_batches_are_scored_on_the_loop_once_their_cost_is_known() -> None:
    scorer = BusyScorer(cpu_s=0.0001)
    batcher = MicroBatcher(scorer, max_rows=100, inline_budget_s=0.05)  # generous: CI may preempt us
    loop_thread = _one_by_one(batcher, [[{"x": float(i)}] * 3 for i in range(5)] + [[{"x": 9.0}] * 40])
    on_loop = [t == loop_thread for t in scorer.threads]
    # 3 rows: unknown at first (worker thread), then known to be cheap (the loop); 40 rows: unknown.
    assert on_loop == [False, True, True, True, True, False]
    assert (batcher.inline_calls, batcher.thread_calls) == (4, 2)


def test_costly_batches_stay_on_the_worker_thread_and_a_model_turning_slow_goes_back_there() -> None:
    slow = BusyScorer(cpu_s=0.1)
    loop_thread = _one_by_one(MicroBatcher(slow, inline_budget_s=0.05), [[{"x": 1.0}]] * 4)
    assert all(t != loop_thread for t in slow.threads)

    turning = BusyScorer(cpu_s=0.0001)
    batcher = MicroBatcher(turning, inline_budget_s=0.05)
    loop_thread = _one_by_one(batcher, [[{"x": 1.0}]] * 3)
    turning.cpu_s = 0.3  # a slower model swapped in: one blocked call is enough to move it
    loop_thread = _one_by_one(batcher, [[{"x": 2.0}]] * 4)
    assert [t == loop_thread for t in turning.threads[3:]] == [True, False, False, False]


async def _many(batcher: MicroBatcher, requests: list[list[dict[str, Any]]]) -> list[Any]:
    return await asyncio.gather(*(batcher.submit(rows) for rows in requests), return_exceptions=True)


async def _scoring(scorer: SlowScorer, calls: int) -> None:
    """Until ``calls`` calls of ``scorer`` have started (the loop goes on meanwhile)."""
    deadline = time.monotonic() + 30
    while len(scorer.calls) < calls:
        assert time.monotonic() < deadline, "the scorer was not called"
        await asyncio.sleep(0.001)


async def _queued() -> None:
    """Let every task created so far run up to its first wait: a submitted request is then queued."""
    for _ in range(3):
        await asyncio.sleep(0)


def test_concurrent_requests_share_calls_and_each_gets_its_own_scores() -> None:
    release = threading.Event()
    scorer = SlowScorer(delay=0, release=release)
    batcher = MicroBatcher(scorer, max_rows=1000)
    requests = [[{"x": float(i)}, {"x": i + 0.5}] for i in range(40)]

    async def run() -> list[Any]:
        first = asyncio.ensure_future(batcher.submit(requests[0]))
        await _scoring(scorer, 1)  # the first is being scored when the others arrive
        rest = asyncio.ensure_future(_many(batcher, requests[1:]))
        await _queued()
        release.set()
        return [await first, *await rest]

    results = asyncio.run(run())
    for i, result in enumerate(results):
        assert list(result.scores) == [i * 10.0, (i + 0.5) * 10.0]
    assert sum(scorer.calls) == 80
    # The first request is scored alone at once; the 39 that arrived meanwhile share the next call.
    assert scorer.calls == [2, 78]


def test_batches_never_exceed_max_rows_unless_one_request_is_bigger() -> None:
    scorer = SlowScorer()
    batcher = MicroBatcher(scorer, max_rows=10)
    requests = [[{"x": 1.0}] * 3 for _ in range(20)] + [[{"x": 2.0}] * 25]
    results = asyncio.run(_many(batcher, requests))
    assert [len(r.scores) for r in results] == [3] * 20 + [25]
    assert sum(scorer.calls) == 85
    assert all(n <= 10 for n in scorer.calls if n != 25)
    assert 25 in scorer.calls


def test_a_lone_request_does_not_wait_for_company() -> None:
    scorer = SlowScorer(delay=0)
    batcher = MicroBatcher(scorer, max_rows=100, max_wait_s=30.0)  # a wait that would time the test out

    async def lone() -> list[Prediction]:
        return [await asyncio.wait_for(batcher.submit([{"x": float(i)}]), 5) for i in range(3)]

    assert [list(p.scores) for p in asyncio.run(lone())] == [[0.0], [10.0], [20.0]]
    assert scorer.calls == [1, 1, 1]


def test_max_wait_gathers_requests_that_arrive_in_a_burst() -> None:
    scorer = SlowScorer(delay=0)
    batcher = MicroBatcher(scorer, max_rows=100, max_wait_s=0.2)

    async def bursts() -> None:
        await asyncio.gather(batcher.submit([{"x": 0.0}]), batcher.submit([{"x": 1.0}]))
        # That batch had company, so the next one waits up to 0.2 s for stragglers.
        first = asyncio.ensure_future(batcher.submit([{"x": 2.0}]))
        await asyncio.sleep(0.02)
        second = asyncio.ensure_future(batcher.submit([{"x": 3.0}]))
        assert [list((await f).scores) for f in (first, second)] == [[20.0], [30.0]]

    asyncio.run(bursts())
    assert scorer.calls == [2, 2]


def test_a_failing_call_fails_every_request_in_it_and_the_batcher_goes_on() -> None:
    scorer = SlowScorer(fail=True)
    batcher = MicroBatcher(scorer, max_rows=100)
    results = asyncio.run(_many(batcher, [[{"x": 1.0}]] * 5))
    assert all(isinstance(r, NoModelError) for r in results)
    scorer.fail = False
    [ok] = asyncio.run(_many(batcher, [[{"x": 4.0}]]))
    assert list(ok.scores) == [40.0]


def test_a_cancelled_request_does_not_disturb_the_others() -> None:
    release = threading.Event()
    scorer = SlowScorer(delay=0, release=release)
    batcher = MicroBatcher(scorer, max_rows=100)

    async def run() -> list[Any]:
        tasks = [asyncio.ensure_future(batcher.submit([{"x": 0.0}]))]
        await _scoring(scorer, 1)  # the first is being scored; the others wait for the next call
        tasks += [asyncio.ensure_future(batcher.submit([{"x": float(i)}])) for i in range(1, 6)]
        await _queued()
        tasks[3].cancel()
        release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(run())
    assert isinstance(results[3], asyncio.CancelledError)
    answered = [list(r.scores) for i, r in enumerate(results) if i != 3]
    assert answered == [[0.0], [10.0], [20.0], [40.0], [50.0]]
    assert scorer.calls == [1, 4]


class Finisher:
    """A ``finish`` that notes each batch's contexts and holds its answers until ``release``."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.gates: list[asyncio.Future[None]] = []

    def __call__(self, batch: list[tuple[Any, Any]], prediction: Prediction) -> tuple[list[Any], Any]:
        self.batches.append([context for context, _ in batch])
        self.gates.append(asyncio.get_running_loop().create_future())
        offset, out = 0, []
        for context, rows in batch:
            out.append((context, list(prediction.scores[offset : offset + len(rows)])))
            offset += len(rows)
        return out, self.gates[-1]


def test_finish_answers_a_whole_batch_and_its_awaitable_holds_every_request_of_it() -> None:
    release = threading.Event()
    scorer = SlowScorer(delay=0, release=release)
    finisher = Finisher()
    batcher = MicroBatcher(scorer, max_rows=1000, finish=finisher)

    async def run() -> list[Any]:
        first = asyncio.ensure_future(batcher.submit([{"x": 0.0}], "r0"))
        await _scoring(scorer, 1)  # the first is being scored when the others arrive
        rest = [asyncio.ensure_future(batcher.submit([{"x": float(i)}] * 2, f"r{i}")) for i in (1, 2, 3)]
        await _queued()
        release.set()
        while len(finisher.gates) < 2:
            await asyncio.sleep(0.001)
        await _queued()  # anything the finished batches could wake has had its turn
        assert not any(t.done() for t in [first, *rest])  # nobody resumes before the batch's awaitable
        finisher.gates[1].set_result(None)
        answers = await asyncio.gather(*rest)
        assert not first.done()  # the first batch is still held
        finisher.gates[0].set_result(None)
        return [await first, *answers]

    results = asyncio.run(run())
    assert finisher.batches == [["r0"], ["r1", "r2", "r3"]]
    assert results == [("r0", [0.0]), ("r1", [10.0, 10.0]), ("r2", [20.0, 20.0]), ("r3", [30.0, 30.0])]


def test_a_failing_finish_or_awaitable_fails_every_request_of_its_batch_only() -> None:
    scorer = SlowScorer(delay=0)
    finisher = Finisher()
    batcher = MicroBatcher(scorer, max_rows=1000, finish=finisher)

    async def run() -> list[Any]:
        held = asyncio.gather(*(batcher.submit([{"x": 1.0}], i) for i in range(3)), return_exceptions=True)
        while not finisher.gates:
            await asyncio.sleep(0.001)
        finisher.gates[0].set_exception(RuntimeError("capture refused the batch"))
        failed = await held
        ok = asyncio.ensure_future(batcher.submit([{"x": 2.0}], "next"))
        while len(finisher.gates) < 2:
            await asyncio.sleep(0.001)
        finisher.gates[1].set_result(None)
        return [*failed, await ok]

    results = asyncio.run(run())
    assert [str(r) for r in results[:3]] == ["capture refused the batch"] * 3
    assert results[3] == ("next", [20.0])

    def broken(batch: Any, prediction: Prediction) -> Any:
        raise ValueError("a bug in finish")

    batcher.finish = broken
    [error] = asyncio.run(_many(batcher, [[{"x": 1.0}]]))
    assert isinstance(error, ValueError)


class CountingCapture(MemoryCapture):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def append_nowait(self, records: Any, *, trusted: bool = False) -> None:
        self.calls += 1
        super().append_nowait(records, trusted=trusted)


def test_the_service_batches_concurrent_http_requests_without_mixing_answers() -> None:
    holder = ModelHolder()
    holder.install(plant_model(1))
    capture = CountingCapture()
    app = create_app(holder, capture=capture, batcher=MicroBatcher(holder.predict, max_rows=256))
    rows = plant_rows(60, seed=7)
    expected = holder.current.score(rows)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://driftloop") as client:
            return await asyncio.gather(
                *(client.post("/v1/predict", json={"instances": [row]}) for row in rows)
            )

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 60
    scores = [r.json()["predictions"][0]["score"] for r in responses]
    assert scores == pytest.approx(list(expected), abs=1e-7)
    by_id = {r["prediction_id"]: r for r in capture.records}
    for row, response in zip(rows, responses, strict=True):
        assert by_id[response.json()["predictions"][0]["id"]]["inputs"] == row
    metrics = app.state.metrics.render()[0].decode()
    [calls] = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("driftloop_batch_rows_count")
    ]
    assert 1 <= calls < 60  # some requests shared a model call
    assert capture.calls == calls  # and each model call's requests were captured in one append


@pytest.mark.parametrize("durability", ["process", "fsync"])
def test_batched_requests_are_captured_by_a_real_store_or_refused_together(
    tmp_path: Path, durability: str
) -> None:
    holder = ModelHolder()
    holder.install(plant_model(1))
    objects = open_store(str(tmp_path / "store"))
    cfg = CaptureSettings(durability=durability, segment_max_age_s=60)
    rows = plant_rows(40, seed=3)

    async def burst(app: Any) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://driftloop") as client:
            return await asyncio.gather(*(client.post("/v1/predict", json={"instances": [r]}) for r in rows))

    with CaptureStore(objects, tmp_path / "wal", cfg) as capture:
        app = create_app(holder, capture=capture, batcher=MicroBatcher(holder.predict, max_rows=256))
        responses = asyncio.run(burst(app))
        assert [r.status_code for r in responses] == [200] * 40
        assert capture.flush(SETTLE_S)
    answered = {r.json()["predictions"][0]["id"] for r in responses}
    assert set(read_captures(objects).column("prediction_id").to_pylist()) == answered

    full = cfg.model_copy(update={"max_buffer_bytes": 1})  # nothing fits: every batch is refused
    with CaptureStore(objects, tmp_path / "wal-full", full) as capture:
        app = create_app(holder, capture=capture, batcher=MicroBatcher(holder.predict, max_rows=256))
        responses = asyncio.run(burst(app))
    assert {r.status_code for r in responses} == {503}
    assert "capture buffer full" in responses[0].json()["error"]
