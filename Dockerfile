# One image for every process of the platform. The default command is the gateway; each
# Kubernetes Deployment sets its own (`python -m services.<name>`, see deploy/k8s/base).
# No secret is baked in: every setting comes from the environment at run time.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the project and its pinned dependency tree -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/agentflow
ENV PATH=/opt/agentflow/bin:$PATH
# The pip the Makefile uses, so resolution matches `make install`.
RUN python -m pip install "pip==26.3"
WORKDIR /src
# Every wheel in constraints.txt is binary for CPython 3.11 on manylinux: no compiler needed.
COPY pyproject.toml constraints.txt README.md ./
COPY shared ./shared
COPY services ./services
# Not editable and without the dev extra: the runtime needs only site-packages.
RUN python -m pip install --constraint constraints.txt . \
    && python -m compileall -q /opt/agentflow/lib

# --- runtime -----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="agentflow" \
      org.opencontainers.image.description="Low-code AI agent platform: every service and the worker"
ENV PATH=/opt/agentflow/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AGENTFLOW_DATA_DIR=/var/lib/agentflow
# A fixed non-root uid/gid, so Kubernetes' runAsNonRoot can verify it (runAsUser 10001).
RUN groupadd --system --gid 10001 agentflow \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin agentflow \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/agentflow
COPY --from=build /opt/agentflow /opt/agentflow
# An empty working directory: settings also read ./.env, and none must be picked up here.
WORKDIR /app
USER 10001:10001
EXPOSE 8037
# Exec form: python is PID 1 and receives SIGTERM itself (the worker drains on it).
CMD ["python", "-m", "services.gateway"]
