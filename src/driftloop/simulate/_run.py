"""``simulate``: generate each day, encode it and write it through the object store."""

from __future__ import annotations

from datetime import date, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING

from driftloop.simulate._csv import encode_day, header
from driftloop.simulate._day import Plan, simulate_day
from driftloop.simulate._drift import prepare
from driftloop.simulate._plant import DAY_MS, initial_state
from driftloop.simulate._request import (
    FAILURE_MODES,
    LABEL_COLUMNS,
    RAW_COLUMNS,
    SimulationRequest,
    SimulationSummary,
)
from driftloop.simulate._writer import PartitionWriter
from driftloop.storage import check_writable, join_key

if TYPE_CHECKING:
    from collections.abc import Callable

    from driftloop.storage import ObjectStore

__all__ = ["simulate"]

_RAW_HEADER = header(RAW_COLUMNS)
_LABEL_HEADER = header(LABEL_COLUMNS)


def simulate(
    request: SimulationRequest,
    store: ObjectStore,
    *,
    on_day: Callable[[date, int], None] | None = None,
) -> SimulationSummary:
    """Simulate ``request`` into ``store`` and summarise what was written.

    Writes ``raw/<dataset>/date=YYYY-MM-DD/part-0000.csv`` per simulated day and
    ``labels/<dataset>/date=YYYY-MM-DD/part-0000.csv`` per date on which labels become available
    (event time + ``label_delay``), each object atomically; existing objects at those keys are
    replaced. ``on_day(day, rows)`` is called after each day's objects are written.

    Before writing, the destination is probed (:func:`~driftloop.storage.check_writable`), so an
    unwritable store raises its :class:`~driftloop.errors.StorageError` with nothing written. If
    anything fails later (including ``on_day`` or an interrupt), the objects this call created are
    deleted, best effort, and the error is re-raised.
    """
    if not isinstance(request, SimulationRequest):
        raise TypeError(f"expected a SimulationRequest, got {type(request).__name__}")
    plan = Plan(
        seed=request.seed,
        start=request.start,
        rows_per_day=request.rows_per_day,
        machines=request.machines,
        drifts=prepare(request.drifts),
    )
    check_writable(store)
    writer = PartitionWriter(store, (f"raw/{request.dataset}/", f"labels/{request.dataset}/"))
    try:
        return _run(request, plan, writer, on_day)
    except BaseException as exc:
        writer.discard(exc)
        raise


def _run(
    request: SimulationRequest,
    plan: Plan,
    writer: PartitionWriter,
    on_day: Callable[[date, int], None] | None,
) -> SimulationSummary:
    counts = dict.fromkeys(FAILURE_MODES, 0)
    touched: dict[str, int] = {}
    raw_keys: list[str] = []
    label_keys: list[str] = []
    pending: dict[date, list[bytes]] = {}
    id_digits = max(7, len(str(request.rows_per_day - 1)))
    # Labels of later days arrive no earlier than this many whole days after their own day, so every
    # label partition up to (today + that) is complete once today is generated.
    settled = timedelta(days=(request.label_delay // timedelta(milliseconds=1)) // DAY_MS)

    def flush(until: date | None) -> None:
        for available in sorted(pending):
            if until is not None and available > until:
                break
            key = _key("labels", request.dataset, available)
            writer.write(key, [_LABEL_HEADER, *pending.pop(available)])
            label_keys.append(key)

    state = initial_state(plan.seed, plan.machines)
    for index in range(request.days):
        table, state = simulate_day(plan, index, state)
        encoded = encode_day(
            table, machines=plan.machines, id_digits=id_digits, label_delay=request.label_delay
        )
        key = _key("raw", request.dataset, table.day)
        writer.write(key, (_RAW_HEADER, encoded.raw))
        raw_keys.append(key)
        for available, chunk in encoded.labels:
            pending.setdefault(available, []).append(chunk)
        flush(table.day + settled)

        failures = table.failures
        counts["machine_failure"] += int(failures.machine_failure.sum())
        for mode in FAILURE_MODES[1:]:
            counts[mode] += int(getattr(failures, mode).sum())
        for scenario, rows in table.damage.touched.items():
            touched[scenario] = touched.get(scenario, 0) + rows
        if on_day is not None:
            on_day(table.day, table.rows)
    flush(None)

    return SimulationSummary(
        rows=request.days * request.rows_per_day,
        failures=MappingProxyType(counts),
        raw_keys=tuple(raw_keys),
        label_keys=tuple(label_keys),
        drifts=tuple(d.spec for d in plan.drifts),
        quarantine_hint=MappingProxyType(touched),
    )


def _key(kind: str, dataset: str, day: date) -> str:
    return join_key(kind, dataset, f"date={day.isoformat()}", "part-0000.csv")
