#!/usr/bin/env bash
# Builds the local cluster's tools from pinned Go modules and caches the binaries outside the
# checkout, so a fresh clone on the same machine (CI) reuses them:
#   kube-apiserver kube-controller-manager kube-scheduler kubectl   (./go.mod, k8s.io/kubernetes)
#   etcd                                                            (./etcd/go.mod)
#   helm                                                            (./helm/go.mod)
#   grpcurl                                                         (./grpcurl/go.mod)
# The cache folder is keyed by a hash of every go.mod/go.sum and `recipe` (bump it when the build
# flags below change), so changing a pin builds into a new folder and never mixes versions.
# A warm run only checks that the files exist.
#
# Usage: build.sh                 build what is missing (idempotent)
#        build.sh --print-bindir  print the bin folder (does not build)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${LLMOP_CACHE:-$HOME/.cache/llm-operator}
recipe=2

mod_version() { # mod_version FILE MODULE -> the version FILE requires for MODULE
  awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$1"
}

k8s_version=$(mod_version "$here/go.mod" k8s.io/kubernetes)
key_hash=$( (echo "recipe=$recipe" && cat "$here"/go.mod "$here"/go.sum "$here"/*/go.mod "$here"/*/go.sum) |
  sha256sum | cut -c1-12)
bindir="$cache/bin/$k8s_version-$key_hash"

if [[ ${1:-} == --print-bindir ]]; then
  echo "$bindir"
  exit 0
fi

k8s_bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
all_bins=("${k8s_bins[@]}" etcd helm grpcurl)
have_all() {
  local b
  for b in "${all_bins[@]}"; do [[ -x $bindir/$b ]] || return 1; done
}
if have_all; then
  exit 0
fi

log() { printf '\033[1;34m[tools]\033[0m %s\n' "$*" >&2; }
mkdir -p "$bindir"
# One build at a time per folder (two set-ups started together must not share temp files);
# whoever waited re-checks, and leftovers of an interrupted build are removed.
exec 9>"$bindir/.lock"
flock 9
if have_all; then
  exit 0
fi
rm -rf "$bindir"/.build.* "$bindir"/.*.tmp
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
# -p: build actions run in parallel; 2 matches this machine's cores (LLMOP_GO_PARALLEL overrides).
gobuild=(go build -trimpath -p "${LLMOP_GO_PARALLEL:-2}")

build_k8s() {
  local minor=${k8s_version#v1.}
  minor=${minor%%.*}
  local date flags=(-s -w) pkg
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  # The same variables Kubernetes' hack/lib/version.sh sets, for both version packages:
  # without them the binaries report v0.0.0-master and kubectl warns about version skew.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=(-X "$pkg.gitVersion=$k8s_version" -X "$pkg.gitMajor=1" -X "$pkg.gitMinor=$minor"
      -X "$pkg.gitTreeState=clean" -X "$pkg.buildDate=$date")
  done
  local out tmp
  tmp=$(mktemp -d "$bindir/.build.XXXXXX")
  log "building ${k8s_bins[*]} $k8s_version (slow the first time)"
  local pkgs=()
  for out in "${k8s_bins[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$out"); done
  (cd "$here" && "${gobuild[@]}" -ldflags "${flags[*]}" -o "$tmp/" "${pkgs[@]}")
  for out in "${k8s_bins[@]}"; do mv -f "$tmp/$out" "$bindir/$out"; done
  rmdir "$tmp"
}

build_one() { # build_one MODDIR PACKAGE BINARY [LDFLAGS]
  local tmp="$bindir/.$3.tmp"
  log "building $3 ($2)"
  (cd "$here/$1" && "${gobuild[@]}" -ldflags "-s -w ${4:-}" -o "$tmp" "$2")
  mv -f "$tmp" "$bindir/$3"
}

have_k8s() {
  local b
  for b in "${k8s_bins[@]}"; do [[ -x $bindir/$b ]] || return 1; done
}
have_k8s || build_k8s
[[ -x $bindir/etcd ]] || build_one etcd go.etcd.io/etcd/server/v3 etcd
helm_version=$(mod_version "$here/helm/go.mod" helm.sh/helm/v4)
[[ -x $bindir/helm ]] || build_one helm helm.sh/helm/v4/cmd/helm helm \
  "-X helm.sh/helm/v4/internal/version.version=$helm_version"
grpcurl_version=$(mod_version "$here/grpcurl/go.mod" github.com/fullstorydev/grpcurl)
[[ -x $bindir/grpcurl ]] || build_one grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl grpcurl \
  "-X main.version=$grpcurl_version"
have_all
log "tools ready in $bindir"
