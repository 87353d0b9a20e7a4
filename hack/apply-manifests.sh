#!/usr/bin/env bash
# Applies the CRDs, waits until the API server serves them (Established), then what
# uses them: `install` the built-in recipe catalog in the operator namespace
# (make install), `deploy` the operator, its RBAC and the catalog (make deploy-kustomize,
# manifests/default, in namespace aim-engine-operator as the Helm chart installs it). Without the wait, the catalog's AIMRecipes race
# the CRDs' registration ("no matches for kind AIMRecipe").
#
# Usage: [KUBECTL="kubectl --kubeconfig F"] [OPERATOR_NAMESPACE=aim-system] \
#          hack/apply-manifests.sh install|deploy
set -euo pipefail
MANIFESTS="$(cd "$(dirname "${BASH_SOURCE[0]}")/../manifests" && pwd)"
KUBECTL="${KUBECTL:-kubectl}"
NAMESPACE="${OPERATOR_NAMESPACE:-aim-system}"

run() { echo "+ kubectl $*"; $KUBECTL "$@"; }

case "${1:-}" in
  install|deploy) ;;
  *) echo "usage: $0 install|deploy" >&2; exit 2 ;;
esac

run apply --server-side -f "$MANIFESTS/crd"
# kubectl wait fails at once on a CRD whose status has no conditions yet (just created):
# retry that case for up to a minute.
for attempt in $(seq 60); do
  if out="$(run wait --for=condition=Established --timeout=60s -f "$MANIFESTS/crd" 2>&1)"; then
    echo "$out"; break
  fi
  case "$out" in
    *".status.conditions accessor error"*) [ "$attempt" -lt 60 ] && sleep 1 && continue ;;
  esac
  echo "$out" >&2; exit 1
done
if [ "$1" = install ]; then
  $KUBECTL create namespace "$NAMESPACE" --dry-run=client -o yaml | run apply -f -
  run apply --server-side -n "$NAMESPACE" -f "$MANIFESTS/catalog"
else
  run apply --server-side -k "$MANIFESTS/default"
fi
