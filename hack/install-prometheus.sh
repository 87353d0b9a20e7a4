#!/usr/bin/env bash
# Makes `prometheus` and `promtool` available for the tests that run a real
# Prometheus (tests/integration/test_prometheus.py) and prints their directory as
# the last line on stdout. Idempotent: when both are already there (on PATH, in
# $PROMETHEUS_BIN_DIR or in /usr/bin) it only prints the directory.
#
# Otherwise it installs Debian's `prometheus` package. The package ships a system
# service; the tests start their own server (own config, data dir and a free port),
# so the service must not run: a daemon on :9090 is in everybody's way, and without
# systemd its init script would run it unsupervised. We keep invoke-rc.d from
# starting it during the install (policy-rc.d), then stop and disable it in case
# anything started it anyway.
set -euo pipefail

log() { echo "install-prometheus: $*" >&2; }

has_both() { [[ -x "$1/prometheus" && -x "$1/promtool" ]]; }

find_dir() {
  local d
  for d in "${PROMETHEUS_BIN_DIR:-}" \
           "$(dirname "$(command -v promtool 2>/dev/null || echo /nonexistent/x)")" \
           /usr/bin; do
    if [[ -n "$d" ]] && has_both "$d"; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

if dir=$(find_dir); then
  echo "$dir"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { log "not root and no sudo: install Debian's prometheus package by hand"; exit 1; }
  SUDO=(sudo)
fi
command -v apt-get >/dev/null || { log "no apt-get: install prometheus and promtool and set PROMETHEUS_BIN_DIR"; exit 1; }

POLICY=/usr/sbin/policy-rc.d
own_policy=false
if [[ ! -e $POLICY ]]; then
  # 101 = "action forbidden": invoke-rc.d (called by the postinst) starts nothing.
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  own_policy=true
fi
cleanup() { if $own_policy; then "${SUDO[@]}" rm -f "$POLICY"; fi; }
trap cleanup EXIT

start=$(date +%s)
log "installing Debian's prometheus package"
"${SUDO[@]}" apt-get update -qq >&2
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends prometheus >&2
log "installed in $(( $(date +%s) - start ))s"

# Belt and braces: whatever started the system service, stop it and keep it off.
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
  "${SUDO[@]}" systemctl disable --now prometheus.service >&2 || true
else
  if [[ -x /etc/init.d/prometheus ]]; then
    "${SUDO[@]}" /etc/init.d/prometheus stop >&2 || true
  fi
  if command -v update-rc.d >/dev/null; then
    "${SUDO[@]}" update-rc.d prometheus disable >&2 || true
  fi
fi
if pgrep -x -u prometheus prometheus >/dev/null 2>&1; then
  log "a system prometheus is still running (user prometheus); stop it: it would hold :9090"
  exit 1
fi

dir=$(find_dir) || { log "prometheus/promtool not found after the install"; exit 1; }
echo "$dir"
