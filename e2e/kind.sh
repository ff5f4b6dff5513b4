#!/usr/bin/env bash
# Runs the e2e suite against a kind cluster running modelshield's image and its chart.
# Needs docker (images/docker-engine.sh starts Debian's dockerd) and Go; everything else is
# built here, because kind's own images cannot be downloaded on the machines this project
# runs on:
#
#   kind v0.33.0, kubeadm, etcd, crictl   e2e/tools/build-kind.sh (Go modules)
#   the node image                        images/kind-node-image.sh (Debian packages, kind's
#                                         files, the cached v1.36.3 binaries; see there)
#   modelshield:dev                       images/build-image.sh
#
# The cluster: one node, kind's default CNI (kindnetd) disabled for the bridge config the
# node image carries, kubeadm's images from modelshield.local/kind, and what this kind of
# host needs (e2e/README.md, kind): kubelet on cgroup v1 (failCgroupV1: false), containerd
# allowed to clamp oom_score_adj (root here lacks CAP_SYS_RESOURCE).
#
# A kind cluster changes the host's networking (a docker network, its bridge, iptables
# rules), so this script holds the local node's lock (e2e/nodelock.py) while it runs; it
# waits for a node session that holds it.
#
# Usage: e2e/kind.sh [extra pytest arguments]
#   KIND_CLUSTER_NAME   cluster to use or create       (default modelshield-e2e)
#   MODELSHIELD_IMAGE   image tag to build and load    (default modelshield:dev)
#   KIND_NODE_IMAGE     node image                     (default modelshield-kind-node:v1.36.3,
#                                                       made when missing)
#   KEEP_KIND_CLUSTER=1 keep a cluster this script created
set -euo pipefail

readonly CLUSTER_NAME="${KIND_CLUSTER_NAME:-modelshield-e2e}"
readonly IMAGE="${MODELSHIELD_IMAGE:-modelshield:dev}"
readonly DEFAULT_NODE_IMAGE=modelshield-kind-node:v1.36.3
readonly NODE_IMAGE="${KIND_NODE_IMAGE:-$DEFAULT_NODE_IMAGE}"
readonly CHART_DIR=charts/modelshield
readonly RELEASE_NAMESPACE=modelshield-system
readonly CACHE="${MODELSHIELD_TOOLS_CACHE:-$HOME/.cache/modelshield/tools}"
readonly NODE_LOCK=/tmp/modelshield-e2e-node-session.lock
readonly NODE_LOCK_WAIT_SECONDS=2400

