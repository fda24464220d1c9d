"""The supervisor and the instance lock, with tiny Python children: readiness, failures, clean stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import psutil
import pytest

from driftloop.errors import ConflictError, ServiceError
from driftloop.runtime.processes import InstanceLock, ServiceSpec, Supervisor, log_tail, reap_leftovers
from tests.conftest import free_port, wait_for

if TYPE_CHECKING:
    from pathlib import Path

PY = sys.executable


def py(code: str) -> list[str]:
    return [PY, "-c", code]


def alive(pid: int) -> bool:
    """Running, as the tests mean it: a zombie (dead, not yet reaped by init) is not alive."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def read_pid(path: Path, timeout_s: float = 10.0) -> int:
    wait_for(lambda: path.exists() and bool(path.read_text().strip()), timeout_s, f"{path} to be written")
    return int(path.read_text())


def write_pid(path: Path) -> str:
    """Python code that writes its process's pid to ``path`` atomically (a reader never sees half)."""
    tmp = f"{path}.tmp"
    return f"open({tmp!r}, 'w').write(str(os.getpid())); os.replace({tmp!r}, {str(path)!r})"


def http_server(port: int) -> list[str]:
    return [PY, "-m", "http.server", "--bind", "127.0.0.1", str(port)]


def test_ready_when_the_url_answers_then_stopped_by_sigterm(tmp_path: Path) -> None:
    port = free_port()
    sup = Supervisor(tmp_path / "logs", grace_s=5)
    child = sup.start(ServiceSpec("web", http_server(port), ready_url=f"http://127.0.0.1:{port}/"))
    assert alive(child.pid)
    assert os.getpgid(child.pid) == child.pid  # its own process group
    [stopped] = sup.stop()
    assert (stopped.name, stopped.pid, stopped.killed) == ("web", child.pid, False)
    assert stopped.returncode == -signal.SIGTERM
    assert not alive(child.pid)
    assert sup.stop() == [stopped]  # idempotent
    with pytest.raises(RuntimeError):
        sup.start(ServiceSpec("late", py("pass")))


def test_without_a_url_ready_once_it_stayed_alive(tmp_path: Path) -> None:
    with Supervisor(tmp_path) as sup:
        began = time.monotonic()
        child = sup.start(ServiceSpec("worker", py("import signal; signal.pause()"), settle_s=0.3))
        assert time.monotonic() - began >= 0.3
        assert sup.children == (child,)
    assert not alive(child.pid)


