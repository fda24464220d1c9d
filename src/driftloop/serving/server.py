"""Assembling the service from settings: model follower, capture store, micro-batcher, app, lifespan.

With ``serving.workers`` > 1, uvicorn starts that many processes, each building its own app through
:func:`app_from_env`. Each worker needs its own capture write-ahead log (a WAL directory is locked by
one store), so a worker takes the first free *slot*: slot 0 is ``capture.wal_dir`` itself (what a
single-process service uses, so switching between one and several workers strands nothing), slot k is
``<wal_dir>/worker-<k>``. A restarted worker takes a free slot and recovers what was left in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from driftloop.auth import gate_for
from driftloop.core.models import Stage
from driftloop.errors import ConflictError, DriftloopError, StorageUnavailableError
from driftloop.logs import notify
from driftloop.registry.changes import ALIASES, Changes
from driftloop.registry.gates import StageGate
from driftloop.serving.app import create_app
from driftloop.serving.batching import MicroBatcher
from driftloop.serving.gauges import MonitorGauges
from driftloop.serving.id_keys import prediction_id_keys
from driftloop.serving.model import Follower, LoadedModel, ModelHolder, load_version
from driftloop.serving.worker_metrics import MULTIPROC_ENV, PUBLISH_INTERVAL_S, worker_stopped

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

    from fastapi import FastAPI

    from driftloop.capture import CaptureStore
    from driftloop.registry import Registry
    from driftloop.serving.metrics import ServiceMetrics
    from driftloop.settings import Settings

__all__ = ["CONFIG_ENV", "app_from_env", "build_app", "monitor_gauges", "wal_slot"]

log = logging.getLogger(__name__)

# The configuration file of ``driftloop serve --workers N``, handed to the worker processes.
CONFIG_ENV = "DRIFTLOOP_SERVE_CONFIG"


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker process (``uvicorn --factory``); settings as the CLI loaded them."""
    from driftloop.logs import configure_logging
    from driftloop.settings import load_settings

    config = os.environ.get(CONFIG_ENV)
    settings = load_settings(Path(config) if config else None)
    configure_logging(settings.logging.level)  # a spawned worker starts with logging as Python leaves it
    metrics_dir = os.environ.get(MULTIPROC_ENV)  # set by serve before it started the workers
    return build_app(settings, slots=True, metrics_dir=Path(metrics_dir) if metrics_dir else None)


def _stage_changes(settings: Settings, registry: Registry, name: str, alias: str) -> Changes | None:
    """The audit and leases the gates consult; None when the service follows a non-stage alias."""
    from driftloop.storage.metadata import open_metadata

    if alias not in ALIASES.values():
        return None
    return Changes(open_metadata(settings.database_url, echo=settings.database.echo), registry)


def _resolver(
    settings: Settings, registry: Registry, changes: Changes | None, alias: str
) -> Callable[[], int | None]:
    """The version ``alias`` stands for: for a stage alias, what the audit put there (the gate)."""
    name = settings.registry.model_name
    stage = next((s for s, a in ALIASES.items() if a == alias), None)
    if changes is not None and stage is not None:
        revert, alert = settings.policy.revert_out_of_band, _alerter(settings, name)
        gate = StageGate(changes, name, stage, revert=revert, alert=alert)
        return gate.resolve

    def resolve() -> int | None:
        found = registry.by_alias(name, alias)
        return found.version if found is not None else None

    return resolve


def _alerter(settings: Settings, name: str) -> Callable[[str], None]:
    """An out-of-band change goes to the notification webhook too (the gate has logged it)."""

    def alert(message: str) -> None:
        notify(settings.schedule.notify_webhook, {"model": name, "kind": "out-of-band", "message": message})

    return alert


def wal_slot(wal_dir: Path, k: int) -> Path:
    """The WAL directory of worker slot ``k``."""
    return wal_dir if k == 0 else wal_dir / f"worker-{k}"


