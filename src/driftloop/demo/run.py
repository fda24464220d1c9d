"""``driftloop demo``: the whole closed loop on simulated time, with no human in it.

The plant is simulated up front into ``<home>/plant/`` (its future, hidden from everything else); a
*plant clock* releases one simulated day at a time into the live store — raw readings in the morning,
failure labels in the evening — exactly as the plant would deliver them. Real components do the rest:
the training pipeline (a subprocess per step) makes v1, the promotion gates put it in production,
``driftloop serve`` runs as a separate process and answers real HTTP traffic from the plant, every call
is captured, a monitoring pass closes each day and the :class:`~driftloop.scheduling.loop.Loop` acts on
its decision: trigger → retraining → compliance checks → offline comparison → shadow on live traffic →
promotion → hot swap → rollback guard. The demo is its own scheduler here, on the simulated clock; the
scheduler (``driftloop scheduler``) runs the same loop on wall time.
"""

from __future__ import annotations

import contextlib
import csv
import http.client
import io
import os
import shutil
import socket
import sys
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from driftloop.core.models import Stage
from driftloop.demo.plan import DayRow, DemoPlan, DemoResult
from driftloop.demo.report import write_report
from driftloop.errors import DriftloopError, UsageError
from driftloop.monitoring.live import live_scores
from driftloop.pipeline.executors import executor_for
from driftloop.pipeline.params import RunParams
from driftloop.pipeline.promotion import promote
from driftloop.pipeline.runner import Runner
from driftloop.pipeline.training import training_pipeline
from driftloop.registry.promotion import ALIASES
from driftloop.runtime.processes import ServiceSpec, Supervisor
from driftloop.scheduling.loop import ACTOR, Loop, LoopEvent
from driftloop.settings import load_settings
from driftloop.simulate import SimulationRequest, parse_drift, simulate
from driftloop.simulate.plant import DATASET, SENSORS, TARGET
from driftloop.storage import open_store, store_for
from driftloop.storage.metadata import open_metadata

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from driftloop.settings import Settings
    from driftloop.storage import ObjectStore
    from driftloop.storage.metadata import Database

__all__ = ["run_demo"]

MARKER = ".driftloop-demo"  # a home holding this was made by the demo and may be reset by it
NUMERIC = SENSORS  # the readings a client sends as numbers


def run_demo(
    home: Path,
    plan: DemoPlan | None = None,
    *,
    port: int | None = None,
    say: Callable[[str], None] = print,
    on_day: Callable[[DayRow], None] | None = None,
) -> DemoResult:
    """Run the story under ``home`` (reset first when the demo made it; refused when it holds other
    data) and return the timeline; the service listens on ``port`` (None: a free one). Raises
    :class:`DriftloopError` when a component fails, :class:`UsageError` when ``port`` is taken."""
    plan = plan or DemoPlan()
    started = time.perf_counter()
    if port is not None:
        _check_port(port)  # before the reset and minutes of work, not when the service starts
    _reset(home)
    os.environ.update(plan.environment(home))
    settings = load_settings(None)
    live, plant = store_for(settings), open_store(str(home / "plant"))
    onset = plan.day(plan.onset_day)
    say(
        f"simulating {plan.history_days + plan.live_days} days of the plant ({plan.machines} machines, "
        f"{plan.rows_per_day:,} processes a day); drift from {onset}: sensor offset + concept change"
    )
    _simulate(plant, plan, onset)
    for k in range(plan.history_days):
        _release(plant, live, plan.start + timedelta(days=k), labels=True)
    db = open_metadata(settings.database_url)
    story = _Story(settings, db, plan, plant, live)
    try:
        say(
            "v1: pipeline on the history (ingest → validate → transform → features → train → evaluate → "
            "register), then the gates: None → Staging → Production"
        )
        first = _first_version(story.loop, settings, plan)
        say(f"serving {settings.registry.model_name}/{first} through `driftloop serve` (real HTTP)")
        with _Service(home, port) as service:
            rows = []
            for k in range(1, plan.live_days + 1):
                rows.append(story.live_day(service, k, say))
                if on_day is not None:
                    on_day(rows[-1])
    finally:
        db.dispose()
    events = story.events
    detected = next((d for d, e in events if e.kind == "trigger"), None)
    promoted = next((d for d, e in events if e.kind == "promoted"), None)
    champion = story.loop.registry.by_alias(settings.registry.model_name, ALIASES[Stage.PRODUCTION])
    result = DemoResult(
        rows,
        events,
        onset,
        detected,
        promoted,
        champion.version if champion else None,
        "",
        time.perf_counter() - started,
    )
    result.report = write_report(live, result)
    return result