def test_a_child_that_exits_while_starting_fails_with_its_log_tail(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    code = "import sys; print('loading config'); print('bad key: nope', file=sys.stderr); sys.exit(3)"
    with pytest.raises(ServiceError) as info:
        sup.start(ServiceSpec("svc", py(code), ready_url=f"http://127.0.0.1:{free_port()}/health"))
    headline = info.value.headline
    assert "\n" not in headline
    assert headline.startswith("svc (pid ")
    assert "exited with code 3" in headline
    assert "loading config | bad key: nope" in headline
    assert str(tmp_path / "svc.log") in headline


def test_not_ready_in_time_stops_everything(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    sup.start(ServiceSpec("first", py("import signal; signal.pause()"), settle_s=0.1))
    url = f"http://127.0.0.1:{free_port()}/health"
    # Not flushed, and no PYTHONUNBUFFERED given: the supervisor makes Python children unbuffered.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    code = "import signal; print('booting'); signal.pause()"
    with pytest.raises(ServiceError, match=r"^slow was not ready at .* within 3 s: booting"):
        sup.start(ServiceSpec("slow", py(code), ready_url=url, env=env), timeout_s=3)
    assert [c.name for c in sup.children] == ["first", "slow"]
    assert not any(alive(c.pid) for c in sup.children)


def test_a_child_dying_later_stops_the_others(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    steady = sup.start(ServiceSpec("steady", py("import signal; signal.pause()"), settle_s=0.1))
    code = "import os, signal, time; time.sleep(0.5); print('out of memory', flush=True); os.abort()"
    sup.start(ServiceSpec("fragile", py(code), settle_s=0.1))
    began = time.monotonic()
    with pytest.raises(ServiceError, match=r"fragile \(pid \d+\) was killed by SIGABRT: out of memory"):
        sup.watch(poll_s=0.05)
    assert time.monotonic() - began < 10
    assert not alive(steady.pid)


def test_request_stop_ends_watch_and_start(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    sup.start(ServiceSpec("a", py("import signal; signal.pause()"), settle_s=0.1))
    threading.Timer(0.3, sup.request_stop).start()
    sup.watch(poll_s=0.05)  # returns instead of raising
    # A stop requested while waiting for readiness: start returns at once with the child not ready.
    url = f"http://127.0.0.1:{free_port()}/"
    began = time.monotonic()
    child = sup.start(ServiceSpec("b", py("import signal; signal.pause()"), ready_url=url), timeout_s=30)
    assert time.monotonic() - began < 5
    stopped = sup.stop()
    assert [s.name for s in stopped] == ["b", "a"]  # last started, first stopped
    assert not alive(child.pid)


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    marker = tmp_path / "ignoring"
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    code = f"import os, signal; {ignore}; {write_pid(marker)}; signal.pause()"
    sup = Supervisor(tmp_path, grace_s=0.5)
    child = sup.start(ServiceSpec("stubborn", py(code), settle_s=0.1))
    read_pid(marker)  # its handler is set
    began = time.monotonic()
    [stopped] = sup.stop()
    assert 0.5 <= time.monotonic() - began < 5
    assert stopped.killed
    assert stopped.returncode == -signal.SIGKILL
    assert not alive(child.pid)


@pytest.mark.parametrize("grandchild_ignores_sigterm", [False, True])
def test_grandchildren_go_with_their_group(tmp_path: Path, grandchild_ignores_sigterm: bool) -> None:
    # The child exits on SIGTERM at once; its grandchild either dies with the group's SIGTERM or, when it
    # ignores it, outlives its parent until the group's SIGKILL: no orphan either way.
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if grandchild_ignores_sigterm else ""
    pid_file = tmp_path / "grandchild.pid"
    # The grandchild announces itself only once its handler is set, or the test would race its start-up.
    grandchild = f"import os, signal; {ignore}{write_pid(pid_file)}; signal.pause()"
    code = (
        f"import signal, subprocess, sys; subprocess.Popen([sys.executable, '-c', {grandchild!r}]); "
        "signal.pause()"
    )
    sup = Supervisor(tmp_path / "logs", grace_s=0.5)
    child = sup.start(ServiceSpec("parent", py(code), settle_s=0.1))
    grandchild_pid = read_pid(pid_file)
    assert os.getpgid(grandchild_pid) == child.pid
    [stopped] = sup.stop()
    assert stopped.killed is grandchild_ignores_sigterm
    assert not alive(child.pid)
    assert not alive(grandchild_pid)


def test_log_tail_reads_only_this_run(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("old run failed\n")
    offset = log.stat().st_size
    with log.open("a") as fh:
        fh.write("one\n\n  two  \nthree\nfour\n")
    assert log_tail(log, offset) == "two | three | four"
    assert log_tail(log, offset, lines=1) == "four"
    assert log_tail(log, offset, chars=6) == "…| four"
    assert log_tail(tmp_path / "missing.log") == ""


def test_logs_are_appended_per_service(tmp_path: Path) -> None:
    for word in ("first", "second"):
        marker = tmp_path / f"{word}.done"
        code = f"import os, signal; print({word!r}); {write_pid(marker)}; signal.pause()"
        with Supervisor(tmp_path) as sup:
            sup.start(ServiceSpec("My Service", py(code), settle_s=0.1))
            read_pid(marker)
    text = (tmp_path / "my-service.log").read_text()
    assert text.index("first") < text.index("second")
    assert text.count("--- ") == 2  # a header naming the time and command of each run


def test_instance_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    path = tmp_path / "home" / "up.lock"
    first = InstanceLock(path)
    first.acquire()
    with pytest.raises(ConflictError, match=rf"pid {os.getpid()}, since .*\): URLs not known yet"):
        InstanceLock(path).acquire()
    first.update({"MLflow UI": "http://127.0.0.1:5000", "prediction service": "http://127.0.0.1:8080"})
    with pytest.raises(ConflictError) as info:
        InstanceLock(path).acquire()
    assert info.value.headline.startswith(f"driftloop up is already running here (pid {os.getpid()}, since ")
    assert info.value.headline.endswith(
        "URLs MLflow UI http://127.0.0.1:5000, prediction service http://127.0.0.1:8080"
    )
    first.release()
    first.release()  # idempotent
    second = InstanceLock(path)
    second.acquire()
    second.release()


def test_instance_lock_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    # The holder also starts a long-lived child: the lock must not live on in it.
    path = tmp_path / "up.lock"
    ready = tmp_path / "ready"
    code = (
        "import os, signal, subprocess, sys\nfrom pathlib import Path\n"
        "from driftloop.runtime.processes import InstanceLock\n"
        f"lock = InstanceLock(Path({str(path)!r})); lock.acquire(); lock.update({{'x': 'http://x'}})\n"
        "kid = subprocess.Popen([sys.executable, '-c', 'import signal; signal.pause()'])\n"
        f"Path({str(ready)!r} + '.tmp').write_text(str(kid.pid))\n"
        f"os.replace({str(ready)!r} + '.tmp', {str(ready)!r})\n"
        "signal.pause()\n"
    )
    holder = subprocess.Popen([PY, "-c", code])
    try:
        kid = read_pid(ready, timeout_s=30)
        with pytest.raises(ConflictError, match=rf"pid {holder.pid}, .*URLs x http://x"):
            InstanceLock(path).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        assert alive(kid)
        lock = InstanceLock(path)
        lock.acquire()  # the stale file from the killed holder does not block
        lock.release()
    finally:
        holder.kill()
        holder.wait()
        if alive(kid):
            os.kill(kid, signal.SIGKILL)


def test_children_of_a_killed_supervisor_stop_and_the_next_holder_reaps_any_left(tmp_path: Path) -> None:
    # Two children under a supervisor that records them in its lock: one stops on the SIGTERM its
    # parent's death sends it (PR_SET_PDEATHSIG); one ignores SIGTERM and is reaped by the next holder.
    path = tmp_path / "up.lock"
    ready = tmp_path / "ready"
    stubborn = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); signal.pause()"
    code = (
        "import os, time\nfrom pathlib import Path\n"
        "from driftloop.runtime.processes import InstanceLock, ServiceSpec, Supervisor\n"
        f"lock = InstanceLock(Path({str(path)!r})); lock.acquire()\n"
        f"sup = Supervisor(Path({str(tmp_path / 'logs')!r}))\n"
        f"sup.start(ServiceSpec('plain', {py('import signal; signal.pause()')!r}, settle_s=0.2))\n"
        f"sup.start(ServiceSpec('stubborn', {py(stubborn)!r}, settle_s=0.2))\n"
        "lock.update({}, sup.children)\n"
        f"Path({str(ready)!r} + '.tmp').write_text(' '.join(str(c.pid) for c in sup.children))\n"
        f"os.replace({str(ready)!r} + '.tmp', {str(ready)!r})\n"
        "import signal; signal.pause()\n"
    )
    holder = subprocess.Popen([PY, "-c", code])
    try:
        wait_for(ready.exists, timeout=30, what="the supervisor's children")
        plain, obstinate = (int(pid) for pid in ready.read_text().split())
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        wait_for(lambda: not alive(plain), timeout=10, what="the plain child to stop with its parent")
        assert alive(obstinate)
        lock = InstanceLock(path)
        lock.acquire()
        assert reap_leftovers(lock.previous, grace_s=0.5) == [obstinate]
        # Its command line is gone once the kernel tears it down; the exit itself may lag under load.
        wait_for(lambda: not alive(obstinate), timeout=10, what="the stubborn child to be gone")
        assert reap_leftovers(lock.previous) == []  # gone: nothing to do, and a reused pid is never hit
        lock.release()
    finally:
        holder.kill()
        holder.wait()
