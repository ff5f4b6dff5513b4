#!/usr/bin/env bash
# Builds the real tools the e2e suite needs (Kubernetes control plane, kubectl,
# helm, cosign, an OCI registry with the Referrers API, KServe's controller
# manager) and the benchmarks' load generator (vegeta) from the Go module
# registry into a version-keyed cache outside the repository, and installs etcd
# from Debian. Idempotent: a tool whose binary is already cached is reused.
#
# Usage: e2e/tools/build-tools.sh            # build what is missing
#        MODELSHIELD_TOOLS_CACHE=/some/dir e2e/tools/build-tools.sh
#
# Writes "$CACHE/env.sh", which exports the path of every tool; the e2e
# harness reads the same cache.
set -euo pipefail

# Pinned versions. Kubernetes: the newest v1.36 patch release. The staging
# modules (k8s.io/api, k8s.io/client-go, ...) are published as v0.MINOR.PATCH.
readonly KUBERNETES_VERSION=v1.36.3
readonly HELM_VERSION=v3.22.0
readonly COSIGN_VERSION=v2.6.5
readonly GGCR_VERSION=v0.22.1
# vegeta: the admission benchmark's HTTPS load generator (Go, so that the client's own
# cost does not show up as the server's latency).
readonly VEGETA_VERSION=v12.13.0
# moto's S3-compatible server for the model-fetching tests, in a venv of its own: botocore
# pins python-dateutil < 3, which the kubernetes client of the project venv does not accept.
readonly MOTO_VERSION=5.2.5
# KServe's controller manager (cmd/manager: the InferenceService controller and KServe's
# webhooks, among them the pod mutator that injects the storage initializer), with the
# CRDs, ConfigMap, webhook configurations and RBAC of the same release. The module proxy
# serves exact versions only (it refuses the version list), so this is never "latest".
readonly KSERVE_VERSION=v0.17.0

readonly CACHE="${MODELSHIELD_TOOLS_CACHE:-$HOME/.cache/modelshield/tools}"
# Two cores on CI: more parallel compile jobs only add memory pressure.
readonly BUILD_JOBS="${MODELSHIELD_BUILD_JOBS:-2}"

log() { printf '%s\n' "$*"; }
die() { printf 'build-tools: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go is not installed (Go 1.26 is needed)"

# Never download a different Go toolchain behind our back; build with the one
# installed, and fail loudly if it is too old.
export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOFLAGS="-buildvcs=false"

go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
[[ "$go_minor" =~ ^[0-9]+$ ]] || die "cannot parse Go version $(go env GOVERSION)"
(( go_minor >= 26 )) || die "Go $(go env GOVERSION) is too old: Kubernetes ${KUBERNETES_VERSION} needs Go 1.26"
if (( go_minor >= 27 )); then
  # Go 1.27 turns on encoding/json/v2, and kube-apiserver built with it serves a
  # broken /openapi/v2 ("$root has invalid property: Extensions").
  export GOEXPERIMENT="${GOEXPERIMENT:+$GOEXPERIMENT,}nojsonv2"
fi

mkdir -p "$CACHE"
build_started_at=$SECONDS

# A throwaway module per build, removed on exit.
WORK_DIRS=()
cleanup() { local d; for d in "${WORK_DIRS[@]}"; do rm -rf "$d"; done; }
trap cleanup EXIT
# Sets the caller's variable: a command substitution would run in a subshell
# and the directory would escape the cleanup list.
new_work_dir() {
  local -n result="$1"
  result="$(mktemp -d "${TMPDIR:-/tmp}/modelshield-build.XXXXXX")"
  WORK_DIRS+=("$result")
}

# is_cached DIR NAME...: every named binary exists and is executable in DIR.
is_cached() {
  local dir="$1" name; shift
  for name in "$@"; do [[ -x "$dir/$name" ]] || return 1; done
}

# run_logged LOG COMMAND...: keeps the go tool's chatter ("go: downloading ...")
# out of the summary, and shows its end when the command fails.
run_logged() {
  local log="$1"; shift
  if ! "$@" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    return 1
  fi
}

# Build into "$dir.partial" and rename at the end, so an interrupted build never
# leaves a directory that looks complete.
begin_build() { rm -rf "$1.partial"; mkdir -p "$1.partial"; }
finish_build() { rm -rf "$1"; mv "$1.partial" "$1"; }

# --- Kubernetes: kube-apiserver, kube-controller-manager, kubectl -----------
kubernetes_module_dir() {
  # Turns DIR into a throwaway module that requires k8s.io/kubernetes and
  # replaces every staging module the way k8s.io/kubernetes's own go.mod does,
  # but with the published v0.MINOR.PATCH instead of ./staging/...
  local dir="$1" gomod staging_version replaces module
  staging_version="v0.${KUBERNETES_VERSION#v1.}"
  (
    cd "$dir"
    go mod init modelshield.dev/e2e-tools-build >/dev/null 2>&1
    gomod="$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" 2>/dev/null \
      | sed -n -E 's/^[[:space:]]*"GoMod": "(.*)",?$/\1/p')"
    [[ -f "$gomod" ]] || die "could not download the go.mod of k8s.io/kubernetes@${KUBERNETES_VERSION}"
    # Lines look like "k8s.io/api => ./staging/src/k8s.io/api" inside a
    # replace ( ... ) block, or "replace k8s.io/api => ./staging/..." alone.
    # Only k8s.io/* modules replaced by a staging directory are taken.
    replaces="$(sed -E 's/^[[:space:]]*replace[[:space:]]+//' "$gomod" \
      | awk '$2 == "=>" && $1 ~ /^k8s\.io\// && $3 ~ /^\.\/staging\// { print $1 }')"
    [[ -n "$replaces" ]] || die "found no staging replaces in $gomod"
    for module in $replaces; do
      go mod edit -replace="${module}=${module}@${staging_version}"
    done
    go mod edit -require="k8s.io/kubernetes@${KUBERNETES_VERSION}"
  ) || exit 1
}