class _Story:
    """The simulated days: the plant clock, the traffic, the nightly monitoring pass and the loop."""

    def __init__(
        self, settings: Settings, db: Database, plan: DemoPlan, plant: ObjectStore, live: ObjectStore
    ) -> None:
        self.plan, self.plant, self.live = plan, plant, live
        self.now = datetime.combine(plan.day(1), dtime(), tzinfo=UTC)
        self.events: list[tuple[date, LoopEvent]] = []
        self.loop = Loop(settings, db, clock=lambda: self.now, on_event=self._record)

    def _record(self, event: LoopEvent) -> None:
        self.events.append((self.now.date() - timedelta(days=1), event))  # the night after that day

    def live_day(self, service: _Service, k: int, say: Callable[[str], None]) -> DayRow:
        """Live day ``k``: readings arrive, the plant calls the service, labels arrive in the evening,
        then the night: a monitoring pass over the day's traffic and the loop's next moves."""
        plan, loop, day = self.plan, self.loop, self.plan.day(k)
        seen = len(self.events)
        _release(self.plant, self.live, day, labels=False)
        started = datetime.now(UTC)
        predicted = service.predict(_plant_rows(self.plant, day, plan), plan.rows_per_request)
        _release(self.plant, self.live, day, labels=True)
        labels = _labels(self.plant, day)
        service.feedback(
            [{"prediction_id": pid, "label": labels[rid]} for rid, pid in predicted.items() if rid in labels]
        )
        service.flush()
        ended = datetime.now(UTC) + timedelta(milliseconds=1)
        self.now = datetime.combine(day + timedelta(days=1), dtime(), tzinfo=UTC)
        decision = "-"
        try:
            # The traffic replayed a simulated day in a few wall-clock seconds: record that day as the
            # period it describes, so the report's and the dashboard's time axes show days.
            simulated = (self.now - timedelta(days=1), self.now)
            passed = loop.monitor(start=started, end=ended, as_of=self.now, end_day=day, period=simulated)
            decision = passed.assessment.decision
        except DriftloopError as exc:
            say(f"{day}: monitoring pass failed: {exc}")
        loop.advance(as_of=self.now, end_day=day)
        if k == plan.bad_challenger_day:
            stale = plan.day(plan.onset_day) - timedelta(days=1)
            why = f"injected: a bad challenger, trained on the old regime (up to {stale})"
            loop.trigger("manual", why, as_of=self.now, end_day=stale)
        scores = live_scores(loop.settings, self.live, started, ended)
        answered = scores.model_version[scores.model_version >= 0]
        metrics = scores.metrics(service.threshold) if scores.labelled().rows else {}
        service.await_version(loop)
        return DayRow(
            day,
            int(np.bincount(answered).argmax()) if len(answered) else None,
            len(predicted),
            _finite(metrics.get("roc_auc")),
            _finite(metrics.get("f1")),
            decision,
            [e.message for _, e in self.events[seen:]],
        )


def _reset(home: Path) -> None:
    if home.exists() and any(home.iterdir()) and not (home / MARKER).exists():
        raise UsageError(f"{home} holds data the demo did not make; run the demo with --home OTHER_DIR")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / MARKER).write_text("made by `driftloop demo`; the next demo run resets this directory\n")


def _check_port(port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise UsageError(
                f"--port {port} is not free on 127.0.0.1 ({exc.strerror}): choose another"
            ) from None


def _simulate(plant: ObjectStore, plan: DemoPlan, onset: date) -> None:
    drifts = (
        f"sensor-offset:start={onset},severity=3,sensor=air_temperature_k",
        f"concept:start={onset},severity=0.7",
    )
    request = SimulationRequest(
        dataset=DATASET,
        start=plan.start,
        days=plan.history_days + plan.live_days,
        rows_per_day=plan.rows_per_day,
        machines=plan.machines,
        seed=plan.seed,
        label_delay=timedelta(0),
        drifts=tuple(parse_drift(text, default_start=onset) for text in drifts),
    )
    simulate(request, plant)


def _release(plant: ObjectStore, live: ObjectStore, day: date, *, labels: bool) -> None:
    """The plant clock: one day's raw readings (and, in the evening, its labels) reach the live store."""
    kinds = ("raw", "labels") if labels else ("raw",)
    for kind in kinds:
        for info in plant.list(f"{kind}/{DATASET}/date={day}/"):
            live.write_bytes(info.key, plant.read_bytes(info.key))


def _first_version(loop: Loop, settings: Settings, plan: DemoPlan) -> int:
    runner = Runner(settings, loop.db, store_for(settings), training_pipeline(), executor_for(settings))
    end = plan.start + timedelta(days=plan.history_days - 1)
    view = runner.run(
        RunParams(dataset=DATASET, start=plan.start, end=end, as_of=loop.clock()), trigger="demo"
    )
    version = int(str(view.step("register").summary["model"]).rsplit("/", 1)[1])
    name = settings.registry.model_name
    for stage in (Stage.STAGING, Stage.PRODUCTION):  # with the evidence each stage asks for
        promote(
            loop.promoter,
            settings,
            loop.tracker,
            loop.registry,
            name=name,
            version=version,
            to=stage,
            actor=ACTOR,
            comment="demo: the first model",
        )
    return version


def _plant_rows(plant: ObjectStore, day: date, plan: DemoPlan) -> list[dict[str, Any]]:
    """A sample of the day's processes, as a client would send them (numbers as numbers)."""
    rows = [row for info in plant.list(f"raw/{DATASET}/date={day}/") for row in _csv(plant, info.key)]
    rng = np.random.default_rng(plan.seed + day.toordinal())
    wanted = min(len(rows), plan.requests_per_day * plan.rows_per_request)
    return [_as_client_sends(rows[i]) for i in np.sort(rng.choice(len(rows), wanted, replace=False))]


def _csv(store: ObjectStore, key: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(store.read_bytes(key).decode())))


