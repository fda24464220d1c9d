"""driftloop configures its own log lines: importing MLflow's PyTorch flavor no longer silences them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# What the service does: configure logging (or not), load a model (which imports mlflow.pytorch), then
# log a warning the way the capture shipper does, and an info line.
_SCRIPT = """
import logging, sys
if sys.argv[1] == "configured":
    from driftloop.logs import configure_logging
    configure_logging("info")
import mlflow.pytorch  # runs logging.basicConfig(level=logging.ERROR) in mlflow.pytorch._lightning_autolog
logging.getLogger("driftloop.capture.outage").warning("storage unreachable")
logging.getLogger("driftloop.capture.outage").info("storage reachable again")
logging.getLogger("botocore.retries").warning("a library's warning")
logging.getLogger("botocore.retries").info("a library's info")
print(logging.getLevelName(logging.root.level), file=sys.stderr)
"""


def _run(mode: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT), mode], capture_output=True, text=True, check=True
    )
    return done.stderr.splitlines()


# slow: two real processes that each import torch and MLflow and train (55 s under load)
@pytest.mark.slow
def test_mlflow_pytorch_silences_driftloop_unless_driftloop_configures_its_logging() -> None:
    assert _run("bare") == ["ERROR"]  # what main did: every warning dropped, the root left at ERROR
    lines = _run("configured")
    assert [line.split(" ", 2)[2] for line in lines[:-1]] == [
        "WARNING driftloop.capture.outage: storage unreachable",
        "INFO    driftloop.capture.outage: storage reachable again",
        "WARNING botocore.retries: a library's warning",  # libraries keep their warnings, once each
    ]
    assert lines[-1] == "WARNING"  # MLflow's basicConfig found a handler and did nothing


def test_driftloop_lines_survive_a_library_that_reconfigures_the_root_logger() -> None:
    script = """
import logging
from driftloop.logs import configure_logging
configure_logging("warning")
logging.basicConfig(level=logging.CRITICAL, force=True)  # another library taking the root over
logging.getLogger("driftloop.x").warning("still here")
logging.getLogger("driftloop.x").info("below the level")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert [line.split(" ", 2)[2] for line in done.stderr.splitlines()] == ["WARNING driftloop.x: still here"]
