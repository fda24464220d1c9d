"""The capture store's helper process: where segments are landed and compacted, off the service's GIL."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, TypeVar

from driftloop.capture.parquet import parquet_objects
from driftloop.capture.records import Feedback, Prediction, Rejection, RequestBatch

if TYPE_CHECKING:
    from collections.abc import Callable

    from driftloop.capture.records import CaptureRecord

__all__ = ["Helper", "in_helper", "init_helper", "warm_up"]

_T = TypeVar("_T")


def init_helper(parent: int) -> None:
    """In the helper: yield the CPU to requests (background work), and exit when the service dies, even
    by ``kill -9`` (Linux), never linger."""
    with contextlib.suppress(OSError):
        os.nice(10)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(0)


def in_helper(task: Callable[..., _T], *args: Any) -> _T:
    """``task(*args)`` with the cyclic collector paused: a segment's records are ~200,000 containers
    (none in cycles), and the collections they set off were half of the conversion's CPU time. The
    helper runs only these tasks, so pausing it there affects nothing else."""
    gc.disable()
    try:
        return task(*args)
    finally:
        gc.enable()


def warm_up() -> None:
    """The helper's first task: load what conversion needs before the first segment arrives (Arrow
    imports pandas at its first array: ~1 s of CPU that would otherwise land under load)."""
    ts = "2026-01-01T00:00:00.000000+00:00"
    records: list[CaptureRecord] = [
        RequestBatch(
            ts=ts,
            model_name="m",
            model_version=1,
            fallback=False,
            threshold=0.5,
            ids=["1"],
            scores=[0.5],
            rows=[1],
            latency_ms=[1.0],
            endpoints=["/v1/predict"],
            bodies=[b'{"instances": [{}]}'],
        ),
        Prediction("0", ts, "m", 1, {}, {"id": "0"}, 1.0, False, "/", score=0.5),
        Feedback(prediction_id="0", ts=ts, label=1.0, source="api"),
        Rejection(ts=ts, model_name="m", endpoint="/", rows=1, errors=[]),
    ]
    for _ in parquet_objects(records, "warm-up"):
        pass


class Helper:
    """One helper process (pure-Python-heavy work that would otherwise take the GIL from the requests);
    or, when not ``enabled``, the caller's thread. A helper that died is replaced on the next task."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._pool_lock = threading.Lock()  # guards _pool: the shipper and the compactor share it
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Spawn the process now (interpreter, pyarrow: ~1 s of CPU) rather than under load."""
        if self.enabled:
            with self._pool_lock:
                self._running_pool()

    def __call__(self, task: Callable[..., _T], *args: Any) -> _T:
        """``task(*args)`` in the helper (tasks of several threads queue there, one at a time); raises
        what it raises, or ``BrokenProcessPool`` when the helper died (the next task gets a new one)."""
        if not self.enabled:
            return task(*args)
        with self._pool_lock:
            pool = self._running_pool()
        try:
            return pool.submit(in_helper, task, *args).result()
        except BrokenProcessPool:
            with self._pool_lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise

    def shutdown(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _running_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=init_helper,
                initargs=(os.getpid(),),
            )
            self._pool.submit(warm_up)
        return self._pool
