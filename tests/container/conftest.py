"""The container lane: podman set up for this machine, the Debian base and driftloop's image.

Podman here runs with runc, cgroupfs, no default ulimits and ``--network host`` only
(``scripts/container-base.sh conf``). No registry serves base images, so the base is built from Debian
packages (``scripts/container-base.sh base``) and passed as the Dockerfile's ``BASE``. Both the base and
the image are tagged by a hash of their inputs: a second run finds them and builds nothing; a changed
Dockerfile, pyproject, constraints or source file builds a new image (podman's layer cache keeps the
dependency layers when only the source changed).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# Set by CI: the container lane must run, so a missing podman or mmdebstrap is a failure, not a skip.
CONTAINER_REQUIRED_ENV = "DRIFTLOOP_TEST_CONTAINER_REQUIRED"
# Where the torch CPU wheel lies on this machine (no route to download.pytorch.org); linked into the
# build context's wheels/ so the build installs it offline. Without one, the image uses TORCH_INDEX.
WHEELS_ENV = "DRIFTLOOP_TEST_WHEELS"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "container"
BUILD_TIMEOUT_S = 3600  # a cold build (base, torch, every dependency from PyPI) on 2 shared cores
INPUTS = ("Dockerfile", ".dockerignore", "pyproject.toml", "constraints.txt", "README.md")


@dataclass(frozen=True)
class Podman:
    """The podman command with this machine's configuration (CONTAINERS_CONF)."""

    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def ok(self, *args: str, timeout: float = 600) -> str:
        done = self(*args, timeout=timeout)
        assert done.returncode == 0, f"podman {' '.join(args)}: {done.stderr[-3000:]}"
        return done.stdout


@dataclass(frozen=True)
class Image:
    tag: str
    size_bytes: int
    build_s: float | None  # None: found already built


def _unavailable(reason: str) -> None:
    if os.environ.get(CONTAINER_REQUIRED_ENV) == "1":
        pytest.fail(f"{CONTAINER_REQUIRED_ENV}=1 but {reason}")
    pytest.skip(f"container tests: {reason}")


@pytest.fixture(scope="session")
def podman() -> Podman:
    for tool in ("podman", "mmdebstrap"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed")
    script = REPO / "scripts" / "container-base.sh"
    conf = subprocess.run(["bash", str(script), "conf"], capture_output=True, text=True, check=True)
    engine = Podman({**os.environ, "CONTAINERS_CONF": conf.stdout.strip()})
    info = engine("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
    if info.returncode != 0:
        _unavailable(f"podman does not work here: {info.stderr.strip()[-500:]}")
    return engine


@pytest.fixture(scope="session")
def base_image(podman: Podman) -> str:
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "container-base.sh"), "base"],
        env=podman.env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"building the Debian base failed: {done.stderr[-3000:]}"
    return done.stdout.strip().splitlines()[-1]


def _torch_wheel() -> Path | None:
    found = sorted(Path(os.environ.get(WHEELS_ENV, "/opt/wheels")).glob("torch-2.13.0+cpu-cp311-*.whl"))
    return found[-1] if found else None


def _link_wheel(wheel: Path) -> None:
    target = REPO / "wheels" / wheel.name
    if target.exists() and target.stat().st_ino == wheel.stat().st_ino:
        return
    target.unlink(missing_ok=True)
    try:
        os.link(wheel, target)
    except OSError:  # another filesystem
        shutil.copy2(wheel, target)


def _inputs_hash(base: str) -> str:
    digest = hashlib.sha256(base.encode())
    files = [REPO / name for name in INPUTS]
    files += sorted(p for p in (REPO / "src").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files += sorted((REPO / "wheels").glob("*.whl"))
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode())
        # A wheel is identified by its name and size (hashing 190 MB on every run buys nothing).
        digest.update(str(path.stat().st_size).encode() if path.suffix == ".whl" else path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def driftloop_image(podman: Podman, base_image: str) -> Image:
    """driftloop's image built from this checkout's Dockerfile on the Debian base (cached by inputs)."""
    wheel = _torch_wheel()
    if wheel is not None:
        _link_wheel(wheel)
    key = _inputs_hash(base_image)
    tag = f"localhost/driftloop:test-{key}"
    build_s = None
    if podman("image", "exists", tag).returncode != 0:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        # Docker's image format: the OCI format has no HEALTHCHECK, podman would drop it.
        command = ["podman", "build", "--format", "docker", "--network", "host"]
        command += ["--build-arg", f"BASE={base_image}"]
        if wheel is not None:
            command += ["--build-arg", "TORCH_INDEX="]
        command += ["--label", f"org.driftloop.inputs={key}", "-t", tag, str(REPO)]
        started = time.monotonic()
        with (ARTIFACTS / "build.log").open("w") as log:
            done = subprocess.run(
                command,
                env=podman.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT_S,
                check=False,
            )
        build_s = time.monotonic() - started
        assert done.returncode == 0, (ARTIFACTS / "build.log").read_text()[-4000:]
    size = int(podman.ok("image", "inspect", "--format", "{{.Size}}", tag).strip())
    return Image(tag, size, build_s)
