#!/usr/bin/env bash
# Fetches an upstream project's CRDs at the version pinned in versions.env through the
# Go module proxy (the modules ship them as YAML), caches them outside the repo by
# version and prints the directory holding them. Nothing is built.
#
#   hack/fetch-crds.sh monitoring    Prometheus Operator: ServiceMonitor, PrometheusRule
#   hack/fetch-crds.sh gateway-api   Gateway API, standard channel: HTTPRoute
set -euo pipefail
HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HACK/versions.env"
case "${1:-}" in
  monitoring)
    NAME=prometheus-operator V="$PROMETHEUS_OPERATOR_VERSION"
    MODULE=github.com/prometheus-operator/prometheus-operator
    SUBDIR=example/prometheus-operator-crd
    CRDS=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml)
    ;;
  gateway-api)
    NAME=gateway-api V="$GATEWAY_API_VERSION"
    MODULE=sigs.k8s.io/gateway-api
    SUBDIR=config/crd/standard
    CRDS=(gateway.networking.k8s.io_httproutes.yaml)
    ;;
  *) echo "usage: $0 monitoring|gateway-api" >&2; exit 2 ;;
esac
OUT="${AIM_CACHE_DIR:-$HOME/.cache/aim-controller}/$NAME-$V/crds"

have=1
for f in "${CRDS[@]}"; do [ -s "$OUT/$f" ] || have=0; done
if [ "$have" = 1 ]; then echo "$OUT"; exit 0; fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
dir="$(GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "$MODULE@$V" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -n "$dir" ] || { echo "go mod download gave no directory for $MODULE@$V" >&2; exit 1; }
mkdir -p "$OUT.tmp"
for f in "${CRDS[@]}"; do cp "$dir/$SUBDIR/$f" "$OUT.tmp/$f"; done
chmod -R u+w "$OUT.tmp"
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
echo "$OUT"
