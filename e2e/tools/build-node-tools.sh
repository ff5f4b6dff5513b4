#!/usr/bin/env bash
# Builds what a real node of the e2e cluster needs (e2e/node.py) into the same tool cache
# as e2e/tools/build-tools.sh, and installs the node's Debian packages:
#
#   kubelet, kube-scheduler, kube-proxy  k8s.io/kubernetes, built the way build-tools.sh
#                                        builds kube-apiserver
#   kube-router (firewall only)          the NetworkPolicy implementation; see below
#   pause                                the pod sandbox's process, a static Go program
#   containerd 1.6, runc, CNI plugins,   Debian packages (apt-get)
#   iptables, ipset, conntrack
#
# NetworkPolicy: kube-network-policies (what kind ships) needs the kernel's nftables queue
# (CONFIG_NFT_QUEUE), which CI's kernel lacks: it enforced nothing there. kube-router's
# firewall uses iptables and ipset, which that kernel has. v2.1.0 is the only kube-router
# served here and carries reported security flaws: fit for this throwaway test node only.
#
# Idempotent: what is cached is reused. Writes "$CACHE/node-env.sh" (read by
# e2e/toolcache.py), apart from env.sh, which build-tools.sh rewrites on every run.
#
# Usage: e2e/tools/build-node-tools.sh
set -euo pipefail

readonly KUBERNETES_VERSION=v1.36.3
readonly KUBE_ROUTER_VERSION=v2.1.0
readonly CACHE="${MODELSHIELD_TOOLS_CACHE:-$HOME/.cache/modelshield/tools}"
readonly BUILD_JOBS="${MODELSHIELD_BUILD_JOBS:-2}"
readonly DEBIAN_PACKAGES=(containerd runc containernetworking-plugins iptables ipset conntrack)

