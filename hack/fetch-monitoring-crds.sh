#!/usr/bin/env bash
# Fetches the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs at the pinned
# version through the Go module proxy (the module ships them under
# example/prometheus-operator-crd/), caches them outside the repo by version and prints
# the directory holding them. Nothing is built.
set -euo pipefail
HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HACK/versions.env"
V="$PROMETHEUS_OPERATOR_VERSION"
OUT="${AIM_CACHE_DIR:-$HOME/.cache/aim-controller}/prometheus-operator-$V/crds"
CRDS=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml)

have=1
for f in "${CRDS[@]}"; do [ -s "$OUT/$f" ] || have=0; done
if [ "$have" = 1 ]; then echo "$OUT"; exit 0; fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
dir="$(GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json \
        "github.com/prometheus-operator/prometheus-operator@$V" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -n "$dir" ] || { echo "go mod download gave no directory for prometheus-operator@$V" >&2; exit 1; }
mkdir -p "$OUT.tmp"
for f in "${CRDS[@]}"; do cp "$dir/example/prometheus-operator-crd/$f" "$OUT.tmp/$f"; done
chmod -R u+w "$OUT.tmp"
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
echo "$OUT"
