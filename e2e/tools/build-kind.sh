#!/usr/bin/env bash
# Builds what `make e2e-kind` needs beyond the node tools, from the Go module registry
# (kind's own node images come from Docker Hub and registry.k8s.io, which this kind of
# machine cannot reach; images/kind-node-image.sh makes one of these instead):
#
#   kind v0.33.0         sigs.k8s.io/kind (the CLI; its module also carries the node
#                        base image's files, images/base/files, which the image uses)
#   kubeadm v1.36.3      k8s.io/kubernetes/cmd/kubeadm, the recipe of build-node-tools.sh
#   etcd v3.6.8          go.etcd.io/etcd/server/v3 (+ etcdctl): the etcd kubeadm v1.36
#                        deploys; Debian's 3.4 is older than kubeadm's flags expect
#   crictl v1.36.0       sigs.k8s.io/cri-tools (`kind load` inspects images with it)
#   CoreDNS v1.14.2      github.com/coredns/coredns, the version kubeadm v1.36 deploys
#                        (11 min cold on a loaded two-core machine, seconds when cached)
#
# Not part of CI (`make e2e-kind` asks for it). Idempotent: what is cached is reused.
# Writes "$CACHE/kind-env.sh".
#
# Usage: e2e/tools/build-kind.sh
set -euo pipefail

readonly KIND_VERSION=v0.33.0
readonly KUBERNETES_VERSION=v1.36.3
readonly ETCD_VERSION=v3.6.8
readonly CRICTL_VERSION=v1.36.0
readonly COREDNS_VERSION=v1.14.2
readonly CACHE="${MODELSHIELD_TOOLS_CACHE:-$HOME/.cache/modelshield/tools}"
readonly BUILD_JOBS="${MODELSHIELD_BUILD_JOBS:-2}"

log() { printf 'build-kind: %s\n' "$*"; }
die() { printf 'build-kind: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go is not installed (Go 1.26 is needed)"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-buildvcs=false"
go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
(( go_minor >= 26 )) || die "Go $(go env GOVERSION) is too old: Kubernetes ${KUBERNETES_VERSION} needs Go 1.26"
(( go_minor < 27 )) || export GOEXPERIMENT="${GOEXPERIMENT:+$GOEXPERIMENT,}nojsonv2"

mkdir -p "$CACHE"
started_at=$SECONDS
WORK_DIRS=()
cleanup() { local d; for d in "${WORK_DIRS[@]}"; do rm -rf "$d"; done; }
trap cleanup EXIT
new_work_dir() {
  local -n result="$1"
  result="$(mktemp -d "${TMPDIR:-/tmp}/modelshield-kind-build.XXXXXX")"
  WORK_DIRS+=("$result")
}
run_logged() {
  local log_file="$1"; shift
  "$@" >>"$log_file" 2>&1 || { tail -n 40 "$log_file" >&2; return 1; }
}
cached() { [[ -x "$1" ]] && log "$(basename "$1"): cached in $(dirname "$1")"; }
finish() { rm -rf "$1"; mv "$1.partial" "$1"; log "$2: built in $(( SECONDS - $3 )) s"; }

module_dir() {
  go mod download -json "$1" 2>/dev/null | sed -n -E 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p'
}

# --- kind and crictl: plain `go install module@version` -------------------------------
go_install() {
  local name="$1" package="$2" version="$3" dir="$CACHE/$1-$3" started=$SECONDS
  cached "$dir/$name" && return
  rm -rf "$dir.partial"; mkdir -p "$dir.partial"
  GOBIN="$dir.partial" run_logged "$dir.partial/build.log" go install -p "$BUILD_JOBS" -trimpath \
    -ldflags "-s -w" "${package}@${version}" || die "building $name $version failed (log above)"
  finish "$dir" "$name $version" "$started"
}

# --- kubeadm: the throwaway-module recipe of build-node-tools.sh ------------------------
build_kubeadm() {
  local dir="$CACHE/kubeadm-${KUBERNETES_VERSION}" started=$SECONDS work gomod module minor
  cached "$dir/kubeadm" && return
  new_work_dir work
  gomod="$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" 2>/dev/null \
    | sed -n -E 's/^[[:space:]]*"GoMod": "(.*)",?$/\1/p')"
  [[ -f "$gomod" ]] || die "could not download the go.mod of k8s.io/kubernetes@${KUBERNETES_VERSION}"
  minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  rm -rf "$dir.partial"; mkdir -p "$dir.partial"
  (
    cd "$work"
    go mod init modelshield.dev/e2e-kind-build >/dev/null 2>&1
    sed -E 's/^[[:space:]]*replace[[:space:]]+//' "$gomod" \
      | awk '$2 == "=>" && $1 ~ /^k8s\.io\// && $3 ~ /^\.\/staging\// { print $1 }' \
      | while read -r module; do
          go mod edit -replace="${module}=${module}@v0.${KUBERNETES_VERSION#v1.}"
        done
    go mod edit -require="k8s.io/kubernetes@${KUBERNETES_VERSION}"
    run_logged "$dir.partial/build.log" go get "k8s.io/kubernetes/cmd/kubeadm@${KUBERNETES_VERSION}"
    local pkg flags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      flags+=" -X ${pkg}.gitVersion=${KUBERNETES_VERSION} -X ${pkg}.gitMajor=1"
      flags+=" -X ${pkg}.gitMinor=${minor} -X ${pkg}.gitTreeState=clean"
    done
    run_logged "$dir.partial/build.log" go build -p "$BUILD_JOBS" -trimpath -ldflags "$flags" \
      -o "$dir.partial/kubeadm" k8s.io/kubernetes/cmd/kubeadm
  ) || die "building kubeadm ${KUBERNETES_VERSION} failed (log above)"
  finish "$dir" "kubeadm ${KUBERNETES_VERSION}" "$started"
}

