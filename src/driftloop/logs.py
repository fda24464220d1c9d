"""driftloop's log lines, configured by driftloop when a command or a service process starts.

Why driftloop configures its logger itself rather than leaving it to the root logger: importing
``mlflow.pytorch`` (which loading a model does) imports ``mlflow.pytorch._lightning_autolog``, whose
module body calls ``logging.basicConfig(level=logging.ERROR)`` before it fails to import
``pytorch_lightning`` (MLflow 3.17; the import error is swallowed, the call has happened). That gives the
root logger a stderr handler and the level ERROR, and every driftloop logger without a level of its own
inherits ERROR: the service's warnings (a shipping failure, a model that fails to load) were dropped.

:func:`configure_logging` therefore gives the ``driftloop`` logger its own level, its own handler and
``propagate = False``, so nothing done to the root logger can silence or duplicate driftloop's lines;
and, when the root logger has no handler yet, one of the same kind at WARNING, so that MLflow's later
``basicConfig`` finds a handler and does nothing (that is what ``basicConfig`` does when the root has a
handler) and other libraries' warnings keep showing as they did before MLflow was imported.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["FORMAT", "LOGGER", "configure_logging"]

LOGGER = "driftloop"
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _Stderr(logging.StreamHandler[TextIO]):
    """A handler on whatever ``sys.stderr`` is when a line is written (as logging's own last-resort
    handler does): a process that replaces ``sys.stderr`` after the setup does not leave it writing to a
    stream that was closed."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter(FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # under the handler's lock: Handler.handle holds it around emit
        super().emit(record)


def configure_logging(level: str | int = "warning") -> None:
    """driftloop's loggers at ``level`` (a name such as ``"info"``, or a number) on stderr; idempotent,
    so a service can raise or lower the level a command started with."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(handler, _Stderr) for handler in logger.handlers):
        logger.addHandler(_Stderr())
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    logger.propagate = False
    if not logging.root.handlers:
        logging.root.addHandler(_Stderr())
        logging.root.setLevel(logging.WARNING)


def notify(url: str, payload: Mapping[str, object]) -> None:
    """POST ``payload`` (plus ``at``) as JSON to the notification webhook ``url`` (empty: nothing). A
    dead webhook is a warning, never an exception: notifying must not stop what it reports on."""
    if not url:
        return
    import json
    import urllib.request
    from datetime import UTC, datetime

    body = json.dumps({**payload, "at": datetime.now(UTC).isoformat()}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5):
            pass
    except OSError as exc:
        logging.getLogger(LOGGER).warning("notification webhook %s failed: %s", url, exc)
