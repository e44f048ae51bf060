# syntax=docker/dockerfile:1.7
# The llm-operator image: kopf, the kubernetes client and the torch-free gRPC client of the runtime.
# No torch, no transformers (an import-linter contract keeps the operator free of them).
#
# Build from the repository root (the context .dockerignore keeps it small):
#   docker build -f images/operator.Dockerfile -t llm-operator/operator:0.1.0 .
#
# Not built by CI here (this machine has no container engine); hack/kind-up.sh builds it for kind.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: resolve and install the wheels into a venv; build tools stay in this stage ----------
FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m pip install "uv==${UV_VERSION}"
# A venv at the same path as in the final stage, so its scripts' shebangs stay valid.
RUN uv venv --python /usr/local/bin/python3.11 /opt/venv
WORKDIR /src
# Metadata first: the dependency layer is reused while only the source changes.
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY runtime/ runtime/
# A regular (non-editable) install of the base dependencies plus the `operator` extra only.
RUN uv pip install --python /opt/venv/bin/python --no-cache ".[operator]" \
 && /opt/venv/bin/python -c "import kopf, kubernetes, llm_operator, llm_runtime.api" \
 && ! /opt/venv/bin/python -c "import torch" 2>/dev/null

# ---- final: the interpreter, the venv and nothing else -----------------------------------------
FROM ${PYTHON_IMAGE}
# The installers are not needed at run time.
RUN python -m pip uninstall -y pip setuptools wheel >/dev/null 2>&1 || true \
 && rm -rf /root/.cache
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# A numeric non-root user that exists nowhere in /etc/passwd: Kubernetes' runAsNonRoot can verify
# a number, not a name. The chart runs the pod as the same user (podSecurityContext.runAsUser).
USER 65532:65532
# Metrics (Prometheus) and kopf's liveness endpoint (/healthz).
EXPOSE 9090 8080
ENTRYPOINT ["llm-operator"]
