#!/usr/bin/env bash
# Makes a Python 3.11 base image from Debian bookworm's own packages, for machines that
# cannot pull from Docker Hub: mmdebstrap builds a minimal root filesystem, `docker import`
# turns it into an image. The Dockerfile takes it through its PYTHON_IMAGE build argument
# (`make image` does that by default).
#
# Usage: images/base-image.sh [TAG]       # default modelshield-python:3.11-bookworm
#        SUITE=bookworm MIRROR=http://your.mirror/debian images/base-image.sh
set -euo pipefail

readonly TAG="${1:-modelshield-python:3.11-bookworm}"
readonly SUITE="${SUITE:-bookworm}"

log() { printf 'base-image: %s\n' "$*" >&2; }
die() { printf 'base-image: %s\n' "$*" >&2; exit 1; }

cd "$(dirname "${BASH_SOURCE[0]}")"
docker="$(./docker-engine.sh)"
started=$SECONDS

work="$(mktemp -d "${TMPDIR:-/tmp}/modelshield-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# python3-venv and python3-pip: the Dockerfile's build stage runs `pip wheel`, its final
# stage `python -m venv` (pip is uninstalled from the venv afterwards).
# Documentation, manual pages and translations are never read in a container; dpkg
# leaves them out (the copyright files stay).
mirror_args=()
[[ -z "${MIRROR:-}" ]] || mirror_args=("$MIRROR")
# The merged-usr hook lays out /usr the way usrmerge would, but without usrmerge, which
# pulls in perl (50 MB) that nothing in the image runs.
mmdebstrap --variant=minbase --mode=auto --format=tar \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
  "$SUITE" "$work/rootfs.tar" "${mirror_args[@]}" >"$work/mmdebstrap.log" 2>&1 \
  || { tail -n 30 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed (log above)"; }

"$docker" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --message "Debian $SUITE minbase with python3, made by images/base-image.sh" \
  "$work/rootfs.tar" "$TAG" >/dev/null
"$docker" run --rm "$TAG" python -c 'import sys, ssl, venv; print(sys.version.split()[0])' >/dev/null \
  || die "the image $TAG has no working Python"
log "$TAG: $("$docker" image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}') in $((SECONDS - started)) s"
