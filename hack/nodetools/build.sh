#!/usr/bin/env bash
# Builds what a real Kubernetes node runs, from pinned Go modules, and caches it outside the
# checkout (the same way as ../tools/build.sh does for the control plane):
#   kubelet                                   (./kubelet/go.mod, k8s.io/kubernetes at the control
#                                              plane's version, with the same version ldflags)
#   containerd containerd-shim-runc-v2 ctr    (./containerd/go.mod)
#   cni/bridge cni/host-local cni/loopback cni/portmap cni/firewall cni/tuning   (./cni/go.mod)
#   crictl                                    (./crictl/go.mod)
#   pause, pause.oci.tar                      (./pause: the sandbox's pause program, and it packed
#                                              by ./ociimage.py as registry.k8s.io/pause:3.10 for
#                                              `ctr -n k8s.io images import`)
# runc is not built here: it comes from Debian (`apt-get install -y runc`).
# The folder is keyed by a hash of every go.mod/go.sum here, the pause sources, ociimage.py and
# `recipe` (bump it when the build flags below change). It is separate from the control plane's,
# whose key this tree does not touch. A warm run only checks that the files exist.
#
# Usage: build.sh                 build what is missing (idempotent)
#        build.sh --print-bindir  print the bin folder (does not build)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${LLMOP_CACHE:-$HOME/.cache/llm-operator}
recipe=1
pause_image=registry.k8s.io/pause:3.10

mod_version() { # mod_version FILE MODULE -> the version FILE requires for MODULE
  awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$1"
}

k8s_version=$(mod_version "$here/kubelet/go.mod" k8s.io/kubernetes)
key_hash=$( (echo "recipe=$recipe pause_image=$pause_image" &&
  cat "$here"/*/go.mod "$here"/*/go.sum "$here"/pause/*.go "$here"/ociimage.py) |
  sha256sum | cut -c1-12)
bindir="$cache/bin/node-$k8s_version-$key_hash"

if [[ ${1:-} == --print-bindir ]]; then
  echo "$bindir"
  exit 0
fi

containerd_bins=(containerd containerd-shim-runc-v2 ctr)
cni_bins=(bridge host-local loopback portmap firewall tuning)
all_files=(kubelet "${containerd_bins[@]}" crictl pause pause.oci.tar)
for b in "${cni_bins[@]}"; do all_files+=("cni/$b"); done
have_all() {
  local f
  for f in "${all_files[@]}"; do [[ -s $bindir/$f ]] || return 1; done
}
if have_all; then
  exit 0
fi

log() { printf '\033[1;34m[nodetools]\033[0m %s\n' "$*" >&2; }
mkdir -p "$bindir/cni"
# One build at a time per folder; whoever waited re-checks, and an interrupted build's leftovers go.
exec 9>"$bindir/.lock"
flock 9
if have_all; then
  exit 0
fi
rm -rf "$bindir"/.build.* "$bindir"/.*.tmp "$bindir"/*.tmp
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
# -p: build actions run in parallel; 2 matches this machine's cores (LLMOP_GO_PARALLEL overrides).
gobuild=(go build -trimpath -p "${LLMOP_GO_PARALLEL:-2}")

timed() { # timed WHAT COMMAND...: runs it and logs how long it took
  local start=$SECONDS
  "${@:2}"
  log "$1 built in $((SECONDS - start)) s"
}

build_into() { # build_into MODDIR OUTDIR LDFLAGS TAGS PACKAGE...: binaries named after each package
  local moddir=$1 outdir=$2 ldflags=$3 tags=$4 tmp
  shift 4
  tmp=$(mktemp -d "$bindir/.build.XXXXXX")
  (cd "$here/$moddir" && "${gobuild[@]}" -tags "$tags" -ldflags "-s -w $ldflags" -o "$tmp/" "$@")
  local pkg
  for pkg in "$@"; do mv -f "$tmp/${pkg##*/}" "$outdir/${pkg##*/}"; done
  rmdir "$tmp"
}

build_kubelet() {
  local minor=${k8s_version#v1.}
  minor=${minor%%.*}
  local date flags=() pkg
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  # The same variables ../tools/build.sh passes (Kubernetes' hack/lib/version.sh), so the kubelet
  # reports the control plane's version instead of v0.0.0-master.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=(-X "$pkg.gitVersion=$k8s_version" -X "$pkg.gitMajor=1" -X "$pkg.gitMinor=$minor"
      -X "$pkg.gitTreeState=clean" -X "$pkg.buildDate=$date")
  done
  log "building kubelet $k8s_version (a few minutes cold; faster with the control plane's GOCACHE)"
  build_into kubelet "$bindir" "${flags[*]}" "" k8s.io/kubernetes/cmd/kubelet
}

build_containerd() {
  local v m=github.com/containerd/containerd/v2
  v=$(mod_version "$here/containerd/go.mod" $m)
  # The tags of containerd's `make STATIC=1`, less cgo's btrfs and the devmapper and zfs
  # snapshotters (overlayfs and native stay); the shim adds no_grpc, as its Makefile does.
  local tags="urfave_cli_no_docs osusergo netgo static_build no_btrfs no_devmapper no_zfs"
  local ldflags="-X $m/version.Version=$v -X $m/version.Package=$m"
  log "building containerd ctr containerd-shim-runc-v2 $v"
  build_into containerd "$bindir" "$ldflags" "$tags" $m/cmd/containerd $m/cmd/ctr
  build_into containerd "$bindir" "$ldflags" "$tags no_grpc" $m/cmd/containerd-shim-runc-v2
}

build_cni() {
  local v m=github.com/containernetworking/plugins b pkgs=()
  v=$(mod_version "$here/cni/go.mod" $m)
  for b in "${cni_bins[@]}"; do
    case $b in
    host-local) pkgs+=("$m/plugins/ipam/$b") ;;
    portmap | firewall | tuning) pkgs+=("$m/plugins/meta/$b") ;;
    *) pkgs+=("$m/plugins/main/$b") ;;
    esac
  done
  log "building CNI plugins ${cni_bins[*]} $v"
  build_into cni "$bindir/cni" "-X $m/pkg/utils/buildversion.BuildVersion=$v" "" "${pkgs[@]}"
}

build_crictl() {
  local v m=sigs.k8s.io/cri-tools
  v=$(mod_version "$here/crictl/go.mod" $m)
  log "building crictl $v"
  build_into crictl "$bindir" "-X $m/pkg/version.Version=${v#v}" "" $m/cmd/crictl
}

build_pause() {
  log "building pause and its image $pause_image"
  (cd "$here/pause" && "${gobuild[@]}" -ldflags "-s -w" -o "$bindir/.pause.tmp" .)
  mv -f "$bindir/.pause.tmp" "$bindir/pause"
  python3 "$here/ociimage.py" --name "$pause_image" --entrypoint /pause --user 65535:65535 \
    --add "/pause=$bindir/pause" -o "$bindir/pause.oci.tar"
}

[[ -s $bindir/kubelet ]] || timed kubelet build_kubelet
have() { # have FILE...: all exist
  local f
  for f in "$@"; do [[ -s $bindir/$f ]] || return 1; done
}
have "${containerd_bins[@]}" || timed containerd build_containerd
have "${cni_bins[@]/#/cni/}" || timed "CNI plugins" build_cni
have crictl || timed crictl build_crictl
have pause pause.oci.tar || timed pause build_pause
have_all
log "node binaries ready in $bindir"
