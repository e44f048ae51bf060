#!/bin/sh
# `uv pip ARGS` against the image's venv, /opt/venv (made first, on the base image's python3
# wherever that lives). Both Dockerfiles run it from their `tools` stage, bind-mounted at /opt/uv,
# so neither uv nor pip lands in an image.
# UV_CACHE_MOUNT (a build argument) names a uv cache the build host mounts into the build
# (`buildah bud -v ~/.cache/uv:/tmp/uv-cache --build-arg UV_CACHE_MOUNT=/tmp/uv-cache`): wheels
# it holds are not downloaded again, and nothing of it lands in a layer. Unset: no cache at all.
set -eu
if [ -n "${UV_CACHE_MOUNT:-}" ]; then
  # Copies, not hard links: the cache is another file system than the layer.
  export UV_CACHE_DIR="$UV_CACHE_MOUNT" UV_LINK_MODE=copy
else
  export UV_NO_CACHE=1
fi
# The system's CA store (a TLS-intercepting proxy's CA mounted there is then trusted), never a
# downloaded interpreter, and byte-code compiled now: the root file system is read-only at run time.
export UV_NATIVE_TLS=1 UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1
uv=/opt/uv/bin/uv
[ -x /opt/venv/bin/python ] || "$uv" venv -q --python "$(command -v python3)" /opt/venv
exec "$uv" pip "$@" --python /opt/venv/bin/python
