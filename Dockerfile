# syntax=docker/dockerfile:1
# twoway-callback: `docker build -t twoway-callback .`, then see compose.yaml and
# docs/production.md. The image runs `twoway-callback run`; `docker run IMAGE migrate` applies
# the SQL migrations.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: the project's wheel plus wheels of all its dependencies ---------------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
# stasis_app/sql is a symlink to ../sql: both are needed for the migrations to be in the wheel.
COPY sql/ sql/
COPY stasis_app/ stasis_app/
COPY ari_simulator/ ari_simulator/
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: no compilers, no pip cache, no source tree --------------------------------------
FROM ${PYTHON_IMAGE}
# The API binds 0.0.0.0 here, so the service refuses to start without TWOWAY_API_TOKENS.
ENV PATH=/opt/twoway-callback/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TWOWAY_HTTP_LISTEN=0.0.0.0:8480 \
    TWOWAY_LOG_FORMAT=json \
    TWOWAY_DATA_DIR=/var/lib/twoway-callback
RUN groupadd --system --gid 10001 twoway \
    && useradd --system --uid 10001 --gid twoway --no-create-home \
       --home-dir /var/lib/twoway-callback --shell /usr/sbin/nologin twoway \
    && install -d -o twoway -g twoway -m 0750 /var/lib/twoway-callback
# Install from the build stage's wheels only (--no-index): what was built is what runs.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/twoway-callback \
    && /opt/twoway-callback/bin/pip install --no-cache-dir --no-index --find-links=/wheels \
       /wheels/twoway_callback-*.whl
USER 10001:10001
WORKDIR /var/lib/twoway-callback
EXPOSE 8480
# /healthz where the service serves it: TWOWAY_METRICS_LISTEN when set, else TWOWAY_HTTP_LISTEN
# (the slim image has no curl). A wildcard bind is probed on loopback.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; e = os.environ; h, _, p = (e.get('TWOWAY_METRICS_LISTEN') or e.get('TWOWAY_HTTP_LISTEN') or '127.0.0.1:8480').rpartition(':'); h = {'': '127.0.0.1', '0.0.0.0': '127.0.0.1', '[::]': '[::1]'}.get(h, h); urllib.request.urlopen(f'http://{h}:{p}/healthz', timeout=4)"]
ENTRYPOINT ["twoway-callback"]
CMD ["run"]
