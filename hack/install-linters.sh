#!/usr/bin/env bash
# The Kubernetes manifest linters, pinned in hack/versions.env and cached outside the
# repository, keyed by version (a second run costs nothing):
#   kubeconform (schema validation) built from its Go module:
#     ${AIM_CACHE_DIR:-~/.cache/aim-controller}/kubeconform-<version>/kubeconform
#   checkov (policy checks) from PyPI, in a virtualenv of its own: it pins many
#   packages of its own, which must never enter our lock files or our venv:
#     ${AIM_CACHE_DIR:-~/.cache/aim-controller}/checkov-<version>/bin/checkov
# Prints two lines, "kubeconform=<path>" and "checkov=<path>".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${AIM_CACHE_DIR:-$HOME/.cache/aim-controller}
log() { echo "[install-linters] $*" >&2; }

kubeconform="$cache/kubeconform-$KUBECONFORM_VERSION/kubeconform"
if [ ! -x "$kubeconform" ]; then
  log "building kubeconform $KUBECONFORM_VERSION"
  gobin=$(mktemp -d)
  # One package at a time (-p=1): the machines have 2 cores shared with other work.
  GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0 GOBIN="$gobin" \
    GOFLAGS="-buildvcs=false -p=1" go install -trimpath -ldflags "-s -w" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" >&2
  mkdir -p "$(dirname "$kubeconform")"
  mv "$gobin/kubeconform" "$kubeconform"
  rm -rf "$gobin"
fi

venv="$cache/checkov-$CHECKOV_VERSION"
checkov="$venv/bin/checkov"
# The stamp is written last: a half-done install (interrupted pip) is redone.
if [ ! -f "$venv/.complete" ]; then
  log "installing checkov $CHECKOV_VERSION into $venv"
  rm -rf "$venv"
  "${CHECKOV_PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION" >&2
  touch "$venv/.complete"
fi
"$checkov" --version >/dev/null

echo "kubeconform=$kubeconform"
echo "checkov=$checkov"