log() { printf 'e2e/kind.sh: %s\n' "$*" >&2; }
die() { printf 'e2e/kind.sh: %s\n' "$*" >&2; exit 2; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."

docker="$(images/docker-engine.sh)" || die "no docker engine (images/docker-engine.sh failed)"
python="${PYTHON:-.venv/bin/python}"
[[ -x "$python" ]] || python="$(command -v python3)" || die "no Python found (set PYTHON=...)"

e2e/tools/build-kind.sh
for env_file in env.sh kind-env.sh; do
  [[ -f "$CACHE/$env_file" ]] || die "$CACHE/$env_file is missing: run e2e/tools/build-tools.sh"
  # shellcheck source=/dev/null
  source "$CACHE/$env_file"
done
if ! "$docker" image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
  [[ "$NODE_IMAGE" == "$DEFAULT_NODE_IMAGE" ]] || die "node image $NODE_IMAGE does not exist"
  images/kind-node-image.sh "$NODE_IMAGE"
fi

exec {lock_fd}>>"$NODE_LOCK"
if ! flock -n "$lock_fd"; then
  log "a local node session holds $NODE_LOCK; waiting for it (up to ${NODE_LOCK_WAIT_SECONDS} s)"
  flock -w "$NODE_LOCK_WAIT_SECONDS" "$lock_fd" || die "$NODE_LOCK stayed busy for ${NODE_LOCK_WAIT_SECONDS} s"
fi
images/build-image.sh "$IMAGE"

work="$(mktemp -d "${TMPDIR:-/tmp}/modelshield-kind.XXXXXX")"
kubeconfig="$work/kubeconfig"
created_cluster=0
# kind leaves its docker network (a bridge and iptables rules on the host) behind; one this
# script made goes with the cluster.
created_network=0
"$docker" network inspect kind >/dev/null 2>&1 || created_network=1
# kind mounts the host's /lib/modules into its nodes; docker makes the directory, empty,
# where the host has none. It goes too.
created_lib_modules=0
[[ -e /lib/modules ]] || created_lib_modules=1
cleanup() {
  if (( created_cluster )) && [[ "${KEEP_KIND_CLUSTER:-0}" != 1 ]]; then
    kind delete cluster --name "$CLUSTER_NAME" || true
    (( created_network == 0 )) || "$docker" network rm kind >/dev/null || true
    (( created_lib_modules == 0 )) || rmdir /lib/modules 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# kind runs its nodes `docker run --privileged`, for which Docker 20.10 asks runc for every
# capability the kernel knows; where root's bounding set lacks one (CAP_SYS_RESOURCE on
# this project's machines) runc fails: "unable to apply caps: operation not permitted".
# Then kind's docker runs those containers with a runc wrapper that leaves the missing
# ones out (images/kind/docker-runtime.sh registers it with dockerd).
kind_env=()
bounding="$(awk '/^CapBnd:/ {print $2}' /proc/self/status)"
if (( 16#$bounding != (1 << ($(cat /proc/sys/kernel/cap_last_cap) + 1)) - 1 )); then
  runtime="$(images/kind/docker-runtime.sh)" \
    || die "root lacks capabilities (CapBnd $bounding) and the runc wrapper could not be registered with dockerd"
  mkdir -p "$work/bin"
  ln -s "$PWD/images/kind/docker-for-kind.sh" "$work/bin/docker"
  kind_env=(env "PATH=$work/bin:$PATH" "MODELSHIELD_REAL_DOCKER=$docker" "MODELSHIELD_KIND_RUNTIME=$runtime")
  log "root's capability bounding set is $bounding: kind's nodes run with the runtime $runtime"
fi
kind() { "${kind_env[@]}" "$MODELSHIELD_KIND" "$@"; }

cat >"$work/cluster.yaml" <<'YAML'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  # kindnetd's image is not made here; the node image carries a bridge CNI config.
  disableDefaultCNI: true
kubeadmConfigPatches:
  - |
    kind: ClusterConfiguration
    imageRepository: modelshield.local/kind
  - |
    kind: KubeletConfiguration
    failCgroupV1: false
containerdConfigPatches:
  - |
    [plugins."io.containerd.grpc.v1.cri"]
      restrict_oom_score_adj = true
YAML

if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  started=$SECONDS
  created_cluster=1
  kind create cluster --name "$CLUSTER_NAME" --image "$NODE_IMAGE" \
    --config "$work/cluster.yaml" --wait 180s --retain \
    || { logs="/tmp/modelshield-kind-logs-$(date +%s)"
         kind export logs "$logs" --name "$CLUSTER_NAME" >/dev/null 2>&1 || true
         die "kind create cluster failed (above); the node's logs: $logs"; }
  log "cluster $CLUSTER_NAME up in $((SECONDS - started)) s"
fi
kind get kubeconfig --name "$CLUSTER_NAME" >"$kubeconfig"
kind load docker-image "$IMAGE" --name "$CLUSTER_NAME"

# First the chart on kind's node: the image runs as the webhook's two replicas and the
# operator, `helm test` asks the webhook to judge, and an uninstall leaves no webhook
# configuration behind that would refuse creates with nothing to answer them.
helm="${MODELSHIELD_HELM:-$(command -v helm || true)}"
[[ -n "$helm" && -x "$helm" ]] || die "helm is needed to install $CHART_DIR: run e2e/tools/build-tools.sh"
helm_() { "$helm" --kubeconfig "$kubeconfig" --namespace "$RELEASE_NAMESPACE" "$@"; }
started=$SECONDS
# pullPolicy Never: the image exists only inside the kind node, loaded above.
helm_ upgrade --install modelshield "$CHART_DIR" --create-namespace \
  --set image.repository="${IMAGE%:*}" \
  --set image.tag="${IMAGE##*:}" \
  --set image.pullPolicy=Never \
  --wait --timeout 5m || die "helm install on kind failed"
log "chart installed, its pods Ready, in $((SECONDS - started)) s"
helm_ test modelshield --timeout 5m || die "helm test on kind failed"
helm_ uninstall modelshield --wait --timeout 5m || die "helm uninstall on kind failed"
kubectl_() { "$MODELSHIELD_KUBECTL" --kubeconfig "$kubeconfig" "$@"; }
left="$(kubectl_ get validatingwebhookconfigurations,mutatingwebhookconfigurations \
  -l app.kubernetes.io/instance=modelshield -o name)"
[[ -z "$left" ]] || die "helm uninstall left webhook configurations behind: $left"
log "chart: helm test passed; uninstalled with no webhook configuration left"

# Then the suite, on the cluster without the release (its CRDs stay). The suite runs
# modelshield's webhook and operator as processes of its own with their own webhook
# configurations, which a release beside them would judge too (its webhook denies what they
# create for their own operators, its ValidatingAdmissionPolicy keeps namespace labels).
# Those webhooks (modelshield's, KServe's manager) are registered by a URL the node's API
# server can call: this machine's address on kind's docker network. The pods suite
# (e2e/pods) starts a node of its own: not here.
callback_host="$("$docker" network inspect kind \
  -f '{{range .IPAM.Config}}{{.Gateway}} {{end}}' | tr ' ' '\n' | grep -m1 -E '^[0-9.]+$')" \
  || die "kind's docker network has no IPv4 gateway for the API server to call back"
suite_status=0
MODELSHIELD_E2E_NODE=0 MODELSHIELD_E2E_CALLBACK_HOST="$callback_host" \
  "$python" -m pytest e2e --kubeconfig "$kubeconfig" "$@" || suite_status=$?
exit "$suite_status"