log() { printf 'build-node-tools: %s\n' "$*"; }
die() { printf 'build-node-tools: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go is not installed (Go 1.26 is needed)"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-buildvcs=false"
go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
(( go_minor >= 26 )) || die "Go $(go env GOVERSION) is too old: Kubernetes ${KUBERNETES_VERSION} needs Go 1.26"
(( go_minor < 27 )) || export GOEXPERIMENT="${GOEXPERIMENT:+$GOEXPERIMENT,}nojsonv2"

mkdir -p "$CACHE"
started_at=$SECONDS
WORK_DIRS=()
trap 'for d in "${WORK_DIRS[@]}"; do rm -rf "$d"; done' EXIT
new_work_dir() {
  local -n result="$1"
  result="$(mktemp -d "${TMPDIR:-/tmp}/modelshield-node-build.XXXXXX")"
  WORK_DIRS+=("$result")
}
run_logged() {
  local log_file="$1"; shift
  "$@" >>"$log_file" 2>&1 || { tail -n 40 "$log_file" >&2; return 1; }
}

# --- Debian packages -------------------------------------------------------------
install_debian_packages() {
  local missing=() package started=$SECONDS sudo=""
  for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$package")
  done
  (( ${#missing[@]} )) || { log "Debian packages: installed"; return; }
  command -v apt-get >/dev/null || die "missing ${missing[*]} and apt-get is not available"
  (( EUID == 0 )) || sudo="sudo"
  # exit 101: maintainer scripts must not start containerd; the harness runs its own.
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    created_policy=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  (( created_policy == 0 )) || $sudo rm -f "$policy"
  log "Debian packages ${missing[*]}: installed in $((SECONDS - started)) s"
}

# --- Kubernetes node binaries ------------------------------------------------------
# The same throwaway-module recipe as build-tools.sh (kept apart while that script is
# being extended): require k8s.io/kubernetes and replace each staging module by its
# published v0.MINOR.PATCH.
KUBERNETES_MODULE_DIR=""
kubernetes_module_dir() {
  local dir="$1" gomod module
  gomod="$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" 2>/dev/null \
    | sed -n -E 's/^[[:space:]]*"GoMod": "(.*)",?$/\1/p')"
  [[ -f "$gomod" ]] || die "could not download the go.mod of k8s.io/kubernetes@${KUBERNETES_VERSION}"
  (
    cd "$dir"
    go mod init modelshield.dev/e2e-node-tools-build >/dev/null 2>&1
    for module in $(sed -E 's/^[[:space:]]*replace[[:space:]]+//' "$gomod" \
        | awk '$2 == "=>" && $1 ~ /^k8s\.io\// && $3 ~ /^\.\/staging\// { print $1 }'); do
      go mod edit -replace="${module}=${module}@v0.${KUBERNETES_VERSION#v1.}"
    done
    go mod edit -require="k8s.io/kubernetes@${KUBERNETES_VERSION}"
  ) || exit 1
}

kubernetes_ldflags() {
  local minor="${KUBERNETES_VERSION#v1.}" pkg flags="-s -w"
  minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X ${pkg}.gitVersion=${KUBERNETES_VERSION} -X ${pkg}.gitMajor=1"
    flags+=" -X ${pkg}.gitMinor=${minor} -X ${pkg}.gitTreeState=clean"
  done
  printf '%s' "$flags"
}

build_kubernetes_binary() {
  local name="$1" dir="$CACHE/$1-${KUBERNETES_VERSION}" started=$SECONDS
  [[ -x "$dir/$name" ]] && { log "$name ${KUBERNETES_VERSION}: cached"; return; }
  if [[ -z "$KUBERNETES_MODULE_DIR" ]]; then
    new_work_dir KUBERNETES_MODULE_DIR
    kubernetes_module_dir "$KUBERNETES_MODULE_DIR"
  fi
  rm -rf "$dir.partial"; mkdir -p "$dir.partial"
  (
    cd "$KUBERNETES_MODULE_DIR"
    run_logged "$dir.partial/build.log" go get "k8s.io/kubernetes/cmd/${name}@${KUBERNETES_VERSION}"
    run_logged "$dir.partial/build.log" go build -p "$BUILD_JOBS" -trimpath \
      -ldflags "$(kubernetes_ldflags)" -o "$dir.partial/$name" "k8s.io/kubernetes/cmd/${name}"
  ) || die "building $name ${KUBERNETES_VERSION} failed (log above)"
  rm -rf "$dir"; mv "$dir.partial" "$dir"
  log "$name ${KUBERNETES_VERSION}: built in $((SECONDS - started)) s"
}

# --- kube-router --------------------------------------------------------------------
build_kube_router() {
  local dir="$CACHE/kube-router-${KUBE_ROUTER_VERSION}" started=$SECONDS
  [[ -x "$dir/kube-router" ]] && { log "kube-router ${KUBE_ROUTER_VERSION}: cached"; return; }
  rm -rf "$dir.partial"; mkdir -p "$dir.partial"
  GOBIN="$dir.partial" run_logged "$dir.partial/build.log" go install -p "$BUILD_JOBS" -trimpath \
    -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=${KUBE_ROUTER_VERSION}" \
    "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@${KUBE_ROUTER_VERSION}" \
    || die "building kube-router ${KUBE_ROUTER_VERSION} failed (log above)"
  rm -rf "$dir"; mv "$dir.partial" "$dir"
  log "kube-router ${KUBE_ROUTER_VERSION}: built in $((SECONDS - started)) s"
}

# --- pause ----------------------------------------------------------------------------
# What a pod sandbox runs: sleep until told to stop, reap nothing. e2e/node.py wraps it in
# an image of one file and imports it into the node's containerd.
readonly PAUSE_VERSION=1
build_pause() {
  local dir="$CACHE/pause-${PAUSE_VERSION}" work
  [[ -x "$dir/pause" ]] && { log "pause: cached"; return; }
  new_work_dir work
  cat >"$work/main.go" <<'GO'
// pause holds a pod's namespaces open until the runtime stops it.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
GO
  rm -rf "$dir.partial"; mkdir -p "$dir.partial"
  (cd "$work" && go mod init modelshield.dev/pause >/dev/null 2>&1 \
    && run_logged "$dir.partial/build.log" go build -trimpath -ldflags "-s -w" -o "$dir.partial/pause" .) \
    || die "building pause failed (log above)"
  rm -rf "$dir"; mv "$dir.partial" "$dir"
  log "pause: built"
}

install_debian_packages
build_pause
build_kubernetes_binary kubelet
build_kubernetes_binary kube-scheduler
build_kubernetes_binary kube-proxy
build_kube_router

{
  printf '# Written by e2e/tools/build-node-tools.sh; read by e2e/toolcache.py.\n'
  printf 'export MODELSHIELD_KUBELET=%q\n' "$CACHE/kubelet-${KUBERNETES_VERSION}/kubelet"
  printf 'export MODELSHIELD_KUBE_SCHEDULER=%q\n' "$CACHE/kube-scheduler-${KUBERNETES_VERSION}/kube-scheduler"
  printf 'export MODELSHIELD_KUBE_PROXY=%q\n' "$CACHE/kube-proxy-${KUBERNETES_VERSION}/kube-proxy"
  printf 'export MODELSHIELD_KUBE_ROUTER=%q\n' "$CACHE/kube-router-${KUBE_ROUTER_VERSION}/kube-router"
  printf 'export MODELSHIELD_PAUSE=%q\n' "$CACHE/pause-${PAUSE_VERSION}/pause"
  printf 'export MODELSHIELD_CONTAINERD=%q\n' "$(command -v containerd || echo /usr/bin/containerd)"
  printf 'export MODELSHIELD_CNI_BIN_DIR=%q\n' /usr/lib/cni
} >"$CACHE/node-env.sh.partial"
mv "$CACHE/node-env.sh.partial" "$CACHE/node-env.sh"
log "node tools ready in $((SECONDS - started_at)) s; env: $CACHE/node-env.sh"
