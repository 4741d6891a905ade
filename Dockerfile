# syntax=docker/dockerfile:1
#
# mpc-import-bridge: one image, three processes; the command selects which (ENTRYPOINT is `bridge`):
#   docker run IMAGE                                           the API on :8080 (the default CMD)
#   docker run IMAGE worker                                    a worker: polls MPC, delivers events
#   docker run IMAGE simulator --host 0.0.0.0 --port 8081      the MPC simulator, for trials
# Configuration is environment only (BRIDGE_*, see docs/configuration.md).
#
# Run it read-only (`--read-only --tmpfs /tmp`, as the Kubernetes manifests do): nothing is written
# outside /tmp, and the bytecode is compiled at build time.
#
# No Docker engine runs on the development or CI machines, so tests/deploy/test_image.py runs this
# build stage's COPY and RUN steps as written (into a clean venv) and starts the entrypoint's
# commands; `hadolint` lints this file in `make test`.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build
ENV VENV=/opt/bridge \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv "$VENV"
# Dependencies first: this layer is rebuilt only when pyproject.toml or requirements.lock change.
# The runtime dependencies are pyproject's own list; requirements.lock pins every version.
COPY pyproject.toml requirements.lock ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > runtime-requirements.txt \
    && "$VENV/bin/pip" install --no-compile --only-binary=:all: --constraint requirements.lock --requirement runtime-requirements.txt
# Then the project itself, as the wheel built from this source (no dependency resolution again).
# The runtime venv keeps what runs, nothing more:
# - no installer (pip, setuptools, wheel): nothing is installed at run time;
# - no polyfactory and faker (26 MB): Litestar needs them only to invent OpenAPI examples
#   (`create_examples`), which the bridge leaves off;
# then every module is compiled once, here, with hashes the interpreter trusts without reading the
# source again (the root filesystem is read-only at run time, and PYTHONDONTWRITEBYTECODE is set).
COPY README.md ./
COPY bridge ./bridge
COPY workers ./workers
COPY mpc_simulator ./mpc_simulator
RUN "$VENV/bin/pip" wheel --no-deps --wheel-dir dist . \
    && "$VENV/bin/pip" install --no-compile --no-deps dist/*.whl \
    && "$VENV/bin/pip" uninstall --yes --quiet polyfactory faker setuptools wheel pip \
    && "$VENV/bin/python" -m compileall -q -f -j 0 --invalidation-mode unchecked-hash "$VENV/lib" \
    && "$VENV/bin/bridge" --version

# ---------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=unknown
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="mpc-import-bridge" \
      org.opencontainers.image.description="Watches Placewise MPC member imports and announces every bulk status change to Slack and signed webhooks." \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.documentation="docs/operations.md"

# tini is PID 1: it passes SIGTERM on to `bridge` (which drains, see docs/operations.md) and reaps.
# apt's package lists, its caches (pkgcache.bin, srcpkgcache.bin: ~80 MB) and the downloaded .deb
# are removed here, not left to the base image's apt configuration (only some bases clean up).
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini=0.19.0-1+b3 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log \
    && groupadd --system --gid 10001 bridge \
    && useradd --system --no-log-init --uid 10001 --gid bridge --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin bridge

COPY --from=build /opt/bridge /opt/bridge
ENV PATH=/opt/bridge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BRIDGE_LOG_FORMAT=json

# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080
# Checks whatever this container runs (API: /livez; worker: its health key; simulator: /_control/health).
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 CMD ["bridge", "healthcheck"]
ENTRYPOINT ["tini", "--", "bridge"]
CMD ["api", "--host", "0.0.0.0", "--port", "8080"]
