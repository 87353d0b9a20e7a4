#!/usr/bin/env bash
# Builds the pinned upstream control-plane binaries from the Go module proxy and
# caches them outside the repository, keyed by version:
#   ${AIM_CACHE_DIR:-~/.cache/aim-controller}/k8s-<k8s>-etcd-<etcd>-kwok-<kwok>/bin
# helm (for the chart) is cached apart, ${AIM_CACHE_DIR}/helm-<helm>/helm, so a new
# helm pin never rebuilds the control plane, and is linked into that bin directory;
# so is metrics-server (${AIM_CACHE_DIR}/metrics-server-<version>/metrics-server), and
# KEDA's keda-operator and keda-adapter (${AIM_CACHE_DIR}/keda-<version>/, its CRDs in crds/).
# Prints that bin directory on stdout (`build-binaries.sh helm` / `build-binaries.sh
# metrics-server`: builds only that one and prints its path). A second run costs nothing.
# If KUBEBUILDER_ASSETS names a directory that already holds the binaries,
# it is used as is and nothing is built (but helm and metrics-server, when they are not
# there: then a directory of links to all of them is printed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

need=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)

have_control_plane() {
  local d=$1 b
  for b in "${need[@]}"; do [ -x "$d/$b" ] || return 1; done
}

cache=${AIM_CACHE_DIR:-$HOME/.cache/aim-controller}
helm_bin="$cache/helm-$HELM_VERSION/helm"
ms_bin="$cache/metrics-server-$METRICS_SERVER_VERSION/metrics-server"
keda_dir="$cache/keda-$KEDA_VERSION"
# ... and its helm and metrics-server are the pinned ones (links to the cached builds).
have_all() {
  have_control_plane "$1" && [ "$1/helm" -ef "$helm_bin" ] \
    && [ "$1/metrics-server" -ef "$ms_bin" ] \
    && [ "$1/keda-operator" -ef "$keda_dir/keda-operator" ] \
    && [ "$1/keda-adapter" -ef "$keda_dir/keda-adapter" ] && have_keda
}

export GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=-buildvcs=false CGO_ENABLED=0
# Two cores: let go build use both, but keep the linker from starving the box.
log() { echo "[build-binaries] $*" >&2; }

# A tool from its upstream module (helm, metrics-server: no replace directives, so
# `go install mod@version` builds exactly the release's go.sum), once: test runs started
# at once wait on a lock for the first; one package at a time (-p, default 1): the
# machines have 2 cores shared with other work.
#   go_install_once BIN NAME VERSION PACKAGE LDFLAGS PARALLELISM
go_install_once() {
  local bin="$1" name="$2" version="$3" pkg="$4" ldflags="$5" p="$6" gobin lock
  [ -x "$bin" ] && return
  mkdir -p "$(dirname "$bin")"
  exec {lock}>"$(dirname "$bin")/.lock"
  flock "$lock"
  if [ ! -x "$bin" ]; then
    gobin=$(mktemp -d)
    log "building $name $version"
    GOBIN="$gobin" GOFLAGS="$GOFLAGS -p=$p" go install -trimpath -ldflags "$ldflags" \
      "$pkg@$version" >&2
    mv "$gobin/$(basename "$pkg")" "$bin"
    rm -rf "$gobin"
  fi
  exec {lock}>&-
}

build_helm() {
  go_install_once "$helm_bin" helm "$HELM_VERSION" helm.sh/helm/v4/cmd/helm \
    "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.metadata=" \
    "${HELM_BUILD_P:-1}"
}

build_metrics_server() {
  go_install_once "$ms_bin" metrics-server "$METRICS_SERVER_VERSION" \
    sigs.k8s.io/metrics-server/cmd/metrics-server \
    "-s -w -X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION" \
    "${METRICS_SERVER_BUILD_P:-1}"
}

# KEDA's operator and metrics adapter, and its CRDs (config/crd/bases) beside them in
# $keda_dir/crds: built from a writable copy of the module source, since its go.mod
# has replace directives (`go install mod@version` refuses those). Same lock as above.
KEDA_CRDS=(keda.sh_scaledobjects.yaml keda.sh_scaledjobs.yaml keda.sh_triggerauthentications.yaml
           keda.sh_clustertriggerauthentications.yaml)
have_keda() {
  local f
  [ -x "$keda_dir/keda-operator" ] && [ -x "$keda_dir/keda-adapter" ] || return 1
  for f in "${KEDA_CRDS[@]}"; do [ -s "$keda_dir/crds/$f" ] || return 1; done
}