kubernetes_ldflags() {
  # The variables hack/lib/version.sh sets in an official build, so that
  # `kubectl version` and /version report the real release.
  local minor build_date pkg flags="-s -w"
  minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X ${pkg}.gitVersion=${KUBERNETES_VERSION}"
    flags+=" -X ${pkg}.gitMajor=1"
    flags+=" -X ${pkg}.gitMinor=${minor}"
    # The module zip carries no commit; an empty value beats "$Format:%H$".
    flags+=" -X ${pkg}.gitCommit="
    flags+=" -X ${pkg}.gitTreeState=clean"
    flags+=" -X ${pkg}.buildDate=${build_date}"
  done
  printf '%s' "$flags"
}

KUBERNETES_MODULE_DIR=""
build_kubernetes_binary() {
  local name="$1" dir="$CACHE/$1-${KUBERNETES_VERSION}" started=$SECONDS
  if is_cached "$dir" "$name"; then
    log "$name ${KUBERNETES_VERSION}: cached in $dir"
    return
  fi
  if [[ -z "$KUBERNETES_MODULE_DIR" ]]; then
    new_work_dir KUBERNETES_MODULE_DIR
    kubernetes_module_dir "$KUBERNETES_MODULE_DIR"
  fi
  begin_build "$dir"
  (
    cd "$KUBERNETES_MODULE_DIR"
    # `go get` of the command package resolves and records every dependency of
    # that package in the throwaway go.mod.
    run_logged "$dir.partial/build.log" go get "k8s.io/kubernetes/cmd/${name}@${KUBERNETES_VERSION}"
    run_logged "$dir.partial/build.log" go build -p "$BUILD_JOBS" -trimpath \
      -ldflags "$(kubernetes_ldflags)" -o "$dir.partial/$name" "k8s.io/kubernetes/cmd/${name}"
  ) || die "building $name ${KUBERNETES_VERSION} failed (log above)"
  finish_build "$dir"
  log "$name ${KUBERNETES_VERSION}: built in $((SECONDS - started)) s"
}

# --- Tools installed with `go install module/cmd@version` --------------------
# go_install NAME PACKAGE VERSION [LDFLAGS]
go_install() {
  local name="$1" package="$2" version="$3" ldflags="${4:-}"
  local dir="$CACHE/$name-$version" started=$SECONDS
  if is_cached "$dir" "$name"; then
    log "$name $version: cached in $dir"
    return
  fi
  begin_build "$dir"
  GOBIN="$dir.partial" run_logged "$dir.partial/build.log" go install -p "$BUILD_JOBS" -trimpath \
    -ldflags "-s -w $ldflags" "${package}@${version}" || die "building $name $version failed (log above)"
  # The binary is named after the package's last path element, a major-version suffix
  # (/v12) excepted.
  [[ -e "$dir.partial/$name" ]] || mv "$dir.partial/$(basename "$package")" "$dir.partial/$name"
  finish_build "$dir"
  log "$name $version: built in $((SECONDS - started)) s"
}