def build_app(settings: Settings, *, slots: bool = False, metrics_dir: Path | None = None) -> FastAPI:
    """The service for ``settings``: follows ``registry.model_name@serving.alias`` and captures to storage.

    ``slots``: take the first free WAL slot (several workers) instead of requiring ``capture.wal_dir``.
    ``metrics_dir``: the workers' shared metrics directory (``serving.worker_metrics``); ``GET /metrics``
    then answers for all of them.
    """
    from driftloop.registry import Registry
    from driftloop.tracking import Tracker

    # One intra-op thread: two threads stall on a 2-core host, and requests already run concurrently.
    torch.set_num_threads(1)
    tracker, registry = Tracker(settings), Registry(settings)
    name, cfg = settings.registry.model_name, settings.serving

    changes = _stage_changes(settings, registry, name, cfg.alias)

    def load(version: int) -> LoadedModel:
        return load_version(settings, tracker, registry, name, version)

    holder = ModelHolder()
    follower = Follower(holder, _resolver(settings, registry, changes, cfg.alias), load, cfg.poll_interval_s)
    # The staging version, scored in shadow beside production: the online evidence for promotion.
    shadow = (
        Follower(
            holder,
            _resolver(settings, registry, changes, ALIASES[Stage.STAGING]),
            load,
            cfg.poll_interval_s,
            shadow=True,
        )
        if cfg.shadow
        else None
    )
    sink = _LazyCapture(settings, slots) if settings.capture.enabled else None
    if sink is not None and not slots:
        sink.start()  # now, so that a WAL held by another process is a one-line error before binding

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if sink is not None:
            sink.start()  # recovers and ships what a previous process left in the WAL
        if changes is not None:
            with contextlib.suppress(DriftloopError):  # unreachable now: the follower says so each poll
                changes.recover()  # a promotion killed half-way is finished before anything is served
        follower.check_once()  # serve the current version from the first request on
        if shadow is not None:
            shadow.check_once()
        if holder.current is None:
            log.warning("no %s@%s to serve yet; /ready says 503 until one is promoted", name, cfg.alias)
        # Everything loaded so far (torch, MLflow, the model) lives as long as the process: keep it out
        # of the collector's full passes, which otherwise stall every request for ~200 ms on this heap.
        gc.collect()
        gc.freeze()
        follower.start()
        if shadow is not None:
            shadow.start()
        gauges.start()
        publishing = _publishing(app.state.metrics) if metrics_dir is not None else None
        try:
            yield
        finally:
            gauges.stop()
            follower.stop()
            if shadow is not None:
                shadow.stop()
            if sink is not None:
                sink.close()
            if publishing is not None and metrics_dir is not None:  # last: what the close shipped counts
                await _stop_publishing(publishing, app.state.metrics, metrics_dir)

    batcher = None
    if cfg.micro_batching:
        batcher = MicroBatcher(
            holder.predict, max_rows=cfg.batch_max_rows, max_wait_s=cfg.batch_max_wait_ms / 1000
        )
    secret = cfg.webhook_secret.get_secret_value() if cfg.webhook_secret else None
    gauges = monitor_gauges(settings, name)
    return create_app(
        holder,
        capture=sink,
        max_rows=cfg.max_rows,
        max_body_bytes=cfg.max_body_bytes,
        max_field_errors=cfg.max_field_errors,
        batcher=batcher,
        on_registry_event=_both(follower, shadow),
        webhook_secret=secret,
        monitor_gauges=gauges,
        lifespan=lifespan,
        gate=gate_for(settings),
        id_keys=prediction_id_keys(settings),
        max_feedback_rows=cfg.max_feedback_rows,
        metrics_dir=metrics_dir,
    )


def monitor_gauges(settings: Settings, model: str) -> MonitorGauges:
    """The latest ``driftloop monitor`` pass's gauges for ``model`` (``monitoring/<model>/latest.prom``),
    re-read every 10 s in the background so that ``GET /metrics`` never waits for the object store."""
    from driftloop.storage import store_for

    store, key = store_for(settings), f"monitoring/{model}/latest.prom"
    return MonitorGauges(lambda: store.read_bytes(key), name=f"{store.root}/{key}")


def _publishing(metrics: ServiceMetrics) -> asyncio.Task[None]:
    """A task publishing this worker's metrics for the others' scrapes, every ``PUBLISH_INTERVAL_S``."""

    async def run() -> None:
        while True:
            await asyncio.sleep(PUBLISH_INTERVAL_S)
            metrics.publish()

    return asyncio.create_task(run(), name="publish-metrics")


async def _stop_publishing(task: asyncio.Task[None], metrics: ServiceMetrics, directory: Path) -> None:
    """The worker stops: its last counts published (they stay in the totals), its live gauges removed."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    metrics.publish()
    worker_stopped(directory)


def _both(follower: Follower, shadow: Follower | None) -> Callable[[], None]:
    """A registry event wakes both followers: promotions move production and staging together."""

    def wake() -> None:
        follower.wake()
        if shadow is not None:
            shadow.wake()

    return wake


class _LazyCapture:
    """The capture store, opened in the lifespan (in the worker process) on the first free WAL slot."""

    def __init__(self, settings: Settings, slots: bool) -> None:
        self._settings = settings
        self._slots = slots
        self._store: CaptureStore | None = None

    def start(self) -> None:
        """Open the store (idempotent)."""
        if self._store is not None:
            return
        from driftloop.capture import CaptureStore
        from driftloop.storage import store_for

        objects, root = store_for(self._settings), self._settings.capture_wal_dir
        for k in range(256 if self._slots else 1):
            store = CaptureStore(objects, wal_slot(root, k), self._settings.capture)
            try:
                store.start()
            except ConflictError:
                if not self._slots:
                    raise
                continue
            self._store = store
            log.info("capturing through the write-ahead log in %s", wal_slot(root, k))
            return
        raise ConflictError(f"every capture WAL slot under {root} is in use")

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    @property
    def store(self) -> CaptureStore:
        if self._store is None:
            raise StorageUnavailableError("the capture store is not open (the service is starting)")
        return self._store

    async def append_async(self, record: Mapping[str, Any]) -> None:
        await self.store.append_async(record)

    def append_many_async(
        self, records: Sequence[Mapping[str, Any]], *, trusted: bool = False
    ) -> Awaitable[None]:
        return self.store.append_many_async(records, trusted=trusted)  # no coroutine of its own per call

    def append_nowait(
        self, records: Sequence[Mapping[str, Any]], *, trusted: bool = False
    ) -> Awaitable[None] | None:
        return self.store.append_nowait(records, trusted=trusted)

    def stats(self) -> Mapping[str, Any]:
        return self.store.stats() if self._store is not None else {}
