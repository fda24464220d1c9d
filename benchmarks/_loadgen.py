"""A cheap HTTP/1.1 keep-alive load generator, run as its own process by ``benchmarks/serving.py``.

N connections each send pre-encoded POST requests back to back (cycling through the bodies in
``--bodies``, a JSON list of request bodies) for ``--warmup`` + ``--duration`` seconds; only requests
that start after the warm-up and finish inside the window count. Prints one JSON object on stdout:
requests, non-2xx responses, connection errors, requests/s, p50/p99/max latency in ms, and
the CPU seconds this client used (to tell whether the client, not the server, was the bottleneck).
The client runs with its garbage collector off, so that its pauses are not counted as latency.

    python benchmarks/_loadgen.py --port 8080 --path /v1/predict --bodies bodies.json -c 64
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    non_2xx: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked = 0, False
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        key = key.strip().lower()
        if key == b"content-length":
            length = int(value)
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


@dataclass(frozen=True)
class Plan:
    host: str
    port: int
    requests: list[bytes]
    start: float  # perf_counter time the measured window opens
    end: float


async def _connection(plan: Plan, offset: int, tally: Tally) -> None:
    host, port, requests, start, end = plan.host, plan.port, plan.requests, plan.start, plan.end
    i = offset
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < end:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            sent = time.perf_counter()
            writer.write(requests[i % len(requests)])
            status = await _read_response(reader)
            done = time.perf_counter()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
            tally.errors += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
            continue
        i += 1
        if sent >= start and done <= end:
            tally.latencies.append(done - sent)
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
            if not 200 <= status < 300:
                tally.non_2xx += 1
    if writer is not None:
        writer.close()


async def run(
    *, host: str, port: int, path: str, bodies: list[bytes], connections: int, warmup: float, duration: float
) -> dict[str, object]:
    requests = [
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
        for body in bodies
    ]
    start = time.perf_counter() + warmup
    plan = Plan(host, port, requests, start, start + duration)
    tally = Tally()
    await asyncio.gather(*(_connection(plan, c * 7, tally) for c in range(connections)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    lat = np.array(tally.latencies) * 1000 if tally.latencies else np.array([float("nan")])
    return {
        "connections": connections,
        "requests": len(tally.latencies),
        "non_2xx": tally.non_2xx,
        "errors": tally.errors,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "rps": len(tally.latencies) / duration,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
        "client_cpu_s": usage.ru_utime + usage.ru_stime,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--bodies", type=Path, required=True, help="a JSON list of request bodies")
    parser.add_argument("-c", "--connections", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    bodies = [json.dumps(b, separators=(",", ":")).encode() for b in json.loads(args.bodies.read_text())]
    coro = run(
        host=args.host,
        port=args.port,
        path=args.path,
        bodies=bodies,
        connections=args.connections,
        warmup=args.warmup,
        duration=args.duration,
    )
    # No collector pauses in the client: they would show up as the server's latency (wrk has none).
    # A run allocates little that only the cycle collector could free, so memory stays bounded.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(coro)
    else:
        result = uvloop.run(coro)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