# --- KServe: the controller manager, built as its own release builds it -------------
# KServe's go.mod has replace directives, which `go install pkg@version` refuses; so the
# module's go.mod, go.sum, cmd/ and pkg/ are copied out of the module cache and built as
# the main module, with exactly the versions (and checksums) of that release. The
# manifests the e2e harness installs are copied from the same module, never written by hand.
build_kserve_manager() {
  local name=kserve-manager dir="$CACHE/kserve-manager-${KSERVE_VERSION}" started=$SECONDS
  local module_dir work manifest
  if is_cached "$dir" "$name" && [[ -f "$dir/config/configmap/inferenceservice.yaml" ]]; then
    log "$name ${KSERVE_VERSION}: cached in $dir"
    return
  fi
  begin_build "$dir"
  module_dir="$(go mod download -json "github.com/kserve/kserve@${KSERVE_VERSION}" 2>>"$dir.partial/build.log" \
    | sed -n -E 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')"
  if [[ ! -d "$module_dir" ]]; then
    tail -n 20 "$dir.partial/build.log" >&2
    die "could not download github.com/kserve/kserve@${KSERVE_VERSION}"
  fi
  new_work_dir work
  cp -R "$module_dir/go.mod" "$module_dir/go.sum" "$module_dir/cmd" "$module_dir/pkg" "$work/"
  chmod -R u+w "$work"
  (
    cd "$work"
    run_logged "$dir.partial/build.log" go build -p "$BUILD_JOBS" -trimpath -ldflags "-s -w" \
      -o "$dir.partial/$name" ./cmd/manager
  ) || die "building $name ${KSERVE_VERSION} failed (log above)"
  for manifest in config/crd/full config/configmap/inferenceservice.yaml \
    config/webhook/manifests.yaml config/rbac/role.yaml; do
    mkdir -p "$dir.partial/$(dirname "$manifest")"
    cp -R "$module_dir/$manifest" "$dir.partial/$manifest"
  done
  chmod -R u+w "$dir.partial/config"
  finish_build "$dir"
  log "$name ${KSERVE_VERSION}: built in $((SECONDS - started)) s"
}

# --- etcd: Debian's etcd-server package ---------------------------------------
ETCD_BINARY=""
install_etcd() {
  local started=$SECONDS version dir
  if ! command -v etcd >/dev/null && [[ ! -x /usr/bin/etcd ]]; then
    command -v apt-get >/dev/null || die "etcd is missing and apt-get is not available: install etcd 3.4+ and put it on PATH"
    local sudo=""
    (( EUID == 0 )) || sudo="sudo"
    # policy-rc.d exit 101 tells Debian's maintainer scripts not to start the
    # etcd service: the harness runs its own etcd on a free port.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "$policy" ]]; then
      printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
      $sudo chmod +x "$policy"
      created_policy=1
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq etcd-server >/dev/null
    (( created_policy == 0 )) || $sudo rm -f "$policy"
    log "etcd: installed from Debian's etcd-server in $((SECONDS - started)) s"
  fi
  # Whatever happened at install time, make sure a system etcd is not running
  # or starting at boot; it would hold 2379/2380 and a data dir we never use.
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
  elif command -v service >/dev/null; then
    service etcd stop >/dev/null 2>&1 || true
  fi
  ETCD_BINARY="$(command -v etcd || echo /usr/bin/etcd)"
  version="$("$ETCD_BINARY" --version | sed -n -E 's/^etcd Version: *//p')"
  dir="$CACHE/etcd-${version:-unknown}"
  mkdir -p "$dir"
  ln -sfn "$ETCD_BINARY" "$dir/etcd"
  ETCD_BINARY="$dir/etcd"
  log "etcd ${version:-unknown}: $ETCD_BINARY"
}

