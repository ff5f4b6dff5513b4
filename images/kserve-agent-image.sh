#!/usr/bin/env bash
# Builds KServe's agent image (images/kserve/agent.Dockerfile): `go build` of cmd/agent
# from KServe's Go module at KSERVE_VERSION exactly, on the Debian-made base.
#
# Usage: images/kserve-agent-image.sh      # KSERVE_VERSION=v0.17.0 by default
#   prints the tag it built on its last line
#
# The module comes from the Go module proxy by exact version (`go mod download`), as for
# images/kserve-image.sh and the KServe manager in e2e/tools/build-tools.sh. The binary is
# kept in ~/.cache/modelshield/tools/kserve-agent-<version>/ (a second run builds no Go).
set -euo pipefail

readonly KSERVE_VERSION="${KSERVE_VERSION:-v0.17.0}"
readonly BASE=modelshield-python:3.11-bookworm
readonly AGENT_TAG="modelshield-kserve-agent:${KSERVE_VERSION}"
readonly CACHE="${MODELSHIELD_TOOLS_CACHE:-$HOME/.cache/modelshield/tools}/kserve-agent-${KSERVE_VERSION}"

log() { printf 'kserve-agent-image: %s\n' "$*" >&2; }
die() { printf 'kserve-agent-image: %s\n' "$*" >&2; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
docker="$("$here/docker-engine.sh")"
if ! "$docker" image inspect "$BASE" >/dev/null 2>&1; then
  "$here/base-image.sh" "$BASE"
fi

started=$SECONDS
if [[ ! -x "$CACHE/agent" ]]; then
  module_dir="$(go mod download -json "github.com/kserve/kserve@${KSERVE_VERSION}" \
    | sed -n -E 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')"
  [[ -f "$module_dir/cmd/agent/main.go" ]] \
    || die "github.com/kserve/kserve@${KSERVE_VERSION} has no cmd/agent"
  work="$(mktemp -d)"
  # The module cache is read-only; go build wants to write go.sum updates next to go.mod.
  cp -R "$module_dir/go.mod" "$module_dir/go.sum" "$module_dir/cmd" "$module_dir/pkg" "$work/"
  chmod -R u+w "$work"
  mkdir -p "$CACHE"
  (cd "$work" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w" \
    -o "$CACHE/agent.partial" ./cmd/agent) || die "go build ./cmd/agent failed"
  rm -rf "$work"
  mv "$CACHE/agent.partial" "$CACHE/agent"
  log "go build ./cmd/agent ${KSERVE_VERSION}: $((SECONDS - started)) s"
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$CACHE/agent" "$context/agent"
DOCKER_BUILDKIT=1 "$docker" build --quiet --file "$here/kserve/agent.Dockerfile" \
  --build-arg "BASE_IMAGE=$BASE" --tag "$AGENT_TAG" "$context" >/dev/null \
  || die "building $AGENT_TAG failed"
"$docker" run --rm "$AGENT_TAG" --help 2>&1 | grep -q -- '--log-url' \
  || die "$AGENT_TAG: its agent does not run (no --log-url in its --help)"
log "$AGENT_TAG: $("$docker" image inspect --format '{{.Size}}' "$AGENT_TAG" | awk '{printf "%.0f MB", $1/1e6}') in $((SECONDS - started)) s"
printf '%s\n' "$AGENT_TAG"
