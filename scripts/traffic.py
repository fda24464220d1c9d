"""Replay a day of the simulated plant against `driftloop serve`, then send the delayed labels as feedback.

Used by `make demo`: real HTTP requests (single rows, a few clients at once, a few deliberately bad
rows), then `POST /v1/feedback` joining each label to its prediction id, then a one-screen summary.
Standard library only, so it runs anywhere the service does.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

NUMERIC = ("air_temperature_k", "process_temperature_k", "rotational_speed_rpm", "torque_nm", "tool_wear_min")


def _rows(raw: Path) -> list[dict[str, Any]]:
    with raw.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for name in NUMERIC:
            row[name] = _number(row[name])
    return rows


def _number(text: str | None) -> float | str | None:
    """As a client would send it: a number, null when empty, the raw text when corrupt (→ a 422)."""
    if text in ("", None):
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _labels(path: Path) -> dict[str, int]:
    with path.open(newline="") as fh:
        return {row["record_id"]: int(row["machine_failure"]) for row in csv.DictReader(fh)}


class Client:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, payload, {"content-type": "application/json"})
        response = self.conn.getresponse()
        return response.status, json.loads(response.read() or b"null")


def wait_ready(url: str, timeout: float, pid: int | None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        if pid is not None and not Path(f"/proc/{pid}").exists():
            sys.exit(f"traffic: the service (pid {pid}) exited before it was ready; see its log")
        try:
            status, body = Client(url).call("GET", "/ready")
            if status == 200:
                return body  # type: ignore[no-any-return]
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"traffic: the service at {url} was not ready within {timeout:.0f}s")
        time.sleep(0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--raw", type=Path, required=True, help="a raw partition CSV to replay")
    parser.add_argument("--labels", type=Path, required=True, help="its label partition CSV")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--server-pid", type=int, help="give up at once if this process exits")
    args = parser.parse_args()

    ready = wait_ready(args.url, 120, args.server_pid)
    rows = _rows(args.raw)[: args.requests]
    bad = [{**rows[0], "torque_nm": "high"}, {**rows[1], "product_variant": "XL"}]
    predicted: dict[str, str] = {}  # record id → prediction id
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def worker(k: int) -> None:
        client = Client(args.url)
        for row in rows[k :: args.clients]:
            started = time.perf_counter()
            status, body = client.call("POST", "/v1/predict", {"instances": [row]})
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    predicted[row["record_id"]] = body["predictions"][0]["id"]

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    client = Client(args.url)
    rejected = [client.call("POST", "/v1/predict", {"instances": [row]}) for row in bad]

    labels = _labels(args.labels)
    feedback = [
        {"prediction_id": pid, "label": labels[rid]} for rid, pid in predicted.items() if rid in labels
    ]
    status, body = client.call("POST", "/v1/feedback", {"labels": feedback})
    if status != 200:
        sys.exit(f"traffic: feedback refused ({status}): {body}")

    lat = sorted(latencies)
    model = ready["model"]
    print(
        f"served by {model['name']}/{model['version']}: {len(rows)} single-row requests from "
        f"{args.clients} clients in {elapsed:.2f}s ({len(rows) / elapsed:.0f} req/s), statuses {statuses}"
        " (422: rows the plant corrupted, refused naming the field)"
    )
    print(f"latency ms: p50 {statistics.median(lat):.2f}, p99 {lat[int(0.99 * (len(lat) - 1))]:.2f}")
    for code, answer in rejected:
        detail = answer["detail"][0]
        print(f"bad row → {code}: {detail['loc'][-1]}: {detail['msg']}")
    print(f"feedback: {body['accepted']} delayed labels joined to their prediction ids")
    if any(code >= 500 for code in statuses):
        sys.exit(f"traffic: the service failed requests: {statuses}")


if __name__ == "__main__":
    main()
