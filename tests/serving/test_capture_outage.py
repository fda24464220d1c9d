"""An object-store outage is one warning when it starts, one info line when the backlog is shipped, and
a metric meanwhile: never silence, never a line per retry."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from driftloop.capture import CaptureStore
from tests.conftest import SETTLE_S, wait_for
from tests.serving.test_capture import Switchable, ids, prediction, settings

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_an_outage_is_one_warning_and_its_end_one_info_line_with_the_records_shipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Switchable(tmp_path / "store")
    caplog.set_level(logging.DEBUG, logger="driftloop.capture")
    with CaptureStore(store, tmp_path / "wal", settings()) as capture:  # type: ignore[arg-type]
        capture.append(prediction())
        assert capture.flush(SETTLE_S)
        assert (capture.stats()["store_reachable"], capture.stats()["outages"]) == (True, 0)
        for outage in (1, 2):
            caplog.clear()
            store.up = False
            records = [prediction(i) for i in range(30)]
            for record in records:
                capture.append(record)
            # The store retries every 50-200 ms.
            wait_for(lambda n=5 * outage: capture.stats()["failures"] >= n, timeout=20)
            stats = capture.stats()
            assert (stats["store_reachable"], stats["outages"]) == (False, outage)
            lines = [
                (r.levelname, r.getMessage()) for r in caplog.records if r.name == "driftloop.capture.outage"
            ]
            [(level, warning)] = [line for line in lines if line[0] != "DEBUG"]  # the rest are debug lines
            assert level == "WARNING"
            assert warning.startswith(f"capture: {store.root} unreachable, buffering locally (")
            assert "store switched off by the test" in warning
            assert len(lines) >= 4
            store.up = True
            assert capture.flush(10, compact=False)
            wait_for(lambda: any(r.levelname == "INFO" for r in caplog.records), timeout=20)
            infos = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
            assert len(infos) == 1
            assert infos[0].startswith(f"capture: {store.root} reachable again after ")
            assert infos[0].endswith(" failed attempt(s), 30 buffered record(s) shipped")
            assert capture.stats()["store_reachable"] is True
    assert len(ids(store)) == 1 + 30 + 30  # nothing lost


def test_the_service_exports_the_store_state() -> None:
    from fastapi.testclient import TestClient

    from driftloop.serving.app import create_app
    from driftloop.serving.model import ModelHolder

    class Down:
        def stats(self) -> dict[str, object]:
            return {"store_reachable": False, "outages": 3, "failures": 12}

    metrics = TestClient(create_app(ModelHolder(), capture=Down())).get("/metrics").text  # type: ignore[arg-type]
    assert "driftloop_capture_store_reachable 0.0" in metrics
    assert "driftloop_capture_store_outages 3.0" in metrics
    assert "driftloop_capture_ship_failures 12.0" in metrics
