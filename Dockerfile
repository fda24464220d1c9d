# driftloop's OCI image: `driftloop` as the entry point, CPU-only PyTorch, a non-root user.
#
#   docker build -t driftloop .                      # or: podman build -t driftloop .
#   docker run --rm driftloop --help
#   docker run --rm --network host -v "$PWD:$PWD" -w "$PWD" driftloop serve
#
# Build arguments (docs/deployment.md, "Containers"):
#   BASE         a Debian-based image with python3 (3.11, for the cp311 torch wheel) and python3-venv;
#                both stages use it, so the venv's interpreter path is the same in both.
#   TORCH_INDEX  where the CPU torch wheel comes from; empty: PyPI and ./wheels only.
# Wheels dropped into ./wheels/ (e.g. a local torch CPU wheel) are preferred: offline builds use them.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv && /opt/venv/bin/python -m pip install --quiet --upgrade 'pip>=26'
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
COPY wheels/ /wheels/
COPY constraints.txt pyproject.toml README.md ./
# Torch first and exactly pinned (constraints.txt): the CPU wheel, never the multi-GB CUDA build.
RUN pip install --quiet --find-links /wheels ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} \
        -c constraints.txt 'torch==2.13.0'
# The dependencies alone, from pyproject.toml, in their own layer: a source change does not reinstall them.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip install --quiet --find-links /wheels -c constraints.txt -r requirements.txt
COPY src/ src/
RUN pip install --quiet --no-deps . && driftloop --version
# Test suites and C++ headers are not needed to run: about 230 MB less in the final image.
RUN find /opt/venv -depth -type d -name tests -exec rm -rf {} + \
    && rm -rf /opt/venv/lib/python3*/site-packages/torch/include

FROM ${BASE}
# git: training records the working directory's commit (lineage; promotion's clean-git check).
# tzdata: pandas and pyarrow resolve the time zones of timestamps through the system database.
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends git tzdata >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin driftloop
COPY --from=build /opt/venv /opt/venv
# One intra-op torch thread per process (docs/serving.md); matplotlib and others need a writable
# config directory whatever user the container runs as (the pipeline runner passes the caller's uid).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    MLFLOW_DISABLE_TELEMETRY=true
USER driftloop
WORKDIR /home/driftloop
EXPOSE 8080
# Healthy when the prediction service answers /ready; a container running any other verb (a pipeline
# step, the scheduler) has nothing listening, so the check reports healthy when no service listens.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, socket, sys, urllib.request as u\nport = int(os.environ.get('DRIFTLOOP_SERVING__PORT', '8080'))\ntry:\n    socket.create_connection(('127.0.0.1', port), 2).close()\nexcept OSError:\n    sys.exit(0)\nsys.exit(0 if u.urlopen(f'http://127.0.0.1:{port}/ready', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["driftloop"]
CMD ["--help"]
