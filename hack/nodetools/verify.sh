#!/usr/bin/env bash
# Proves the node binaries that build.sh made run on this machine, without touching the local
# cluster: the kubelet, containerd, ctr, crictl and the CNI plugins report their versions; then a
# throwaway containerd (its own root, state, sockets and CNI network) is started, answers ctr and
# crictl, imports the pause image, runs it as a container with runc (overlayfs, falling back to the
# native snapshotter), and runs a CRI pod sandbox on a CNI bridge. Everything it made (processes,
# mounts, network namespaces, cgroups, iptables chains, the bridge, the folders) is removed at the
# end, whatever happened.
#
# Usage: verify.sh            (root; runc from Debian: apt-get install -y runc)
# Env:   LLMOP_NODETEST_NAME  the folders' and socket's name (default llmop-containerd-test)
#        LLMOP_NODETEST_KEEP=1  leave containerd's log and config in /tmp/NAME.log / .toml
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bindir=$("$here/build.sh" --print-bindir)
name=${LLMOP_NODETEST_NAME:-llmop-containerd-test}
root=/var/lib/$name
state=/run/$name
sock=$state/containerd.sock
bridge=llmoptest0
subnet=10.88.250.0/24
hostport=18099
runc=$(command -v runc || true)

# Runs a command without the warning that ctr prints on every call on a cgroup v1 host.
quiet() { "$@" 2> >(grep -v 'support for cgroup v1 is deprecated' >&2); }
log() { printf '\033[1;34m[nodetest]\033[0m %s\n' "$*" >&2; }
fail() {
  printf '\033[1;31m[nodetest] FAIL:\033[0m %s\n' "$*" >&2
  exit 1
}
[[ $(id -u) == 0 ]] || fail "needs root"
[[ -n $runc ]] || fail "runc is missing: apt-get install -y runc"
"$here/build.sh"
export PATH="$bindir:$PATH" # containerd finds containerd-shim-runc-v2 on PATH
ctr=(quiet ctr --address "$sock")
crictl=(crictl --config "$state/crictl.yaml")

# Checked before the trap is set, so that another run's folders are never removed.
[[ ! -e $state && ! -e $root ]] || fail "$root or $state exists: another run, or a leftover"
ctd_pid=
# Other programs on this host may use CNI too (podman does): only what this run made is removed.
forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
had_hostport_chains=$(iptables -t nat -S CNI-HOSTPORT-DNAT >/dev/null 2>&1 && echo 1 || echo 0)
cleanup() {
  local rc=$? pid
  set +e
  log "cleaning up"
  if [[ -S $sock ]]; then
    "${crictl[@]}" rmp -f -a >/dev/null 2>&1
    local ns id
    for ns in $("${ctr[@]}" namespaces list -q 2>/dev/null); do
      for id in $("${ctr[@]}" -n "$ns" tasks list -q 2>/dev/null); do
        "${ctr[@]}" -n "$ns" tasks kill -s SIGKILL "$id" >/dev/null 2>&1
        "${ctr[@]}" -n "$ns" tasks delete -f "$id" >/dev/null 2>&1
      done
      for id in $("${ctr[@]}" -n "$ns" containers list -q 2>/dev/null); do
        "${ctr[@]}" -n "$ns" containers delete "$id" >/dev/null 2>&1
      done
    done
  fi
  if [[ -n $ctd_pid ]]; then
    kill -TERM "$ctd_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$ctd_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$ctd_pid" 2>/dev/null
    wait "$ctd_pid" 2>/dev/null
  fi
  # Shims outlive containerd by design: end the ones started for this socket, by pid.
  for pid in $(pgrep -f -- "containerd-shim-runc-v2 .*-address $sock" 2>/dev/null); do
    kill -KILL "$pid" 2>/dev/null
  done
  # Containers' processes left by a killed shim: runc's state knows them.
  if [[ -d $state/runc ]]; then
    local c
    for c in "$state"/runc/*/*/; do
      [[ -d $c ]] || continue
      "$runc" --root "${c%/*/}" delete -f "$(basename "$c")" >/dev/null 2>&1
    done
  fi
  # Mounts below root and state, deepest first (rootfs, shm, netns bind mounts).
  awk -v r="$root" -v s="$state" '$5 == r || index($5, r "/") == 1 || $5 == s || index($5, s "/") == 1 { print $5 }' \
    /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
  ip link del "$bridge" 2>/dev/null
  # The portmap plugin's shared chains stay after its last pod: drop them when this run made them
  # and no pod's DNAT chain (CNI-DN-*) is left, that is when no other CNI user needs them.
  if [[ $had_hostport_chains == 0 ]] && ! iptables -t nat -S 2>/dev/null | grep -q '^-N CNI-DN-'; then
    local chain rule
    for chain in CNI-HOSTPORT-DNAT CNI-HOSTPORT-MASQ CNI-HOSTPORT-SETMARK; do
      iptables -t nat -S 2>/dev/null | grep -- "-j $chain\$" | sed 's/^-A/-D/' | while read -r rule; do
        eval "iptables -t nat $rule" 2>/dev/null # eval: the rule's quoted comment
      done
    done
    for chain in CNI-HOSTPORT-DNAT CNI-HOSTPORT-MASQ CNI-HOSTPORT-SETMARK; do
      iptables -t nat -F "$chain" 2>/dev/null && iptables -t nat -X "$chain" 2>/dev/null
    done
  fi
  # The cgroups of this run's containers (/NAME/... in every hierarchy), deepest first.
  find /sys/fs/cgroup/*/"$name" -depth -type d -exec rmdir {} + 2>/dev/null
  # libcni's result cache (/var/lib/cni/results/NETWORK-ID-IFNAME) is always below /var/lib/cni.
  rm -f /var/lib/cni/results/"$name"-*
  rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null
  # The bridge plugin (isGateway) turns IPv4 forwarding on; it stays on, as others may need it now.
  [[ $forward_before == 1 ]] || log "note: net.ipv4.ip_forward was 0 and is $(cat /proc/sys/net/ipv4/ip_forward) now"
  if [[ ${LLMOP_NODETEST_KEEP:-} == 1 && -d $state ]]; then
    cp "$state/containerd.log" "/tmp/$name.log"
    cp "$state/config.toml" "/tmp/$name.toml"
  fi
  rm -rf "$root" "$state"
  local left
  left=$(grep -c -e " $root" -e " $state" /proc/self/mountinfo)
  [[ $left == 0 ]] || log "WARNING: $left mounts left below $root or $state"
  left=$(pgrep -f -- "$sock" || true)
  [[ -z $left ]] || log "WARNING: processes left: $left"
  left=$(iptables -t nat -S 2>/dev/null | grep -e CNI- -e "$subnet" || true)
  [[ -z $left ]] || log "WARNING: iptables rules left: $left"
  left=$(find /sys/fs/cgroup/*/"$name" -maxdepth 0 2>/dev/null || true)
  [[ -z $left ]] || log "WARNING: cgroups left: $left"
  exit "$rc"
}
trap cleanup EXIT