install_etcd
# The slowest build first, so a failure shows early.
build_kubernetes_binary kube-apiserver
build_kubernetes_binary kube-controller-manager
build_kubernetes_binary kubectl
go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" \
  "-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
go_install cosign github.com/sigstore/cosign/v2/cmd/cosign "$COSIGN_VERSION" \
  "-X sigs.k8s.io/release-utils/version.gitVersion=${COSIGN_VERSION}"
go_install registry github.com/google/go-containerregistry/cmd/registry "$GGCR_VERSION"
go_install vegeta github.com/tsenart/vegeta/v12 "$VEGETA_VERSION"
build_kserve_manager

# --- moto: an S3-compatible server, from PyPI, in its own virtual environment -----
install_moto() {
  local dir="$CACHE/moto-$MOTO_VERSION" started=$SECONDS
  if is_cached "$dir/bin" moto_server; then
    log "moto $MOTO_VERSION: cached in $dir"
    return
  fi
  rm -rf "$dir"
  python3 -m venv "$dir"
  run_logged "$dir/install.log" "$dir/bin/pip" install --quiet "moto[server]==$MOTO_VERSION" \
    || die "installing moto $MOTO_VERSION failed (log above)"
  log "moto $MOTO_VERSION: installed in $((SECONDS - started)) s"
}
install_moto

# --- env.sh -----------------------------------------------------------------
tool_dirs=(
  "$(dirname "$ETCD_BINARY")"
  "$CACHE/kube-apiserver-${KUBERNETES_VERSION}"
  "$CACHE/kube-controller-manager-${KUBERNETES_VERSION}"
  "$CACHE/kubectl-${KUBERNETES_VERSION}"
  "$CACHE/helm-${HELM_VERSION}"
  "$CACHE/cosign-${COSIGN_VERSION}"
  "$CACHE/registry-${GGCR_VERSION}"
)
tools_path="$(IFS=:; printf '%s' "${tool_dirs[*]}")"
{
  printf '# Written by e2e/tools/build-tools.sh; source it to use the cached tools.\n'
  printf 'export MODELSHIELD_KUBERNETES_VERSION=%q\n' "$KUBERNETES_VERSION"
  printf 'export MODELSHIELD_ETCD=%q\n' "$ETCD_BINARY"
  printf 'export MODELSHIELD_KUBE_APISERVER=%q\n' "$CACHE/kube-apiserver-${KUBERNETES_VERSION}/kube-apiserver"
  printf 'export MODELSHIELD_KUBE_CONTROLLER_MANAGER=%q\n' "$CACHE/kube-controller-manager-${KUBERNETES_VERSION}/kube-controller-manager"
  printf 'export MODELSHIELD_KUBECTL=%q\n' "$CACHE/kubectl-${KUBERNETES_VERSION}/kubectl"
  printf 'export MODELSHIELD_HELM=%q\n' "$CACHE/helm-${HELM_VERSION}/helm"
  printf 'export MODELSHIELD_COSIGN=%q\n' "$CACHE/cosign-${COSIGN_VERSION}/cosign"
  printf 'export MODELSHIELD_REGISTRY=%q\n' "$CACHE/registry-${GGCR_VERSION}/registry"
  printf 'export MODELSHIELD_VEGETA=%q\n' "$CACHE/vegeta-${VEGETA_VERSION}/vegeta"
  printf 'export MODELSHIELD_MOTO_SERVER=%q\n' "$CACHE/moto-${MOTO_VERSION}/bin/moto_server"
  printf 'export MODELSHIELD_KSERVE_VERSION=%q\n' "$KSERVE_VERSION"
  # The manifests of the same release are in config/ next to the binary.
  printf 'export MODELSHIELD_KSERVE_MANAGER=%q\n' "$CACHE/kserve-manager-${KSERVE_VERSION}/kserve-manager"
  # shellcheck disable=SC2016 # $PATH must expand when env.sh is sourced, not now
  printf 'export PATH=%q:"$PATH"\n' "$tools_path"
} > "$CACHE/env.sh.partial"
mv "$CACHE/env.sh.partial" "$CACHE/env.sh"

log "all tools ready in $((SECONDS - build_started_at)) s; env: $CACHE/env.sh"
log "export PATH=\"${tools_path}:\$PATH\"   # or: source $CACHE/env.sh"
