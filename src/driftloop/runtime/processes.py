"""Named child processes started, watched and stopped together, and one instance per home directory.

Each child leads its own process group (``start_new_session``): stopping it signals the whole group, so
the processes it spawned (MLflow's uvicorn and job runner, uvicorn's workers) go with it, and a
terminal's Ctrl-C reaches only the supervisor, which then stops the children in order. Standard library
only, so any layer can use it (``driftloop up``, the demo). See docs/decisions/0022-up-supervisor.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

from driftloop.errors import ConflictError, ServiceError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "Child",
    "InstanceLock",
    "ServiceSpec",
    "Stopped",
    "Supervisor",
    "die_with_parent",
    "log_tail",
    "reap_leftovers",
]

_POLL_S = 0.1
_KILL_WAIT_S = 5.0  # after SIGKILL the kernel needs only moments; this bounds a pathological case


@dataclass(frozen=True)
class ServiceSpec:
    """One service: its command and how to tell it is ready. ``ready_url``: once a GET answers 2xx or
    3xx; without one, once alive ``settle_s``. ``env``: its whole environment (default: this process's)
    plus ``PYTHONUNBUFFERED=1`` unless set, so a child killed while starting keeps what it printed."""

    name: str
    command: Sequence[str]
    ready_url: str | None = None
    settle_s: float = 1.0
    env: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Child:
    """A started service. Its pid is also its process group id."""

    name: str
    pid: int
    process: subprocess.Popen[bytes]
    log_path: Path
    log_offset: int  # where this run's output starts in the (appended) log


@dataclass(frozen=True)
class Stopped:
    """How a child ended: its exit status (negative: the signal) and whether it needed SIGKILL."""

    name: str
    pid: int
    returncode: int | None
    killed: bool


class Supervisor:
    """Starts services one after another, watches them, and stops them all, last started first.

    Output of each child goes to ``<log_dir>/<name>.log`` (appended). Any failure — a child not ready
    in time, or one that exits, whenever it happens — stops every child and raises
    :class:`~driftloop.errors.ServiceError` naming it, its status and the end of its log. Also a context
    manager that stops everything on exit.
    """

    def __init__(self, log_dir: Path, *, grace_s: float = 10.0) -> None:
        self.log_dir = log_dir
        self.grace_s = grace_s
        self._children: list[Child] = []
        self._stopped: list[Stopped] | None = None
        self.stop_requested = False  # set by request_stop() or stop(); read-only for callers

    @property
    def children(self) -> tuple[Child, ...]:
        return tuple(self._children)

    def request_stop(self) -> None:
        """Make :meth:`start` and :meth:`watch` return soon. Only sets a flag: safe in a signal handler."""
        self.stop_requested = True

    def start(self, spec: ServiceSpec, *, timeout_s: float = 60.0) -> Child:
        """Start ``spec`` and wait until it is ready, or until a stop is requested (then it returns at
        once, the child started but perhaps not ready). Raises ServiceError as the class says."""
        if self._stopped is not None:
            raise RuntimeError("this supervisor has already stopped its children")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / (re.sub(r"[^a-z0-9_.]+", "-", spec.name.lower()).strip("-") + ".log")
        with log_path.open("ab") as log:
            log.write(f"--- {_now()} {shlex.join(spec.command)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                list(spec.command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={"PYTHONUNBUFFERED": "1", **(os.environ if spec.env is None else spec.env)},
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),  # noqa: PLW1509 - see there
            )
            child = Child(spec.name, process.pid, process, log_path, log.tell())
        self._children.append(child)
        started, deadline = time.monotonic(), time.monotonic() + timeout_s
        while not self.stop_requested:
            self.check()
            if spec.ready_url is None:
                if time.monotonic() - started >= spec.settle_s:
                    return child
            elif _answers(spec.ready_url, timeout_s=max(0.1, min(1.0, deadline - time.monotonic()))):
                return child
            if time.monotonic() > deadline:
                where = f" at {spec.ready_url}" if spec.ready_url else ""
                self._fail(child, f"{spec.name} was not ready{where} within {timeout_s:g} s")
            time.sleep(_POLL_S)
        return child

    def check(self) -> None:
        """Raise ServiceError (after stopping every child) if any child has exited, for any reason."""
        if self._stopped is not None:
            return
        for child in self._children:
            code = child.process.poll()
            if code is not None:
                self._fail(child, f"{child.name} (pid {child.pid}) {_status(code)}")

    def watch(self, poll_s: float = 0.2) -> None:
        """Block until :meth:`request_stop` (returns) or a child exits (raises, as :meth:`check`)."""
        while not self.stop_requested:
            self.check()
            time.sleep(poll_s)

    def stop(self) -> list[Stopped]:
        """Stop every child, last started first: SIGTERM to its process group, SIGKILL to the group if
        any of it is still alive after ``grace_s``. Returns once no process of any group is alive.
        Idempotent: later calls return the first call's result."""
        if self._stopped is None:
            self.stop_requested = True
            self._stopped = [self._stop_one(child) for child in reversed(self._children)]
        return self._stopped

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _fail(self, child: Child, what: str) -> NoReturn:
        tail = log_tail(child.log_path, child.log_offset)  # before stopping adds shutdown noise
        self.stop()
        raise ServiceError(f"{what}: {tail or '(no output)'} (log: {child.log_path})")

    def _stop_one(self, child: Child) -> Stopped:
        _signal_group(child.pid, signal.SIGTERM)
        killed = not _wait_gone(child, self.grace_s)
        if killed:
            _signal_group(child.pid, signal.SIGKILL)
            _wait_gone(child, _KILL_WAIT_S)
        return Stopped(child.name, child.pid, child.process.returncode, killed)


def log_tail(path: Path, offset: int = 0, *, lines: int = 3, chars: int = 400) -> str:
    """The last non-empty ``lines`` of ``path`` after ``offset``, joined on one line, at most ``chars``."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(offset, fh.seek(0, os.SEEK_END) - 8192))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    joined = " | ".join(kept)
    return joined if len(joined) <= chars else "…" + joined[-chars:]


class InstanceLock:
    """At most one holder of ``path`` across processes, by ``fcntl.flock``; the file holds the holder's
    JSON ``{pid, started_at, urls}``. The kernel drops the lock when the holder dies, even by SIGKILL,
    so a file left behind never blocks: only a live holder does. The descriptor is not inherited by
    child processes, so they never keep the lock after their parent is gone."""

    def __init__(self, path: Path, *, what: str = "driftloop up") -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None
        self._started_at = ""
        self.previous: dict[str, Any] = {}

    def acquire(self) -> None:
        """Take the lock or raise ConflictError naming the holder's pid, start time and URLs."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            urls = ", ".join(f"{k} {v}" for k, v in holder.get("urls", {}).items()) or "not known yet"
            raise ConflictError(
                f"{self.what} is already running here (pid {holder.get('pid', '?')}, since "
                f"{holder.get('started_at', '?')}): URLs {urls}"
            ) from None
        # What a holder that died (kill -9) left: its children, which reap_leftovers() stops.
        self.previous = _read_holder(fd) if os.fstat(fd).st_size else {}
        self._fd, self._started_at = fd, _now()
        self.update({})

    def update(self, urls: Mapping[str, str], children: Sequence[Child] = ()) -> None:
        """Record the URLs the holder serves (shown to anyone refused the lock) and its children."""
        if self._fd is None:
            raise RuntimeError("update() needs the lock")
        record = {
            "pid": os.getpid(),
            "started_at": self._started_at,
            "urls": dict(urls),
            "children": [{"pid": c.pid, "cmdline": _cmdline(c.pid)} for c in children],
        }
        data = json.dumps(record).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Give the lock up (idempotent). The file stays: deleting a flock'ed file races a new holder."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None


def reap_leftovers(previous: Mapping[str, Any], *, grace_s: float = 5.0) -> list[int]:
    """Stop the process groups a dead holder's record lists that still run the same command line (a
    reused pid is left alone); returns the pids stopped. Their own SIGTERM on the holder's death
    (``PR_SET_PDEATHSIG``) stops them first in the usual case: this is for a child that ignored it."""
    stopped = []
    for child in previous.get("children", []):
        pid, cmdline = int(child.get("pid", 0)), child.get("cmdline", "")
        if pid <= 0 or not cmdline or _cmdline(pid) != cmdline:
            continue
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, _KILL_WAIT_S)):
            if _cmdline(pid) != cmdline:
                break
            _signal_group(pid, sig)
            deadline = time.monotonic() + wait_s
            while _cmdline(pid) == cmdline and time.monotonic() < deadline:
                time.sleep(_POLL_S)
        stopped.append(pid)
    return stopped


