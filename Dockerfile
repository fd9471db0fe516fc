# syntax=docker/dockerfile:1.7
# Vigil: one image for every process (`vigil run <service>`, `vigil db upgrade`, `vigil train`).
# Stages: web (Node builds the dashboard) -> build (Poetry resolves the locked env into a venv)
# -> runtime (slim Python, non-root, read-only root filesystem friendly, ENTRYPOINT vigil).
# Build: docker build -t vigil:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

# --- web: the React dashboard ---------------------------------------------------------------
FROM ${NODE_IMAGE} AS web
WORKDIR /web
# web/ may not be in every checkout yet: the stage then yields an empty dist/ and the API serves
# the JSON API only. The npm cache mount keeps repeated builds fast.
RUN --mount=type=bind,source=.,target=/context,readonly \
    --mount=type=cache,target=/root/.npm \
    if [ -f /context/web/package.json ]; then \
        cp -a /context/web/. /web/ && rm -rf node_modules dist \
        && npm ci --no-audit --no-fund \
        && npm run build; \
    else \
        mkdir -p dist; \
    fi

# --- build: the locked Python environment -----------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    POETRY_NO_INTERACTION=1 \
    POETRY_VIRTUALENVS_CREATE=false
# Poetry lives in its own venv and never reaches the runtime image.
RUN python -m venv /opt/poetry && /opt/poetry/bin/pip install "poetry==2.5.1"
RUN python -m venv /opt/vigil
ENV VIRTUAL_ENV=/opt/vigil PATH=/opt/vigil/bin:$PATH
WORKDIR /src
# Dependencies first, so code changes do not re-resolve them.
COPY pyproject.toml poetry.lock README.md ./
RUN /opt/poetry/bin/poetry install --only main --no-root
COPY core/ core/
COPY vigil/ vigil/
COPY ingestion/ ingestion/
COPY features/ features/
COPY detectors/ detectors/
COPY rules/ rules/
COPY api/ api/
COPY alerting/ alerting/
# A real (non-editable) install: the runtime image does not need /src.
RUN pip install --no-deps . \
    && python -m compileall -q /opt/vigil/lib

# --- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="vigil" \
      org.opencontainers.image.description="Real-time payment fraud detection" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed high UID/GID (matches the Helm chart's securityContext); no login shell, no home.
RUN groupadd --system --gid 10001 vigil \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin vigil \
    && mkdir -p /var/lib/vigil \
    && chown 10001:10001 /var/lib/vigil
COPY --from=build /opt/vigil /opt/vigil
COPY --from=web /web/dist /app/web/dist
# Read-only root filesystem: bytecode is precompiled, and everything that writes (HOME, state,
# MLflow/matplotlib caches) points at /tmp, which Kubernetes mounts as an emptyDir.
ENV PATH=/opt/vigil/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    VIGIL_STATE_DIR=/tmp/vigil \
    VIGIL_WEB_DIST_DIR=/app/web/dist \
    VIGIL_API_HOST=0.0.0.0 \
    VIGIL_LOG_FORMAT=json
WORKDIR /app
USER 10001:10001
EXPOSE 8000 9100
# Which port answers /healthz depends on the process (API 8000, stream services VIGIL_METRICS_PORT),
# so probes live in the chart and docker-compose.yml, not here.
HEALTHCHECK NONE
ENTRYPOINT ["vigil"]
CMD ["--help"]