def _as_client_sends(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(row)
    for name in NUMERIC:
        text = row.get(name)
        with contextlib.suppress(ValueError):  # the plant's corrupt readings stay text: a 422 names them
            out[name] = float(text) if text else None
    return out


def _labels(plant: ObjectStore, day: date) -> dict[str, int]:
    return {
        row["record_id"]: int(row[TARGET])
        for info in plant.list(f"labels/{DATASET}/date={day}/")
        for row in _csv(plant, info.key)
    }


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and np.isfinite(value) else None


class _Service:
    """``driftloop serve`` as a child process on a free port, and a keep-alive HTTP client to it."""

    def __init__(self, home: Path, port: int | None = None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port or 0))
            self.port = s.getsockname()[1]
        self._supervisor = Supervisor(home / "logs" / "demo", grace_s=30)  # SIGTERM: the WAL ships first
        self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        self.threshold = 0.5
        self.version: int | None = None

    def __enter__(self) -> _Service:
        command = [sys.executable, "-m", "driftloop", "serve", "--port", str(self.port)]
        ready = f"http://127.0.0.1:{self.port}/ready"  # 200 once the production model is loaded
        self._supervisor.start(ServiceSpec("prediction service", command, ready_url=ready), timeout_s=180)
        self.version = self._call("GET", "/ready")[1]["model"]["version"]
        self._refresh_threshold()
        return self

    def __exit__(self, *_: object) -> None:
        self._conn.close()
        self._supervisor.stop()

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, data = self._raw(method, path, orjson.dumps(body) if body is not None else None)
        return status, orjson.loads(data or b"null")

    def _raw(self, method: str, path: str, payload: bytes | None = None) -> tuple[int, bytes]:
        """One request on the kept-alive connection; a connection the server closed while idle (its
        keep-alive timeout, during a long monitoring pass) is reopened and the request sent once more —
        it never reached the server, so nothing is sent twice."""
        for attempt in (1, 2):
            try:
                self._conn.request(method, path, payload, {"content-type": "application/json"})
                response = self._conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._conn.close()
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def predict(self, rows: list[dict[str, Any]], per_request: int) -> dict[str, str]:
        """Send ``rows`` in requests of ``per_request``; record id → prediction id for the 200s (rows
        the plant corrupted are refused with a 422 and captured as such)."""
        predicted: dict[str, str] = {}
        for i in range(0, len(rows), per_request):
            batch = rows[i : i + per_request]
            status, body = self._call("POST", "/v1/predict", {"instances": batch})
            if status == 422:  # one bad row refuses its request: send the good ones alone
                good = [r for r in batch if all(isinstance(r.get(n), float) for n in NUMERIC)]
                status, body = self._call("POST", "/v1/predict", {"instances": good}) if good else (204, None)
                batch = good
            if status >= 500:
                self._supervisor.check()  # a dead service says so, with the end of its log
                raise DriftloopError(f"the service failed a request ({status}): {body}")
            if status == 200:
                for row, item in zip(batch, body["predictions"], strict=True):
                    predicted[str(row["record_id"])] = item["id"]
        return predicted

    def feedback(self, labels: list[dict[str, Any]]) -> None:
        if labels:
            status, body = self._call("POST", "/v1/feedback", {"labels": labels})
            if status != 200:
                raise DriftloopError(f"feedback refused ({status}): {body}")

    def flush(self) -> None:
        """Wait until the service's captures have reached the object store (its WAL ships in segments)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, text = self._raw("GET", "/metrics")
            if status == 200 and b"driftloop_capture_pending_bytes 0.0" in text:
                return
            time.sleep(0.1)

    def await_version(self, loop: Loop) -> None:
        """After a promotion, a rollback or a candidate entering shadow, wait (bounded) until the service
        follows: a simulated day lasts seconds, not the hours a poll interval is small against."""
        production = loop.promoter.changes.holder(loop.name, Stage.PRODUCTION)
        staging = loop.promoter.changes.holder(loop.name, Stage.STAGING)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, body = self._call("GET", "/v1/model")
            if status == 200:
                self.version = (body.get("current") or {}).get("version")
                shadow = (body.get("shadow") or {}).get("version")
                if self.version == production and (staging is None or shadow == staging):
                    break
            time.sleep(0.1)
        self._refresh_threshold()

    def _refresh_threshold(self) -> None:
        status, body = self._call("GET", "/v1/model")
        if status == 200 and body.get("current") and body["current"].get("threshold") is not None:
            self.threshold = float(body["current"]["threshold"])
