"""``serve --workers N``'s one /metrics, part by part: worker processes publishing to a shared directory
and any of them merging it (serving.worker_metrics). The real server is tests/serving/test_server.py's."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from prometheus_client.parser import text_string_to_metric_families

from driftloop.serving.metrics import ServiceMetrics
from driftloop.serving.model import ModelHolder
from driftloop.serving.worker_metrics import MULTIPROC_ENV, merged, worker_metrics_dir

if TYPE_CHECKING:
    from pathlib import Path

# One worker: PROMETHEUS_MULTIPROC_DIR is set before prometheus_client is imported (as serve sets it before
# uvicorn spawns its workers); it serves a model version, answers requests, one falls back, it publishes,
# then it either stops cleanly or waits for stdin to close and exits without a word (as a killed one).
_WORKER = """
import os, sys, types
from pathlib import Path
from driftloop.serving.metrics import ServiceMetrics
from driftloop.serving.worker_metrics import worker_stopped

requests, version, seconds, ending = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
model = types.SimpleNamespace(name="m", version=version)
holder = types.SimpleNamespace(current=model, swaps=1, load_failures=0)
metrics = ServiceMetrics(holder, None, multiprocess_dir=directory)
for _ in range(requests):
    metrics.observe("/v1/predict", 200, seconds)
metrics.observe("/nowhere", 404, seconds)
metrics.fallbacks.inc()
metrics.publish()
print("published", flush=True)
if ending == "stop":
    worker_stopped(directory)
else:
    sys.stdin.read()
"""


def _worker(directory: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, MULTIPROC_ENV: str(directory)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKER, *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "published\n"
    return proc


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_one_scrape_merges_every_worker_and_forgets_the_gauges_of_workers_that_died(tmp_path: Path) -> None:
    fast = _worker(tmp_path, "3", "1", "0.003", "wait")  # 3 requests of 3 ms, serving version 1
    slow = _worker(tmp_path, "5", "2", "0.2", "wait")  # 5 of 200 ms, already on version 2
    stopped = _worker(tmp_path, "4", "2", "0.03", "stop")  # 4 of 30 ms, then a clean stop
    stopped.communicate(timeout=30)
    assert stopped.returncode == 0
    try:
        live = _samples(merged(tmp_path))
        predict = (("path", "/v1/predict"),)
        assert live["driftloop_requests_total", (*predict, ("status", "200"))] == 12
        assert live["driftloop_requests_total", (("path", "other"), ("status", "404"))] == 3
        assert live["driftloop_request_seconds_count", predict] == 12
        assert live["driftloop_request_seconds_bucket", (("le", "0.005"), *predict)] == 3
        assert live["driftloop_request_seconds_bucket", (("le", "0.05"), *predict)] == 7
        assert live["driftloop_request_seconds_bucket", (("le", "0.25"), *predict)] == 12
        assert live["driftloop_request_seconds_sum", predict] == pytest.approx(3 * 0.003 + 5 * 0.2 + 4 * 0.03)
        assert live["driftloop_fallbacks_total", ()] == 3
        assert live["driftloop_model_swaps", ()] == 3  # a count since the start: the stopped one's stays
        # One series per running worker (the stopped one marked itself dead): a swap half done shows.
        versions = sorted(v for (name, _), v in live.items() if name == "driftloop_model_version")
        assert versions == [1, 2]
    finally:
        for proc in (fast, slow):
            proc.communicate("", timeout=30)  # exits without marking itself dead, as a killed worker would
            assert proc.returncode == 0
    after = _samples(merged(tmp_path))  # noticed at the scrape: gone, and not running
    assert not [name for name, _ in after if name == "driftloop_model_version"]
    assert after["driftloop_requests_total", (("path", "/v1/predict"), ("status", "200"))] == 12


def test_a_worker_without_multiprocess_mode_refuses_rather_than_answer_for_itself(tmp_path: Path) -> None:
    # This test process imported prometheus_client without PROMETHEUS_MULTIPROC_DIR: its metrics live in
    # memory, which another worker's scrape would never see.
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR must be set"):
        ServiceMetrics(ModelHolder(), None, multiprocess_dir=tmp_path)


def test_each_serve_gets_a_fresh_directory_removed_afterwards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, "/somewhere/else")
    with worker_metrics_dir() as first:
        (first / "counter_1.db").write_bytes(b"")
        assert os.environ[MULTIPROC_ENV] == str(first)
    with worker_metrics_dir() as second:
        assert second != first
        assert list(second.iterdir()) == []
    assert not first.exists()
    assert os.environ[MULTIPROC_ENV] == "/somewhere/else"
