#!/usr/bin/env bash
# Registers images/kind/runc-within-bounding-set.sh with dockerd as the runtime
# `modelshield-kind-runc`, for kind's node containers on a host whose root lacks
# capabilities (see that script). Idempotent; needs root. What it changes on the host:
# the wrapper is copied to $CACHE/kind-runtime/, /etc/docker/daemon.json gets (or keeps)
# a "runtimes" entry naming it, and dockerd reloads its configuration (SIGHUP: running
# containers and builds are not touched; other runtimes, the default one included, stay
# as they were).
#
# Usage: images/kind/docker-runtime.sh      # prints the runtime's name
set -euo pipefail

readonly RUNTIME=modelshield-kind-runc
readonly CACHE="${MODELSHIELD_TOOLS_CACHE:-$HOME/.cache/modelshield/tools}"
readonly DAEMON_JSON="${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}"

die() { printf 'docker-runtime: %s\n' "$*" >&2; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
docker="${DOCKER:-docker}"
registered() { "$docker" info --format '{{json .Runtimes}}' 2>/dev/null | jq -e --arg r "$RUNTIME" 'has($r)' >/dev/null; }

wrapper="$CACHE/kind-runtime/runc-within-bounding-set"
mkdir -p "$(dirname "$wrapper")"
cmp -s "$here/runc-within-bounding-set.sh" "$wrapper" 2>/dev/null \
  || install -m 0755 "$here/runc-within-bounding-set.sh" "$wrapper"
if registered; then printf '%s\n' "$RUNTIME"; exit 0; fi

(( EUID == 0 )) || die "registering a docker runtime needs root"
{ command -v capsh && command -v jq; } >/dev/null || die "the wrapper needs capsh (libcap2-bin) and jq"
dockerd_pid="$(pgrep -o -x dockerd)" || die "dockerd is not running (images/docker-engine.sh starts it)"
current='{}'
[[ ! -s "$DAEMON_JSON" ]] || current="$(cat "$DAEMON_JSON")"
mkdir -p "$(dirname "$DAEMON_JSON")"
jq --arg r "$RUNTIME" --arg p "$wrapper" '.runtimes[$r] = {path: $p}' <<<"$current" >"$DAEMON_JSON.new"
mv "$DAEMON_JSON.new" "$DAEMON_JSON"
kill -HUP "$dockerd_pid"
for _ in $(seq 50); do registered && { printf '%s\n' "$RUNTIME"; exit 0; }; sleep 0.2; done
die "dockerd did not take the runtime $RUNTIME from $DAEMON_JSON (see its log)"