# --- etcd: its go.mod replaces its sibling modules by directory, which rules out
# `go install pkg@version`; a throwaway module requiring the published ones builds it.
build_etcd() {
  local dir="$CACHE/etcd-${ETCD_VERSION}" started=$SECONDS work
  cached "$dir/etcd" && [[ -x "$dir/etcdctl" ]] && return
  new_work_dir work
  rm -rf "$dir.partial"; mkdir -p "$dir.partial"
  (
    cd "$work"
    go mod init modelshield.dev/e2e-kind-etcd-build >/dev/null 2>&1
    run_logged "$dir.partial/build.log" go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" \
      "go.etcd.io/etcd/etcdctl/v3@${ETCD_VERSION}"
    local flags="-s -w"
    run_logged "$dir.partial/build.log" go build -p "$BUILD_JOBS" -trimpath -ldflags "$flags" \
      -o "$dir.partial/etcd" go.etcd.io/etcd/server/v3
    run_logged "$dir.partial/build.log" go build -p "$BUILD_JOBS" -trimpath -ldflags "$flags" \
      -o "$dir.partial/etcdctl" go.etcd.io/etcd/etcdctl/v3
  ) || die "building etcd ${ETCD_VERSION} failed (log above)"
  finish "$dir" "etcd ${ETCD_VERSION}" "$started"
}

go_install kind sigs.k8s.io/kind "$KIND_VERSION"
go_install crictl sigs.k8s.io/cri-tools/cmd/crictl "$CRICTL_VERSION"
go_install coredns github.com/coredns/coredns "$COREDNS_VERSION"
build_kubeadm
build_etcd

kind_module="$(module_dir "sigs.k8s.io/kind@${KIND_VERSION}")"
[[ -d "$kind_module/images/base/files" ]] || die "kind's module has no images/base/files"
{
  printf '# Written by e2e/tools/build-kind.sh; read by images/kind-node-image.sh and e2e/kind.sh.\n'
  printf 'export MODELSHIELD_KIND=%q\n' "$CACHE/kind-${KIND_VERSION}/kind"
  printf 'export MODELSHIELD_KIND_VERSION=%q\n' "$KIND_VERSION"
  printf 'export MODELSHIELD_KIND_MODULE=%q\n' "$kind_module"
  printf 'export MODELSHIELD_KUBEADM=%q\n' "$CACHE/kubeadm-${KUBERNETES_VERSION}/kubeadm"
  printf 'export MODELSHIELD_KIND_ETCD=%q\n' "$CACHE/etcd-${ETCD_VERSION}/etcd"
  printf 'export MODELSHIELD_KIND_ETCDCTL=%q\n' "$CACHE/etcd-${ETCD_VERSION}/etcdctl"
  printf 'export MODELSHIELD_KIND_ETCD_VERSION=%q\n' "$ETCD_VERSION"
  printf 'export MODELSHIELD_CRICTL=%q\n' "$CACHE/crictl-${CRICTL_VERSION}/crictl"
  printf 'export MODELSHIELD_COREDNS=%q\n' "$CACHE/coredns-${COREDNS_VERSION}/coredns"
} >"$CACHE/kind-env.sh.partial"
mv "$CACHE/kind-env.sh.partial" "$CACHE/kind-env.sh"
log "kind tools ready in $((SECONDS - started_at)) s; env: $CACHE/kind-env.sh"
