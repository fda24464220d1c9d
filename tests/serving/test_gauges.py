"""``GET /metrics`` never waits for the object store: the monitor's gauges are read in the background."""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING

from fastapi.testclient import TestClient

from driftloop.serving.app import create_app
from driftloop.serving.gauges import MonitorGauges
from driftloop.serving.model import ModelHolder
from driftloop.settings import S3Settings
from driftloop.storage import open_store
from driftloop.storage._s3 import make_client
from tests.conftest import MotoServer, wait_for

if TYPE_CHECKING:
    import pytest

KEY = "monitoring/plant/latest.prom"
GAUGE = b'driftloop_monitor_drift_share{model="plant",version="1"} %s\n'


def _age(metrics: str) -> float:
    return float(metrics.split("\ndriftloop_monitor_gauges_age_seconds ")[1].split(maxsplit=1)[0])


def test_metrics_answer_at_once_from_the_last_copy_while_s3_is_down(caplog: pytest.LogCaptureFixture) -> None:
    moto = MotoServer()  # its own: stopping it must not disturb other tests' buckets
    moto.start()
    try:
        # Retries with backoff: a read against a stopped endpoint takes seconds, as in production (14-28 s
        # with the default five attempts), so that a scrape waiting for it would show.
        s3 = S3Settings(
            endpoint_url=moto.url, access_key_id="testing", secret_access_key="testing", max_attempts=3
        )  # type: ignore[arg-type]
        bucket = f"test-{uuid.uuid4().hex[:12]}"
        make_client(s3).create_bucket(Bucket=bucket)
        store = open_store(f"s3://{bucket}/root", s3)
        store.write_bytes(KEY, GAUGE % b"0.25")
        reads: list[float] = []

        def read() -> bytes:
            started = time.monotonic()
            try:
                return store.read_bytes(KEY)
            finally:
                reads.append(time.monotonic() - started)

        gauges = MonitorGauges(read, name=f"{store.root}/{KEY}", interval_s=0.2)
        client = TestClient(create_app(ModelHolder(), monitor_gauges=gauges))
        assert _age(client.get("/metrics").text) == float("inf")  # nothing read yet
        caplog.set_level(logging.INFO, logger="driftloop.serving.gauges")
        gauges.start()
        try:
            wait_for(lambda: (GAUGE % b"0.25").decode() in client.get("/metrics").text, timeout=30)
            moto.stop()
            wait_for(lambda: any(r.levelname == "WARNING" for r in caplog.records), timeout=30)
            scrapes = []
            for _ in range(10):
                started = time.monotonic()
                metrics = client.get("/metrics").text
                scrapes.append(time.monotonic() - started)
                assert (GAUGE % b"0.25").decode() in metrics  # the last copy read
            assert max(scrapes) < 0.5, scrapes  # 14-28 s before: the read happened here, under a lock
            # Meanwhile the background read is stuck in its retries.
            wait_for(lambda: max(reads) > 0.5, timeout=30)
            age = _age(client.get("/metrics").text)
            assert age > 0.5
            moto.start()  # an empty S3 (moto keeps buckets in memory): then the next pass's gauges
            make_client(s3).create_bucket(Bucket=bucket)
            store.write_bytes(KEY, GAUGE % b"0.5")
            wait_for(lambda: (GAUGE % b"0.5").decode() in client.get("/metrics").text, timeout=30)
            assert _age(client.get("/metrics").text) < age
        finally:
            gauges.stop()
        lines = [
            (r.levelname, r.getMessage()) for r in caplog.records if r.name == "driftloop.serving.gauges"
        ]
        assert [level for level, _ in lines] == ["WARNING", "INFO"]  # one line per change, however many reads
        assert lines[0][1].startswith(f"monitor gauges: cannot read {store.root}/{KEY}, /metrics serves")
        assert lines[1][1] == f"monitor gauges: {store.root}/{KEY} readable again"
    finally:
        moto.stop()
