#!/usr/bin/env bash
# Runs the e2e suite against a kind cluster running modelshield's image (and
# its chart, once charts/modelshield exists). Needs docker and kind; CI has
# neither, and runs the same suite against the local control plane instead
# (e2e/tools/build-tools.sh, then pytest e2e).
#
# Usage: e2e/kind.sh [extra pytest arguments]
#   KIND_CLUSTER_NAME   cluster to use or create       (default modelshield-e2e)
#   MODELSHIELD_IMAGE   image tag to build and load    (default modelshield:dev)
#   KEEP_KIND_CLUSTER=1 keep a cluster this script created
set -euo pipefail

readonly CLUSTER_NAME="${KIND_CLUSTER_NAME:-modelshield-e2e}"
readonly IMAGE="${MODELSHIELD_IMAGE:-modelshield:dev}"
readonly CHART_DIR=charts/modelshield
readonly RELEASE_NAMESPACE=modelshield-system

die() { printf 'e2e/kind.sh: %s\n' "$*" >&2; exit 2; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in docker kind; do
  command -v "$tool" >/dev/null \
    || die "$tool is not installed. Without docker and kind, run the suite on a local control plane: e2e/tools/build-tools.sh && .venv/bin/python -m pytest e2e"
done
docker info >/dev/null 2>&1 || die "docker is installed but its daemon does not answer (docker info failed)"

python="${PYTHON:-.venv/bin/python}"
[[ -x "$python" ]] || python="$(command -v python3)" || die "no Python found (set PYTHON=...)"

kubeconfig="$(mktemp "${TMPDIR:-/tmp}/modelshield-kind-kubeconfig.XXXXXX")"
created_cluster=0
cleanup() {
  rm -f "$kubeconfig"
  if (( created_cluster )) && [[ "${KEEP_KIND_CLUSTER:-0}" != 1 ]]; then
    kind delete cluster --name "$CLUSTER_NAME"
  fi
}
trap cleanup EXIT

if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  kind create cluster --name "$CLUSTER_NAME" --wait 180s
  created_cluster=1
fi
kind get kubeconfig --name "$CLUSTER_NAME" > "$kubeconfig"

docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER_NAME"

if [[ -f "$CHART_DIR/Chart.yaml" ]]; then
  helm="$(command -v helm || true)"
  if [[ -z "$helm" ]]; then
    # The helm that e2e/tools/build-tools.sh cached, if it ran.
    env_file="${MODELSHIELD_TOOLS_CACHE:-$HOME/.cache/modelshield/tools}/env.sh"
    # shellcheck source=/dev/null
    [[ -f "$env_file" ]] && source "$env_file"
    helm="${MODELSHIELD_HELM:-}"
  fi
  [[ -n "$helm" && -x "$helm" ]] || die "helm is needed to install $CHART_DIR: install it or run e2e/tools/build-tools.sh"
  # pullPolicy Never: the image exists only inside the kind node, loaded above.
  "$helm" upgrade --install modelshield "$CHART_DIR" \
    --kubeconfig "$kubeconfig" \
    --namespace "$RELEASE_NAMESPACE" --create-namespace \
    --set image.repository="${IMAGE%:*}" \
    --set image.tag="${IMAGE##*:}" \
    --set image.pullPolicy=Never \
    --wait --timeout 5m
else
  printf 'e2e/kind.sh: %s/Chart.yaml does not exist yet; testing without the chart\n' "$CHART_DIR"
fi

"$python" -m pytest e2e --kubeconfig "$kubeconfig" "$@"
