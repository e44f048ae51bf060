#!/usr/bin/env bash
# The canary part of `make demo`: hack/demo.sh calls it with the namespace as $1 once smollm2 is
# Ready and has answered. Two updates of the same LLMDeployment, every step real:
#   1. a good one (an env variable changes the revision): canary at 50 %, analysed, promoted;
#   2. a bad one (a corrupt model file): the canary crashes and is rolled back on its own, the
#      stable keeps serving, and the status says which check failed.
# `kubectl get llmd` is printed whenever a row changes.
#
# Usage: hack/demo-rollout.sh NAMESPACE [NAME (default smollm2)]
set -euo pipefail
cd "$(dirname "$0")/.."
ns=${1:?usage: hack/demo-rollout.sh NAMESPACE [NAME]}
name=${2:-smollm2}
export PATH="$PWD/.venv/bin:$PATH" # kubectl finds the kubectl-llmd plugin here
say() { printf '\n\033[1;32m==> %s\033[0m\n' "$*"; }
jp() { kubectl -n "$ns" get llmd "$name" -o jsonpath="$1"; }

# follow PHASE REVISION TIMEOUT: print `kubectl get llmd` whenever a column other than AGE changes
# (with the seconds since the change was applied) until status.rollout.phase is PHASE for
# REVISION (stableRevision for Stable, rollback.from for RolledBack).
follow() {
  local want=$1 rev=$2 start=$SECONDS deadline=$((SECONDS + $3)) last="" row phase
  printf '   %5s  %s\n' "t" "$(kubectl -n "$ns" get llmd "$name" | head -1 | sed 's/ *AGE$//')"
  while :; do
    row=$(kubectl -n "$ns" get llmd "$name" --no-headers 2>/dev/null | sed 's/ *[^ ]*$//' || true)
    [[ $row != "$last" ]] && printf '   %4ss  %s\n' "$((SECONDS - start))" "$row" && last=$row
    phase=$(jp '{.status.rollout.phase}')
    case $want in
      Stable) [[ $phase == Stable && $(jp '{.status.rollout.stableRevision}') == "$rev" ]] && return 0 ;;
      RolledBack) [[ $phase == RolledBack && $(jp '{.status.rollback.from}') == "$rev" ]] && return 0 ;;
    esac
    if ((SECONDS > deadline)); then
      kubectl llmd status "$name" -n "$ns" || true
      return 1
    fi
    sleep 2
  done
}

# new_revision OLD: the revision the spec asks for once the operator has seen the change.
new_revision() {
  local rev deadline=$((SECONDS + 30))
  while rev=$(jp '{.status.currentRevision}') && [[ $rev == "$1" ]]; do
    ((SECONDS < deadline)) || { echo "the operator did not pick up the change" >&2 && exit 1; }
    sleep 1
  done
  echo "$rev"
}

say "Rollout settings: one canary step at 50 % (5 s pause), an analysis every 5 s, a smoke prompt"
kubectl -n "$ns" patch llmd "$name" --type merge -p '{"spec":{"rollout":{"strategy":"Canary",
  "steps":[{"weight":50,"pause":{"duration":"5s"}}],
  "analysis":{"interval":"5s","failureLimit":1,
    "smokePrompts":[{"prompt":"What is the capital of France?","expect":"(?i)paris"}]}}}}'
stable=$(jp '{.status.rollout.stableRevision}')
kubectl -n "$ns" get llmd "$name"

say "A good update (an env variable): the canary is judged beside the stable, then promoted"
kubectl -n "$ns" patch llmd "$name" --type merge \
  -p '{"spec":{"runtime":{"env":[{"name":"DEMO_ROLLOUT","value":"good"}]}}}'
good=$(new_revision "$stable")
echo "   stable $stable -> canary $good"
follow Stable "$good" 900
kubectl llmd status "$name" -n "$ns"

say "A bad update (a corrupt model file): the canary crashes and is rolled back on its own"
bad_file=/var/tmp/llm-operator-demo/corrupt.gguf
mkdir -p "$(dirname "$bad_file")" && chmod 755 "$(dirname "$bad_file")"
{ printf 'GGUF' && head -c 4096 /dev/urandom; } >"$bad_file" && chmod 644 "$bad_file"
kubectl -n "$ns" patch llmd "$name" --type merge \
  -p "{\"spec\":{\"model\":{\"source\":\"file://$bad_file\",\"format\":\"gguf\"}}}"
bad=$(new_revision "$good")
echo "   stable $good -> canary $bad"
follow RolledBack "$bad" 300
kubectl llmd status "$name" -n "$ns"
echo "   status.rollback: $(jp '{.status.rollback}')"
echo "   Degraded: $(jp '{.status.conditions[?(@.type=="Degraded")].message}')"
kubectl -n "$ns" get events --field-selector "involvedObject.name=$name,reason=RolloutRolledBack" \
  -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message

say "The stable revision still answers through the Service"
ip=$(kubectl -n "$ns" get svc "$name" -o jsonpath='{.spec.clusterIP}')
port=$(kubectl -n "$ns" get svc "$name" -o jsonpath='{.spec.ports[0].port}')
grpcurl -plaintext -d '{"messages":[{"role":"user","content":"What is the capital of France?"}],"max_new_tokens":32}' \
  "$ip:$port" llm.runtime.v1.Runtime/Generate
kubectl -n "$ns" get llmd,deployments,pods