def _cmdline(pid: int) -> str:
    """The process's command line ("" when it is gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child sent ``sig`` when its parent dies, even by SIGKILL (Linux's
    ``PR_SET_PDEATHSIG``; None elsewhere). ``prctl`` is looked up here, in the parent: between fork and
    exec the child then only calls it and ``getppid``, taking no lock another thread might have held.
    A child whose parent died before the call exits at once."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:
            os._exit(1)

    return preexec


_PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    return cast("Callable[..., int]", ctypes.CDLL(None, use_errno=True).prctl)


def _read_holder(fd: int) -> dict[str, Any]:
    # The holder rewrites the record (truncate, then write): retry briefly rather than show a torn read.
    for _ in range(20):
        with contextlib.suppress(ValueError):
            value = json.loads(os.pread(fd, 65536, 0))
            if isinstance(value, dict):
                return value
        time.sleep(0.05)
    return {}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for a child to bind; another process may take it first)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_answering(url: str, timeout_s: float) -> None:
    """Wait until a GET of ``url`` answers 2xx or 3xx; ``TimeoutError`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not _answers(url, timeout_s=1.0):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s:g} s")
        time.sleep(0.05)


def _answers(url: str, *, timeout_s: float) -> bool:
    # No proxies: urllib honours HTTP_PROXY, and a probe of our own child must go straight to it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as response:
            return 200 <= int(response.status) < 400  # redirects followed: the answer at the end counts
    except (OSError, ValueError) as exc:  # refused, reset, timed out, an error status, a bad reply
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()
        return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_gone(child: Child, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _group_alive(child):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _group_alive(child: Child) -> bool:
    """Whether the child or any process of its group still runs (zombies do not count)."""
    if child.process.poll() is None:
        return True
    proc = Path("/proc")
    if not proc.is_dir():  # no /proc (macOS): the kernel's answer, where unreaped zombies count as alive
        with contextlib.suppress(OSError):
            os.killpg(child.pid, 0)
            return True
        return False
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses, so split after the last ')'.
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split(" ", 3)[:3]
        if int(pgrp) == child.pid and state not in ("Z", "X"):
            return True
    return False


def _status(code: int) -> str:
    if code >= 0:
        return f"exited with code {code}"
    return f"was killed by {signal.Signals(-code).name if -code in signal.valid_signals() else -code}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
