"""A real local Ray cluster of two nodes on 127.0.0.1, for the ``ray`` tests and the scale-out benchmark.

Each node is a ``ray start --block`` process in its own session: ``--block`` keeps the launcher in the
foreground, and stopping it stops the Ray processes it started (GCS, raylet, workers), so :meth:`stop`
ends this cluster only, never another one on the machine (``ray stop`` would end every Ray process of
the user). Every port a node opens is a free one, so two nodes (and two clusters) share the host; the
object store is kept small, since Ray's default is 30 % of the machine's memory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.runtime.processes import free_port
from tests.waiting import poll_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

OBJECT_STORE_BYTES = 200 * 1024 * 1024
START_TIMEOUT_S = 180.0  # two raylets on a loaded 2-core machine


def _ray_executable() -> str:
    return str(Path(sys.executable).with_name("ray"))


class RayCluster:
    """A head node and ``workers`` worker nodes, one CPU each, under ``root`` (logs and sessions)."""

    def __init__(self, root: Path, workers: int = 1) -> None:
        self.root = root
        self.port = free_port()
        # 127.0.0.2, not .1: Ray rewrites a literal 127.0.0.1 or localhost to the host's outward address, and
        # this cluster must stay on loopback (so do the node addresses).
        self.address = f"127.0.0.2:{self.port}"
        self.nodes = 1 + workers
        self._procs: list[subprocess.Popen[bytes]] = []

    def _node_args(self) -> list[str]:
        # Agents listen on fixed default ports (52365…) unless told: two nodes on one host would collide.
        return [
            "--block",
            "--num-cpus=1",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            "--node-ip-address=127.0.0.2",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            "--disable-usage-stats",
        ]

    def _launch(self, args: list[str], name: str) -> None:
        log = (self.root / f"{name}.log").open("wb")
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        self._procs.append(
            subprocess.Popen(
                [_ray_executable(), "start", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: stop() signals this cluster only
            )
        )
        log.close()

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        head = [
            "--head",
            f"--port={self.port}",
            "--include-dashboard=false",
            f"--temp-dir={self.root / 'head'}",
            *self._node_args(),
        ]
        self._launch(head, "head")
        self._wait(lambda: self.alive_nodes() >= 1, "the head node")
        for i in range(1, self.nodes):
            self._launch([f"--address={self.address}", *self._node_args()], f"worker{i}")
        self._wait(lambda: self.alive_nodes() >= self.nodes, f"{self.nodes} nodes alive")

    def alive_nodes(self) -> int:
        """Nodes the GCS reports alive (0 while it does not answer). Asked from a separate driver
        process: the GCS has no HTTP answer without the dashboard, and the caller's own process must not
        hold a connection it did not ask for."""
        probe = (
            "import ray\n"
            f"ray.init(address={self.address!r}, log_to_driver=False, logging_level='ERROR')\n"
            "print(sum(1 for n in ray.nodes() if n['Alive']))\n"
        )
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
        lines = out.stdout.strip().splitlines()
        return int(lines[-1]) if lines and lines[-1].isdigit() else 0

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        def ready() -> bool:
            if any(p.poll() is not None for p in self._procs):
                raise RuntimeError(f"a ray node exited while waiting for {what}: see {self.root}/*.log")
            return condition()

        if not poll_until(ready, START_TIMEOUT_S):
            raise TimeoutError(f"Ray cluster: no {what} after {START_TIMEOUT_S:g} s (see {self.root})")

    def stop(self) -> None:
        """Stop this cluster's nodes, workers first (the launchers end their Ray processes)."""
        for proc in reversed(self._procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self._procs.clear()


@contextlib.contextmanager
def ray_cluster(root: Path, workers: int = 1) -> Iterator[RayCluster]:
    cluster = RayCluster(root, workers)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
