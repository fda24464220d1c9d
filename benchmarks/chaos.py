"""Chaos benchmark (issue 21): the demo's story on separately run parts, with faults on a schedule.

Real parts, each its own process: an S3 endpoint (moto's server), a private PostgreSQL cluster
(``initdb`` + ``pg_ctl``, so restarting it disturbs nothing else on the machine), an MLflow tracking
server, ``driftloop serve``, and each night's loop in its own process (``_chaos_night.py``). Faults,
by live day (drift begins on live day 3, as in ``make demo``):

- day 2: S3 outage for the whole day's traffic (the endpoint frozen with SIGSTOP, thawed at evening);
- day 4: the night's loop worker killed with ``-9`` while it trains; the next worker takes over;
- day 5: the MLflow server restarted before the day;
- day 6: PostgreSQL restarted while the plant sends its requests;
- day 7: a poisoned label batch: each of the day's predictions first labelled inverted.

Printed: drift onset → recovery (simulated days until production serves a retrained version), failed
requests, lost captures (acknowledged predictions missing from the store), stuck states (a trigger
still training or held when no worker runs, a pipeline run left running, a registry intent left),
false retrainings (started after the recovery) and how many faults were exercised. Every figure but
the time must be 0; the exit status is 1 otherwise.

    .venv/bin/python benchmarks/chaos.py [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from driftloop.core.runs import RunStatus, StepStatus
from driftloop.demo import run as demo
from driftloop.pipeline import records
from driftloop.runtime.processes import free_port, wait_answering
from driftloop.scheduling.ledger import ACTIVE, Ledger
from driftloop.scheduling.loop import Loop
from driftloop.settings import load_settings
from driftloop.storage import open_store, store_for
from driftloop.storage.metadata import RegistryLockRow, open_metadata

HERE = Path(__file__).resolve().parent
BUCKET = "chaos"
S3_OUTAGE_DAY, KILL_DAY, MLFLOW_DAY, POSTGRES_DAY, POISON_DAY = 2, 4, 5, 6, 7


class Postgres:
    """A private cluster on a free port (run as the ``postgres`` user when this is root)."""

    def __init__(self, root: Path) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")) or [shutil.which("pg_ctl") or ""]
        if not found[-1]:
            raise SystemExit("chaos: PostgreSQL server binaries (pg_ctl, initdb) are not installed")
        self.bin = Path(found[-1]).parent
        self.dir = root / "pg"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:  # the postgres user must reach its directory
            root.chmod(0o755)
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "postgres", "-A", "trust")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(self.bin / tool), *args], check=True, capture_output=True)

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-o", options, "-w", *args
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("-m", "fast", "restart")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("-m", "fast", "stop")


class Service:
    """A server process on a free port, restartable on the same port."""

    def __init__(self, command: list[str], health: str, log: Path) -> None:
        self.command, self.health, self.log = command, health, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        wait_answering(self.health, 90)

    def stop(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a frozen one must be able to die
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


@dataclass
class Tally:
    sent: int = 0
    failed: list[str] = field(default_factory=list)
    acknowledged: set[str] = field(default_factory=set)
    faults: dict[str, str] = field(default_factory=dict)
    events: list[tuple[date, dict[str, Any]]] = field(default_factory=list)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep", action="store_true", help="Keep the working directory (its path is printed)."
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="driftloop-chaos-"))
    try:
        ok = run(root)
    finally:
        if args.keep:
            print(f"working directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    sys.exit(0 if ok else 1)


def run(root: Path) -> bool:
    plan = demo.DemoPlan(bad_challenger_day=0)
    home = root / "home"
    home.mkdir()
    pg = Postgres(root)
    s3_port, mlflow_port = free_port(), free_port()
    s3 = Service(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
        f"http://127.0.0.1:{s3_port}/moto-api/",
        root / "moto.log",
    )
    server = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(mlflow_port)]
    backend = ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--workers", "1"]
    artifacts = ["--artifacts-destination", str(root / "artifacts")]
    mlflow = Service(
        [*server, *backend, *artifacts], f"http://127.0.0.1:{mlflow_port}/health", root / "mlflow.log"
    )
    pg.start()
    started: list[Service] = []
    try:
        for part in (s3, mlflow):
            part.start()
            started.append(part)
        s3_url = f"http://127.0.0.1:{s3_port}"
        boto3.client(
            "s3",
            endpoint_url=s3_url,
            region_name="us-east-1",
            aws_access_key_id="chaos",
            aws_secret_access_key="chaos",
        ).create_bucket(Bucket=BUCKET)
        os.environ.update(
            plan.environment(home)
            | {
                "DRIFTLOOP_STORAGE__ROOT": f"s3://{BUCKET}/root",
                "DRIFTLOOP_STORAGE__S3__ENDPOINT_URL": s3_url,
                "DRIFTLOOP_STORAGE__S3__ACCESS_KEY_ID": "chaos",
                "DRIFTLOOP_STORAGE__S3__SECRET_ACCESS_KEY": "chaos",
                "DRIFTLOOP_STORAGE__S3__CONNECT_TIMEOUT_S": "2",
                "DRIFTLOOP_STORAGE__S3__READ_TIMEOUT_S": "5",
                "DRIFTLOOP_DATABASE__URL": pg.url,
                "DRIFTLOOP_TRACKING__URI": f"http://127.0.0.1:{mlflow_port}",
                "MLFLOW_DISABLE_TELEMETRY": "true",
            }
        )
        return _story(plan, home, Parts(pg, s3, mlflow))
    finally:
        for part in reversed(started):
            part.stop()
        pg.stop()


@dataclass
class Parts:
    """The separately run parts the faults hit."""

    pg: Postgres
    s3: Service
    mlflow: Service


def _story(plan: demo.DemoPlan, home: Path, parts: Parts) -> bool:
    settings = load_settings(None)
    live, plant = store_for(settings), open_store(str(home / "plant"))
    onset = plan.day(plan.onset_day)
    demo._simulate(plant, plan, onset)
    for k in range(plan.history_days):
        demo._release(plant, live, plan.start + timedelta(days=k), labels=True)
    db = open_metadata(settings.database_url)
    began = datetime.now(UTC)
    print(f"chaos: {plan.live_days} live days, drift from {onset}; S3 (moto), PostgreSQL, MLflow server")
    try:
        loop = Loop(settings, db, clock=lambda: days.now)
        days = Days(plan=plan, parts=parts, plant=plant, live=live, db=db, loop=loop)
        first = demo._first_version(days.loop, settings, plan)
        print(f"v{first} in production; serving it")
        with demo._Service(home) as service:
            for k in range(1, plan.live_days + 1):
                days.live_day(k, service)
        figures = _figures(settings, live, db, days.tally, onset=onset, began=began)
    finally:
        db.dispose()
    return _report(figures, days.tally)


class Days:
    """The story's simulated days, each with its fault (see the module docstring)."""

    def __init__(
        self, *, plan: demo.DemoPlan, parts: Parts, plant: Any, live: Any, db: Any, loop: Loop
    ) -> None:
        self.plan, self.parts, self.plant, self.live, self.db, self.loop = plan, parts, plant, live, db, loop
        self.now = datetime.combine(plan.day(1), dtime(), tzinfo=UTC)
        self.tally = Tally()

    def live_day(self, k: int, service: demo._Service) -> None:
        plan, parts, tally = self.plan, self.parts, self.tally
        day = plan.day(k)
        demo._release(self.plant, self.live, day, labels=False)
        if k == MLFLOW_DAY:
            parts.mlflow.stop()
            parts.mlflow.start()
            tally.faults["MLflow server restarted"] = str(day)
        if k == S3_OUTAGE_DAY:
            _signal(parts.s3, signal.SIGSTOP)
            tally.faults["S3 outage all day"] = str(day)
        restart = threading.Timer(0.5, parts.pg.restart) if k == POSTGRES_DAY else None
        if restart is not None:
            restart.start()
            tally.faults["PostgreSQL restarted during traffic"] = str(day)
        started = datetime.now(UTC)
        predicted = _predict(service, demo._plant_rows(self.plant, day, plan), plan.rows_per_request, tally)
        if restart is not None:
            restart.join()
        if k == S3_OUTAGE_DAY:  # thawed at evening, before the plant's labels arrive
            _signal(parts.s3, signal.SIGCONT)
        demo._release(self.plant, self.live, day, labels=True)
        labels = demo._labels(self.plant, day)
        pairs = [(p, labels[r]) for r, p in predicted.items() if r in labels]
        if k == POISON_DAY:  # inverted labels first: the first label of a prediction is the one kept
            _feedback(service, [{"prediction_id": p, "label": 1 - y} for p, y in pairs], tally)
            tally.faults["poisoned label batch"] = str(day)
        _feedback(service, [{"prediction_id": p, "label": y} for p, y in pairs], tally)
        service.flush()
        ended = datetime.now(UTC) + timedelta(milliseconds=1)
        self.now = datetime.combine(day + timedelta(days=1), dtime(), tzinfo=UTC)
        events = _night((self.now, started, ended), day, self.db, kill=k == KILL_DAY, tally=tally)
        tally.events += [(day, e) for e in events]
        service.await_version(self.loop)
        decision = next((e["message"] for e in events if e["kind"] == "decision"), "-")
        moves = " | ".join(e["message"][:90] for e in events if e["kind"] != "decision")
        print(f"  {day}  v{service.version}  {decision:<6} {moves}")


