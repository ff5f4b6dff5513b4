#!/usr/bin/env bash
# Makes sure a Docker engine that can build with BuildKit runs here, for `make base-image`
# and `make image` on a machine that has nothing yet.
#
# - Installs Debian's docker.io (dockerd, a 20.10 client with BuildKit built in) and
#   mmdebstrap with apt-get when they are missing.
# - Starts dockerd when nothing answers on its socket: overlay2, and the cgroupfs driver
#   (what a machine without systemd, e.g. on cgroup v1, needs). Its log goes to
#   /var/log/modelshield-dockerd.log; it keeps running after this script ends.
#
# Prints the path of the docker client to use on its last line: a client that builds with
# BuildKit without the buildx plugin (a newer client without buildx cannot, and falls back
# to the legacy builder, which knows neither RUN --mount nor --secret).
#
# Usage: images/docker-engine.sh            # install what is missing, start dockerd
#        DOCKER=/path/to/docker images/docker-engine.sh   # use that client
set -euo pipefail

readonly DOCKERD_LOG=/var/log/modelshield-dockerd.log
readonly START_TIMEOUT_SECONDS=60

log() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { printf 'docker-engine: %s\n' "$*" >&2; exit 1; }

sudo=""
(( EUID == 0 )) || sudo="sudo"

apt_install() {
  command -v apt-get >/dev/null || die "$* missing and apt-get is not available: install them yourself"
  local started=$SECONDS policy=/usr/sbin/policy-rc.d created_policy=0
  # policy-rc.d exit 101: Debian's maintainer scripts must not start services; this
  # script starts dockerd itself, with the options it needs.
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    created_policy=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  (( created_policy == 0 )) || $sudo rm -f "$policy"
  log "installed $* from Debian in $((SECONDS - started)) s"
}

missing=()
[[ -x /usr/sbin/dockerd ]] || command -v dockerd >/dev/null || missing+=(docker.io)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
(( ${#missing[@]} == 0 )) || apt_install "${missing[@]}"

# The client: $DOCKER if given; one with buildx if there is one; else Debian's 20.10
# client, whose `docker build` speaks BuildKit itself.
docker_client() {
  if [[ -n "${DOCKER:-}" ]]; then printf '%s' "$DOCKER"; return; fi
  if docker buildx version >/dev/null 2>&1; then command -v docker; return; fi
  [[ -x /usr/bin/docker ]] && { printf '/usr/bin/docker'; return; }
  command -v docker || die "no docker client found"
}
client="$(docker_client)"

if ! "$client" info >/dev/null 2>&1; then
  dockerd="$(command -v dockerd || echo /usr/sbin/dockerd)"
  cgroup_driver=cgroupfs
  # On a cgroup v2 host booted with systemd, the systemd driver is the right one.
  if [[ -f /sys/fs/cgroup/cgroup.controllers && -d /run/systemd/system ]]; then
    cgroup_driver=systemd
  fi
  log "starting dockerd (overlay2, $cgroup_driver); log: $DOCKERD_LOG"
  # setsid + nohup: dockerd outlives this script and the make that ran it.
  $sudo setsid nohup "$dockerd" --storage-driver=overlay2 \
    --exec-opt "native.cgroupdriver=$cgroup_driver" >>"$DOCKERD_LOG" 2>&1 </dev/null &
  deadline=$((SECONDS + START_TIMEOUT_SECONDS))
  until "$client" info >/dev/null 2>&1; do
    if (( SECONDS > deadline )); then
      tail -n 30 "$DOCKERD_LOG" >&2
      die "dockerd did not answer within ${START_TIMEOUT_SECONDS} s (log above)"
    fi
    sleep 0.5
  done
  log "dockerd is up"
fi
printf '%s\n' "$client"
