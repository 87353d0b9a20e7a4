#!/usr/bin/env bash
# Fetches the Gateway API's standard-channel HTTPRoute CRD at the pinned version
# through the Go module proxy (the module ships it under config/crd/standard/), caches
# it outside the repo by version and prints the directory holding it. Nothing is built.
set -euo pipefail
HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HACK/versions.env"
V="$GATEWAY_API_VERSION"
OUT="${AIM_CACHE_DIR:-$HOME/.cache/aim-controller}/gateway-api-$V/crds"
CRDS=(gateway.networking.k8s.io_httproutes.yaml)

have=1
for f in "${CRDS[@]}"; do [ -s "$OUT/$f" ] || have=0; done
if [ "$have" = 1 ]; then echo "$OUT"; exit 0; fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
dir="$(GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json \
        "sigs.k8s.io/gateway-api@$V" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -n "$dir" ] || { echo "go mod download gave no directory for gateway-api@$V" >&2; exit 1; }
mkdir -p "$OUT.tmp"
for f in "${CRDS[@]}"; do cp "$dir/config/crd/standard/$f" "$OUT.tmp/$f"; done
chmod -R u+w "$OUT.tmp"
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
echo "$OUT"