def _signal(part: Service, sig: signal.Signals) -> None:
    assert part.proc is not None
    os.kill(part.proc.pid, sig)


def _predict(
    service: demo._Service, rows: list[dict[str, Any]], per_request: int, tally: Tally
) -> dict[str, str]:
    """Send the day's rows; record id → prediction id of each acknowledged row; failures tallied."""
    predicted: dict[str, str] = {}
    for i in range(0, len(rows), per_request):
        batch = [
            r for r in rows[i : i + per_request] if all(isinstance(r.get(n), float) for n in demo.NUMERIC)
        ]
        if not batch:
            continue
        tally.sent += 1
        try:
            status, body = service._call("POST", "/v1/predict", {"instances": batch})
        except OSError as exc:
            tally.failed.append(f"predict: {exc}")
            continue
        if status != 200:
            tally.failed.append(f"predict {status}: {str(body)[:200]}")
            continue
        for row, item in zip(batch, body["predictions"], strict=True):
            predicted[str(row["record_id"])] = item["id"]
            tally.acknowledged.add(item["id"])
    return predicted


def _feedback(service: demo._Service, labels: list[dict[str, Any]], tally: Tally) -> None:
    for i in range(0, len(labels), 500):
        tally.sent += 1
        try:
            status, body = service._call("POST", "/v1/feedback", {"labels": labels[i : i + 500]})
        except OSError as exc:
            tally.failed.append(f"feedback: {exc}")
            continue
        if status != 200:
            tally.failed.append(f"feedback {status}: {str(body)[:200]}")


