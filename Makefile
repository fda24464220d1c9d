# The two commands: `make demo` and `make test`. Both create .venv on first use and are fast after.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.driftloop-installed
# This machine's pip configuration names index directories that do not exist; hide that noise only.
QUIET_PIP := grep -v -e 'is ignored: it is neither a file nor a directory' || true

.PHONY: install install-ray demo test test-slow lint typecheck unit bench clean test-container test-kubernetes test-replicas test-ray

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing driftloop into $(VENV) (first run only)…"
	@$(BIN)/python -m pip install --quiet --upgrade 'pip>=26' 2>&1 | $(QUIET_PIP)
	@# torch first and exactly pinned, so the local CPU wheel is used instead of a multi-GB CUDA build.
	@$(BIN)/python -m pip install --quiet -c constraints.txt 'torch==2.13.0' 2>&1 | $(QUIET_PIP)
	@$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]' 2>&1 | $(QUIET_PIP)
	@touch $@

install: $(STAMP)

# The optional Ray extra (docs/ray.md), for the `ray` lane only: `make install` does not install Ray.
RAY_STAMP := $(VENV)/.driftloop-ray-installed
$(RAY_STAMP): $(STAMP)
	@echo "installing driftloop[ray] into $(VENV)…"
	@$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,ray]' 2>&1 | $(QUIET_PIP)
	@touch $@

install-ray: $(RAY_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Two lanes (docs/testing.md): `make test` runs everything but the tests marked slow; `make test-slow`
# runs those. Both on WORKERS pytest-xdist processes; --dist loadscope keeps each module on one worker,
# so a module's fixtures are built once, and each worker builds its own session fixtures (servers, plant).
WORKERS ?= 2
PYTEST := $(BIN)/pytest -n $(WORKERS) --dist loadscope --durations=25

unit: $(STAMP)
	$(PYTEST) -m "not slow and not container and not ray"

test: lint typecheck unit

test-slow: $(STAMP)
	$(PYTEST) -m "slow and not container and not ray"

# The container lane (docs/deployment.md): builds the Debian base and driftloop's image with podman, then
# runs the pipeline and the service in containers. One worker: the image build is the long part, and the
# tests share it. -rP prints the image's size. DRIFTLOOP_TEST_CONTAINER_REQUIRED=1 turns skips into failures.
test-container: $(STAMP)
	$(BIN)/pytest -p no:xdist -m container -rP --durations=10 tests/container

# Kubernetes (no cluster): manifests and rendered Jobs against the schemas, the runner against a fake
# kubectl, the whole pipeline through it included (slow). Both lanes above already run these.
test-kubernetes: $(STAMP)
	$(BIN)/pytest --durations=10 tests/deploy tests/pipeline/test_kubernetes.py

# Replicas and workers alone (docs/scaling-replicas.md); `make test-slow` runs the same slow tests. The
# replicas test needs DRIFTLOOP_TEST_POSTGRES_URL (skipped without it, failing with ..._REQUIRED=1).
test-replicas: $(STAMP)
	$(BIN)/pytest -p no:xdist --durations=5 tests/serving/test_worker_metrics.py tests/serving/test_replicas.py \
	  tests/serving/test_server.py::test_workers_answer_metrics_for_all_of_them

# The Ray lane: a real local two-node cluster (tests/ray_cluster.py), one process (the cluster is the
# parallelism). CI sets DRIFTLOOP_TEST_RAY_REQUIRED=1 so a missing Ray fails instead of skipping.
test-ray: $(RAY_STAMP)
	$(BIN)/pytest -m ray --durations=10

demo: $(STAMP)
	@bash scripts/demo.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/simulate.py

clean:
	rm -rf $(VENV) .driftloop .mypy_cache .pytest_cache .ruff_cache
