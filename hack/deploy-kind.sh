#!/usr/bin/env bash
# make deploy / make undeploy: the operator on a local kind cluster, as a user installs it.
#   deploy:   create the kind cluster if it does not exist (hack/kind-config.yaml), build
#             the image, load it into the cluster's nodes, apply the CRDs (Helm installs
#             crds/ only on the first install, never on upgrade; --force-conflicts takes
#             over the fields of a CRD Helm created), helm upgrade --install
#             the chart with that image, wait for the rollout.
#   undeploy: helm uninstall (the CRDs and your AIM objects stay, as with Helm).
# DRY_RUN=1 prints every command, each on a line starting "+ ", and runs none.
#
# Usage: [DRY_RUN=1] [IMG=aim-controller:dev] [KIND_CLUSTER=aim] [HELM=helm] \
#          [KIND=kind] [DOCKER=docker] [KUBECTL=kubectl] hack/deploy-kind.sh deploy|undeploy
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CHART=charts/aim-engine-operator
KIND=${KIND:-kind}
DOCKER=${DOCKER:-docker}
HELM=${HELM:-helm}
KUBECTL=${KUBECTL:-kubectl}
CLUSTER=${KIND_CLUSTER:-aim}
CONTEXT="kind-$CLUSTER"
IMG=${IMG:-aim-controller:dev}
RELEASE=aim-engine-operator
NAMESPACE=aim-engine-operator
DRY_RUN=${DRY_RUN:-}

run() {
  echo "+ $*"
  [ "$DRY_RUN" = 1 ] || "$@"
}

# repository:tag (a registry's :port is not a tag; no tag is latest).
repository=$IMG tag=latest
if [[ "${IMG##*/}" == *:* ]]; then repository=${IMG%:*} tag=${IMG##*:}; fi

cluster_exists() {
  [ "$DRY_RUN" = 1 ] && return 1
  "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"
}

deploy() {
  echo "+ $KIND get clusters"
  if cluster_exists; then
    echo "# kind cluster $CLUSTER exists"
  else
    [ "$DRY_RUN" = 1 ] && echo "# only when \`$KIND get clusters\` does not list $CLUSTER:"
    run "$KIND" create cluster --name "$CLUSTER" --config hack/kind-config.yaml --wait 120s
  fi
  run "$DOCKER" build -t "$IMG" .
  run "$KIND" load docker-image "$IMG" --name "$CLUSTER"
  run "$KUBECTL" --context "$CONTEXT" apply --server-side --force-conflicts -f "$CHART/crds"
  run "$KUBECTL" --context "$CONTEXT" wait --for=condition=Established --timeout=60s -f "$CHART/crds"
  run "$HELM" upgrade --install "$RELEASE" "$CHART" --kube-context "$CONTEXT" \
    --namespace "$NAMESPACE" --create-namespace \
    --set "image.repository=$repository" --set "image.tag=$tag" --set image.pullPolicy=IfNotPresent
  run "$KUBECTL" --context "$CONTEXT" -n "$NAMESPACE" rollout status "deployment/$RELEASE" --timeout=180s
}

undeploy() {
  run "$HELM" uninstall "$RELEASE" --kube-context "$CONTEXT" --namespace "$NAMESPACE" --ignore-not-found
}

case "${1:-}" in
  deploy) deploy ;;
  undeploy) undeploy ;;
  *) echo "usage: $0 deploy|undeploy" >&2; exit 2 ;;
esac