def _night(
    times: tuple[datetime, datetime, datetime], day: date, db: Any, *, kill: bool, tally: Tally
) -> list[dict[str, Any]]:
    """The night's loop in its own process (``times``: the simulated now, and the day's traffic window);
    with ``kill`` that process is killed with -9 while its retraining trains, and a second one runs the
    night again (it takes the retraining over)."""
    command = [
        sys.executable,
        str(HERE / "_chaos_night.py"),
        *(t.isoformat() for t in times),
        day.isoformat(),
    ]
    events: list[dict[str, Any]] = []
    if kill:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        model = load_settings(None).registry.model_name
        while proc.poll() is None and not _training(db, model):
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            tally.faults["loop worker killed -9 while training"] = str(day)
        out, _ = proc.communicate()
        events += _events(out)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        tally.failed.append(f"night {day}: the loop worker exited {done.returncode}")
    return events + _events(done.stdout)


def _training(db: Any, model: str) -> bool:
    for trigger in Ledger(db).triggers(model, states=("training",)):
        if trigger.pipeline_run:
            with contextlib.suppress(Exception):
                if records.get_run(db, trigger.pipeline_run).step("train").status == StepStatus.RUNNING:
                    return True
    return False


def _events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _figures(
    settings: Any, live: Any, db: Any, tally: Tally, *, onset: date, began: datetime
) -> dict[str, Any]:
    from driftloop.monitoring.window import partition_keys

    name = settings.registry.model_name
    stored: set[str] = set()
    for key in partition_keys(
        live, f"captures/model={name}", began, datetime.now(UTC) + timedelta(minutes=1)
    ):
        table = pq.read_table(pa.BufferReader(live.read_bytes(key)), columns=["prediction_id"])
        stored.update(str(v) for v in table.column("prediction_id").to_pylist())
    promoted = next((d for d, e in tally.events if e["kind"] == "promoted"), None)
    ledger = Ledger(db)
    triggers = ledger.triggers(name, limit=1000)
    stuck = [
        f"trigger {t.id} {t.state} held by {t.holder}"
        for t in triggers
        if t.state in ACTIVE and (t.state == "training" or t.holder)
    ]
    stuck += [
        f"pipeline run {r.id} {r.status}"
        for r in records.list_runs(db, limit=1000)
        if r.status in (RunStatus.RUNNING, RunStatus.PENDING)
    ]
    with db.session() as session:
        leases = session.scalars(sa.select(RegistryLockRow)).all()
        stuck += [f"registry lease {row.model}: intent left" for row in leases if row.intent]
    after = [t for t in triggers if promoted and t.pipeline_run and t.created_at.date() > promoted]
    # The retrained version is good: a rollback of it (by a poisoned label batch, say) is a false one.
    rollbacks = [f"{d}: {e['message'][:140]}" for d, e in tally.events if e["kind"] == "rollback"]
    return {
        "recovery_days": (promoted - onset).days if promoted else None,
        "promoted": promoted,
        "failed": tally.failed,
        "lost": sorted(tally.acknowledged - stored),
        "acknowledged": len(tally.acknowledged),
        "stuck": stuck,
        "false_retrainings": [f"trigger {t.id}: {t.reason[:120]}" for t in after],
        "false_rollbacks": rollbacks,
    }


def _report(figures: dict[str, Any], tally: Tally) -> bool:
    recovery = figures["recovery_days"]
    print()
    for fault, day in tally.faults.items():
        print(f"  fault on {day}: {fault}")
    print(
        f"onset → recovery      {recovery if recovery is not None else 'never'} simulated days"
        + (f" (retrained version in production on {figures['promoted']})" if recovery is not None else "")
    )
    print(f"failed requests       {len(figures['failed'])} of {tally.sent}")
    print(f"lost captures         {len(figures['lost'])} of {figures['acknowledged']:,} acknowledged")
    print(f"stuck states          {len(figures['stuck'])}")
    print(f"false retrainings     {len(figures['false_retrainings'])}")
    print(f"false rollbacks       {len(figures['false_rollbacks'])}")
    print(f"faults exercised      {len(tally.faults)} of 5")
    checked = ("failed", "lost", "stuck", "false_retrainings", "false_rollbacks")
    for what in checked:
        for item in figures[what][:5]:
            print(f"    {what}: {item}")
    zeros = not any(figures[k] for k in checked)
    return zeros and recovery is not None and len(tally.faults) == 5


if __name__ == "__main__":
    main()
