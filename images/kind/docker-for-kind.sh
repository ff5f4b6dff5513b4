#!/usr/bin/env bash
# The `docker` that kind runs (e2e/kind.sh puts it first on kind's PATH as `docker`): every
# `docker run` (kind's node containers, run --privileged, and the build container of
# `kind build node-image`, into which it execs --privileged) gets
# `--runtime=$MODELSHIELD_KIND_RUNTIME` (images/kind/docker-runtime.sh), so that the
# container and every exec into it leave out the capabilities root here lacks; every other
# command goes to the real client unchanged.
set -euo pipefail

real="${MODELSHIELD_REAL_DOCKER:?the real docker client}"
if [[ "${1:-}" == run && -n "${MODELSHIELD_KIND_RUNTIME:-}" ]]; then
  shift
  exec "$real" run --runtime="$MODELSHIELD_KIND_RUNTIME" "$@"
fi
exec "$real" "$@"
