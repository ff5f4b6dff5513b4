#!/usr/bin/env bash
# A runc for kind's node containers on a host whose root lacks capabilities (here
# CAP_SYS_RESOURCE is not in its bounding set). kind runs every node `--privileged`; Docker
# 20.10 then asks runc for every capability the kernel knows, and runc fails with "unable to
# apply caps: operation not permitted". This wrapper removes, from the container's spec
# (`create`/`run`: the bundle's config.json) and from an exec's process (`exec --process`),
# the capabilities the host's bounding set does not hold, and runs runc. Nothing else of
# --privileged changes. images/kind/docker-runtime.sh registers it with dockerd; e2e/kind.sh
# has kind's node containers use it.
set -euo pipefail

readonly RUNC="${MODELSHIELD_RUNC:-/usr/sbin/runc}"

held_capabilities() {
  local bounding
  bounding="$(awk '/^CapBnd:/ {print $2}' /proc/self/status)"
  capsh --decode="$bounding" | sed 's/^.*=//' | tr ',' '\n' | tr '[:lower:]' '[:upper:]' | jq -R . | jq -s -c .
}

# keep_held FILE JQ_PATH: FILE's capability lists at JQ_PATH keep only held capabilities.
keep_held() {
  local file="$1" path="$2" held
  [[ -f "$file" ]] || return 0
  held="$(held_capabilities)"
  jq --argjson held "$held" \
    "if $path == null then . else $path |= map_values(if type == \"array\" then map(select(. as \$c | \$held | index(\$c))) else . end) end" \
    "$file" >"$file.caps" && mv "$file.caps" "$file"
}

command_name="" bundle="" process=""
args=("$@")
for (( i = 0; i < ${#args[@]}; i++ )); do
  case "${args[i]}" in
    create|run|exec) [[ -n "$command_name" ]] || command_name="${args[i]}" ;;
    --bundle|-b) bundle="${args[i+1]:-}" ;;
    --bundle=*) bundle="${args[i]#--bundle=}" ;;
    --process|-p) process="${args[i+1]:-}" ;;
    --process=*) process="${args[i]#--process=}" ;;
  esac
done
case "$command_name" in
  create|run) keep_held "${bundle:-.}/config.json" .process.capabilities ;;
  exec) [[ -z "$process" ]] || keep_held "$process" .capabilities ;;
esac
exec "$RUNC" "$@"
