# syntax=docker/dockerfile:1.7
# The llm-operator image: kopf, the kubernetes client and the torch-free gRPC client of the runtime.
# No torch, no transformers (an import-linter contract keeps the operator free of them).
#
# Build arguments: BASE_IMAGE (any Debian-based image with python3 3.11 on PATH; default
# python:3.11-slim-bookworm) and UV_CACHE_MOUNT (a uv cache the build host mounts, see
# images/uv-pip.sh). Build from the repository root (the context .dockerignore keeps it small):
#   docker build -f images/operator.Dockerfile -t llm-operator/operator:0.1.0 .
# Without a registry: `make images` (hack/imagebuild: an mmdebstrap base, buildah).
# The stages are those of runtime.Dockerfile, without torch.

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- tools: uv, mounted by the final stage's RUN steps only -------------------------------------
FROM ${BASE_IMAGE} AS tools
ARG UV_VERSION=0.13.9
RUN python3 -m venv /opt/uv \
 && PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/uv/bin/pip install -q --no-cache-dir "uv==${UV_VERSION}"
COPY images/uv-pip.sh /opt/uv/bin/uv-pip

# ---- deps: the requirement list alone -----------------------------------------------------------
FROM ${BASE_IMAGE} AS deps
COPY pyproject.toml /src/
RUN python3 -c 'import tomllib; p = tomllib.load(open("/src/pyproject.toml", "rb"))["project"]; print(*p["dependencies"], *p["optional-dependencies"]["operator"], sep="\n")' > /requirements.txt

# ---- the image: the base's interpreter and /opt/venv --------------------------------------------
FROM ${BASE_IMAGE}
ARG UV_CACHE_MOUNT=
# The base image's own installers are not needed at run time.
RUN python3 -m pip uninstall -y pip setuptools wheel >/dev/null 2>&1 || true \
 && rm -rf /root/.cache
COPY --from=deps /requirements.txt /tmp/requirements.txt
RUN --mount=type=bind,from=tools,source=/opt/uv,target=/opt/uv \
    /opt/uv/bin/uv-pip install -q -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
# The project itself (the operator and llm_runtime.api; the runtime extra is not installed).
COPY pyproject.toml README.md /tmp/src/
COPY operator/ /tmp/src/operator/
COPY runtime/ /tmp/src/runtime/
RUN --mount=type=bind,from=tools,source=/opt/uv,target=/opt/uv \
    /opt/uv/bin/uv-pip install -q --no-deps /tmp/src \
 && rm -rf /tmp/src \
 && /opt/venv/bin/python -c "import kopf, kubernetes, llm_operator.main, llm_runtime.api.client" \
 && ! /opt/venv/bin/python -c "import torch" 2>/dev/null
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