log "versions"
kubelet --version
containerd --version
ctr --version
crictl --version
"$runc" --version | head -1
for p in "$bindir"/cni/*; do
  printf '%s: %s\n' "${p##*/}" "$(CNI_COMMAND=VERSION "$p" </dev/null)"
done
"$bindir/kubelet" --version | grep -qx "Kubernetes $(basename "$bindir" | cut -d- -f2)" ||
  fail "kubelet does not report the control plane's version"

mkdir -p "$root" "$state/cni/net.d"
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' "$sock" "$sock" >"$state/crictl.yaml"
cat >"$state/cni/net.d/10-$name.conflist" <<EOF
{
  "cniVersion": "1.1.0",
  "name": "$name",
  "plugins": [
    {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$state/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

start_containerd() { # start_containerd SNAPSHOTTER
  cat >"$state/config.toml" <<EOF
version = 4
root = "$root"
state = "$state"
temp = "$root/tmp"
imports = []

[debug]
  level = "info"

[plugins.'io.containerd.server.v1.grpc']
  address = "$sock"

[plugins.'io.containerd.server.v1.ttrpc']
  address = "$sock.ttrpc"

[plugins.'io.containerd.internal.v1.opt']
  path = "$root/opt"

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.shim.v1.manager']
  socket_dir = "$state/s"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "$1"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "registry.k8s.io/pause:3.10"

[plugins.'io.containerd.cri.v1.runtime']
  # Without CAP_SYS_RESOURCE no process here may lower its oom_score_adj, and the CRI asks -998 for
  # the sandbox (runc then fails with "can't get final child's PID from pipe: EOF"): clamp the
  # values to containerd's own instead.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true

[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = "runc"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = "$runc"
  Root = "$state/runc"
  SystemdCgroup = false

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["$bindir/cni"]
  conf_dir = "$state/cni/net.d"
EOF
  log "starting containerd (snapshotter $1)"
  containerd --config "$state/config.toml" >>"$state/containerd.log" 2>&1 &
  ctd_pid=$!
  for _ in $(seq 100); do
    "${ctr[@]}" version >/dev/null 2>&1 && return 0
    kill -0 "$ctd_pid" 2>/dev/null || break
    sleep 0.2
  done
  tail -30 "$state/containerd.log" >&2
  fail "containerd did not answer on $sock"
}

stop_containerd() {
  kill -TERM "$ctd_pid"
  wait "$ctd_pid" || true
  ctd_pid=
}

# Runs the pause image as a container: its task must be running, and end with 0 on SIGTERM.
run_pause() { # run_pause SNAPSHOTTER -> 0 when the container ran
  local snap=$1 id=nodetest-$1 run_pid status
  # ctr's runtime options are its own (not the CRI's): name runc, its root and the cgroup here.
  "${ctr[@]}" -n k8s.io run --rm --snapshotter "$snap" --fifo-dir "$state/fifo" \
    --runc-binary "$runc" --runc-root "$state/runc" --cgroup "/$name/$id" \
    registry.k8s.io/pause:3.10 "$id" &
  run_pid=$!
  for _ in $(seq 50); do
    "${ctr[@]}" -n k8s.io tasks ls 2>/dev/null | grep -q "^$id .*RUNNING" && break
    kill -0 "$run_pid" 2>/dev/null || break
    sleep 0.2
  done
  "${ctr[@]}" -n k8s.io tasks ls
  if ! "${ctr[@]}" -n k8s.io tasks ls | grep -q "^$id .*RUNNING"; then
    wait "$run_pid" || true
    return 1
  fi
  "${ctr[@]}" -n k8s.io tasks kill -s SIGTERM "$id"
  status=0
  wait "$run_pid" || status=$?
  log "pause ended on SIGTERM with status $status (ctr run --rm's exit status is the task's)"
  [[ $status == 0 ]] || fail "pause did not exit 0 on SIGTERM"
}

snap=overlayfs
start_containerd "$snap"
log "ctr version"
"${ctr[@]}" version
log "crictl info (runtime status)"
"${crictl[@]}" info | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps(d["status"], indent=1)); print("SystemdCgroup:", d.get("config", {}).get("containerd", {}).get("runtimes", {}).get("runc", {}).get("options", {}).get("SystemdCgroup"))'
"${ctr[@]}" plugins ls | grep -E 'snapshotter|io.containerd.grpc.v1.cri|runtime' || true
log "importing the pause image"
"${ctr[@]}" -n k8s.io images import "$bindir/pause.oci.tar"
"${ctr[@]}" -n k8s.io images ls
"${crictl[@]}" images
if ! run_pause overlayfs; then
  log "overlayfs failed (containerd's log follows); trying the native snapshotter"
  grep -iE 'error|overlay' "$state/containerd.log" | tail -10 >&2
  "${ctr[@]}" -n k8s.io containers delete nodetest-overlayfs 2>/dev/null || true
  stop_containerd
  snap=native
  start_containerd "$snap"
  "${ctr[@]}" -n k8s.io images import "$bindir/pause.oci.tar"
  run_pause native || fail "runc could not run the pause image with the native snapshotter either"
fi
log "ctr run worked with the $snap snapshotter"
if [[ $snap == overlayfs ]]; then
  run_pause native || fail "runc could not run the pause image with the native snapshotter"
  log "ctr run worked with the native snapshotter too"
fi

log "a CRI pod sandbox on the CNI bridge ($subnet)"
cat >"$state/pod.json" <<EOF
{"metadata": {"name": "nodetest", "namespace": "default", "uid": "nodetest-uid", "attempt": 0},
 "port_mappings": [{"protocol": 0, "container_port": 80, "host_port": $hostport}],
 "log_directory": "$state/pods", "linux": {"cgroup_parent": "/$name/pod"}}
EOF
pod=$("${crictl[@]}" runp "$state/pod.json")
"${crictl[@]}" pods
ip=$("${crictl[@]}" inspectp -o go-template --template '{{.status.network.ip}}' "$pod")
log "pod $pod has IP $ip"
netns=$("${crictl[@]}" inspectp -o go-template --template '{{range .info.runtimeSpec.linux.namespaces}}{{if eq .type "network"}}{{.path}}{{end}}{{end}}' "$pod")
log "pod network namespace $netns:"
nsenter --net="$netns" ip -br addr
# Nothing listens in the pod, so a TCP connect that is refused (the pod's RST) proves the route.
reply=$(timeout 5 bash -c "exec 3<>/dev/tcp/$ip/9" 2>&1 || true)
[[ $reply == *"Connection refused"* ]] || fail "the host does not reach the pod at $ip: ${reply:-timed out}"
log "the host reaches the pod at $ip (TCP port 9: connection refused by the pod)"
# portmap: a connection to the host's port $hostport goes through its DNAT rule to the pod's port 80.
host_ip=$(ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \([0-9.]*\).*/\1/p')
timeout 5 bash -c "exec 3<>/dev/tcp/$host_ip/$hostport" 2>/dev/null || true
dnat=$(iptables -t nat -L -v -n -x 2>/dev/null | awk -v to="to:$ip:80" '$NF == to && $1 > 0')
[[ -n $dnat ]] || fail "portmap: no DNAT rule to $ip:80 counted a packet"
log "portmap: $host_ip:$hostport is DNATed to $ip:80 (iptables $(iptables --version | cut -d' ' -f2-))"
"${crictl[@]}" stopp "$pod" >/dev/null
"${crictl[@]}" rmp "$pod" >/dev/null
"${crictl[@]}" pods -q | grep -q . && fail "the pod sandbox is still listed after rmp"
log "PASS: kubelet, containerd ($snap), runc, crictl, CNI bridge/host-local/portmap/loopback"
