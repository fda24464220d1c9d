"""The Ray lane's cluster: one real local two-node Ray cluster for the session (tests/ray_cluster.py)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.ray_cluster import ray_cluster

if TYPE_CHECKING:
    from collections.abc import Iterator

# Set by CI: the Ray lane must run there, so a missing Ray is a failure, not a skip.
RAY_REQUIRED_ENV = "DRIFTLOOP_TEST_RAY_REQUIRED"
# A running cluster to use instead of starting one (while working on these tests: starting two nodes
# takes half a minute); it needs two nodes of one CPU each, as tests/ray_cluster.py starts them.
RAY_ADDRESS_ENV = "DRIFTLOOP_TEST_RAY_ADDRESS"


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """The GCS address of a running two-node cluster (head + one worker node, one CPU each)."""
    if importlib.util.find_spec("ray") is None:
        if os.environ.get(RAY_REQUIRED_ENV) == "1":
            pytest.fail(f"{RAY_REQUIRED_ENV}=1 but Ray is not installed (make install-ray)")
        pytest.skip("Ray is not installed: `make install-ray` adds the driftloop[ray] extra")
    if os.environ.get(RAY_ADDRESS_ENV):
        yield os.environ[RAY_ADDRESS_ENV]
        return
    # A short root: Ray's unix socket paths under it must fit in 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="dlray-"))
    try:
        with ray_cluster(root) as cluster:
            yield cluster.address
    finally:
        shutil.rmtree(root, ignore_errors=True)
