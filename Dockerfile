# syntax=docker/dockerfile:1
# The server image of the platform: `python -m ingest`, `python -m api`, `python -m simulator`.
# Built by compose.yaml (docs/compose.md). The final stage holds a virtualenv and no build
# tools, and runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first: this layer is reused while only the code changes.
COPY pyproject.toml README.md ./
RUN mkdir ingest api device_client simulator \
    && /opt/venv/bin/pip install ".[server]" \
    && /opt/venv/bin/pip uninstall -y telemetry-platform
COPY ingest ./ingest
COPY api ./api
COPY device_client ./device_client
COPY simulator ./simulator
RUN /opt/venv/bin/pip install --no-deps ".[server]"

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 telemetry \
    && useradd --system --uid 10001 --gid telemetry --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin telemetry
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /tmp
USER 10001:10001
# Query API and HTTP intake; each service's command and healthcheck are in compose.yaml.
EXPOSE 8000 8001
CMD ["python", "-m", "api", "--help"]
