"""Where ``serve``, ``ui`` and ``up`` listen: the warning when that is beyond loopback with auth off, and
whether a port is already taken (checked before any work starts)."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from typing import TYPE_CHECKING

from rich.markup import escape

from driftloop.errors import UsageError

if TYPE_CHECKING:
    from driftloop.cli._state import CliState

__all__ = ["is_loopback", "port_in_use", "warn_if_exposed"]

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a service on this machine (127.0.0.0/8, ::1, localhost). A name
    other than localhost, or a wildcard (0.0.0.0, ::), may be reached from elsewhere."""
    name = host.strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def warn_if_exposed(st: CliState, host: str, what: str) -> None:
    """Say once, loudly, that ``what`` (bound to ``host``) takes writes from anyone when auth is off and
    ``host`` is not loopback; silent otherwise (the zero-configuration default binds loopback)."""
    if st.settings.auth.enabled or is_loopback(host):
        return
    message = (
        f"{what} on {host} with auth off: anyone who can reach it can score, send labels, wake the "
        "registry follower and read /v1/model and /metrics. Turn auth on ([auth] enabled = true, "
        "DRIFTLOOP_AUTH__ENABLED=true; docs/auth.md) or bind 127.0.0.1."
    )
    st.err.print(f"[bold red]WARNING:[/] [red]{escape(message)}[/]")
    # Configured logging keeps a record of it too; unconfigured, Python would print the same line again.
    if logging.getLogger("driftloop").hasHandlers():
        log.warning(message)


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on ``host:port``. SO_REUSEADDR, as the servers set it, so a port still
    in TIME_WAIT from a previous run counts as free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise UsageError(f"cannot bind --host {host}: {exc.strerror}") from None
    return False