build_keda() {
  local lock src tmp f
  have_keda && return
  mkdir -p "$keda_dir"
  exec {lock}>"$keda_dir/.lock"
  flock "$lock"
  if ! have_keda; then
    log "building keda $KEDA_VERSION (operator, adapter)"
    src=$(go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" \
          | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -n "$src" ] || { log "go mod download gave no directory for keda $KEDA_VERSION"; exit 1; }
    tmp=$(mktemp -d)
    cp -r "$src" "$tmp/src" && chmod -R u+w "$tmp/src"
    (cd "$tmp/src" && GOFLAGS="$GOFLAGS -mod=mod -p=${KEDA_BUILD_P:-2}" go build -trimpath \
      -ldflags "-s -w -X github.com/kedacore/keda/v2/version.Version=$KEDA_VERSION" \
      -o "$tmp/bin/" ./cmd/operator ./cmd/adapter >&2)
    mkdir -p "$keda_dir/crds"
    for f in "${KEDA_CRDS[@]}"; do cp "$tmp/src/config/crd/bases/$f" "$keda_dir/crds/$f"; done
    mv "$tmp/bin/adapter" "$keda_dir/keda-adapter"
    mv "$tmp/bin/operator" "$keda_dir/keda-operator"
    rm -rf "$tmp"
  fi
  exec {lock}>&-
}

link_keda() {
  ln -sfn "$keda_dir/keda-operator" "$1/keda-operator"
  ln -sfn "$keda_dir/keda-adapter" "$1/keda-adapter"
}

# `build-binaries.sh helm`: only helm (make deploy); prints the binary's path.
if [ "${1:-}" = helm ]; then build_helm; echo "$helm_bin"; exit 0; fi
if [ "${1:-}" = metrics-server ]; then build_metrics_server; echo "$ms_bin"; exit 0; fi
# `build-binaries.sh keda`: only KEDA; prints its directory (binaries, crds/).
if [ "${1:-}" = keda ]; then build_keda; echo "$keda_dir"; exit 0; fi

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && have_control_plane "$KUBEBUILDER_ASSETS"; then
  if [ -x "$KUBEBUILDER_ASSETS/helm" ] && [ -x "$KUBEBUILDER_ASSETS/metrics-server" ] \
      && [ -x "$KUBEBUILDER_ASSETS/keda-operator" ]; then
    echo "$KUBEBUILDER_ASSETS"; exit 0
  fi
  links="$cache/assets-helm-$HELM_VERSION-metrics-server-$METRICS_SERVER_VERSION-keda-$KEDA_VERSION/bin"
  mkdir -p "$links"
  for b in "${need[@]}" helm metrics-server; do
    [ -x "$KUBEBUILDER_ASSETS/$b" ] && ln -sfn "$KUBEBUILDER_ASSETS/$b" "$links/$b"
  done
  [ -x "$KUBEBUILDER_ASSETS/helm" ] || { build_helm; ln -sfn "$helm_bin" "$links/helm"; }
  [ -x "$KUBEBUILDER_ASSETS/metrics-server" ] \
    || { build_metrics_server; ln -sfn "$ms_bin" "$links/metrics-server"; }
  build_keda; link_keda "$links"
  echo "$links"; exit 0
fi

bin="$cache/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin"
if have_all "$bin"; then echo "$bin"; exit 0; fi
mkdir -p "$bin"

staging_version="v0${KUBERNETES_VERSION#v1}"   # v1.36.3 -> v0.36.3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build_kubernetes() {
  local mod="$work/kubernetes"
  have_control_plane "$bin" && return
  mkdir -p "$mod"
  cp -r "$here/tools/stub" "$mod/stub"
  {
    echo "module aim-controller/hack/kubernetes"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    # Every k8s.io/* staging module that k8s.io/kubernetes replaces with a local
    # path must be pointed at its published v0.x.y release instead.
    curl -fsSL "${GOPROXY_BASE:-https://proxy.golang.org}/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod" \
      | sed -n 's#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' \
      | while read -r m; do
          if [ "$m" = k8s.io/sample-cli-plugin ]; then
            echo "	$m => ./stub/sample-cli-plugin"
          else
            echo "	$m => $m $staging_version"
          fi
        done
    echo ")"
  } > "$mod/go.mod"
  cat > "$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  (cd "$mod" && go mod tidy -e >&2 2>&1 | tail -5 >&2 || true)
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2) -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$bin/$c" ] && continue
    log "building $c $KUBERNETES_VERSION"
    (cd "$mod" && go build -trimpath -ldflags "$ld" -o "$bin/$c.tmp" "k8s.io/kubernetes/cmd/$c") && mv "$bin/$c.tmp" "$bin/$c"
  done
}

build_etcd() {
  [ -x "$bin/etcd" ] && return
  local mod="$work/etcd"
  mkdir -p "$mod"
  printf 'module aim-controller/hack/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$mod/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$mod/tools.go"
  (cd "$mod" && go mod tidy -e >&2 2>&1 | tail -5 >&2 || true)
  log "building etcd $ETCD_VERSION"
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3) && mv "$bin/etcd.tmp" "$bin/etcd"
}

build_kwok() {
  [ -x "$bin/kwok" ] && return
  log "building kwok $KWOK_VERSION"
  GOBIN="$work/kwokbin" go install -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >&2
  mv "$work/kwokbin/kwok" "$bin/kwok"
}

build_etcd
build_kwok
build_kubernetes
build_helm
ln -sfn "$helm_bin" "$bin/helm"
build_metrics_server
ln -sfn "$ms_bin" "$bin/metrics-server"
build_keda
link_keda "$bin"
have_all "$bin" || { log "some binaries are missing in $bin"; exit 1; }
echo "$bin"
