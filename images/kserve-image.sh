#!/usr/bin/env bash
# Builds KServe's storage initializer and scikit-learn model server images from the Python
# sources of KServe's Go module (images/kserve/Dockerfile), on the Debian-made base.
#
# Usage: images/kserve-image.sh            # KSERVE_VERSION=v0.17.0 by default
#   prints the two tags it built, one a line: the storage initializer's, then the server's
#   CA_BUNDLE=/path/to/ca.pem ...          # the CAs pip and uv trust in the build
#
# The module comes from the Go module proxy by exact version (`go mod download`; the
# KServe manager's build in e2e/tools/build-tools.sh fetches the same one). BuildKit's
# layer cache makes a second run take seconds.
set -euo pipefail

readonly KSERVE_VERSION="${KSERVE_VERSION:-v0.17.0}"
readonly BASE=modelshield-python:3.11-bookworm
readonly INITIALIZER_TAG="modelshield-kserve-storage-initializer:${KSERVE_VERSION}"
readonly SERVER_TAG="modelshield-kserve-sklearnserver:${KSERVE_VERSION}"

log() { printf 'kserve-image: %s\n' "$*" >&2; }
die() { printf 'kserve-image: %s\n' "$*" >&2; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
docker="$("$here/docker-engine.sh")"
if ! "$docker" image inspect "$BASE" >/dev/null 2>&1; then
  "$here/base-image.sh" "$BASE"
fi

module_dir="$(go mod download -json "github.com/kserve/kserve@${KSERVE_VERSION}" \
  | sed -n -E 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')"
[[ -f "$module_dir/python/storage-initializer/scripts/initializer-entrypoint" ]] \
  || die "github.com/kserve/kserve@${KSERVE_VERSION} has no python/storage-initializer"

ca_bundle="${CA_BUNDLE:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
secret_args=()
if [[ -s "$ca_bundle" ]]; then
  secret_args=(--secret "id=ca-bundle,src=$ca_bundle")
elif [[ -n "${CA_BUNDLE:-}" ]]; then
  die "CA_BUNDLE=$CA_BUNDLE is not a readable, non-empty file"
fi

started=$SECONDS
for target in storage-initializer:"$INITIALIZER_TAG" sklearnserver:"$SERVER_TAG"; do
  DOCKER_BUILDKIT=1 "$docker" build --quiet \
    --file "$here/kserve/Dockerfile" \
    --build-arg "PYTHON_IMAGE=$BASE" \
    "${secret_args[@]}" \
    --target "${target%%:*}" --tag "${target#*:}" "$module_dir/python" >/dev/null \
    || die "building ${target#*:} failed"
done
"$docker" run --rm --entrypoint python "$INITIALIZER_TAG" -c 'import kserve_storage' \
  || die "$INITIALIZER_TAG cannot import kserve_storage"
"$docker" run --rm --entrypoint python "$SERVER_TAG" -c 'import sklearnserver, kserve' \
  || die "$SERVER_TAG cannot import sklearnserver"
for tag in "$INITIALIZER_TAG" "$SERVER_TAG"; do
  log "$tag: $("$docker" image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
done
log "built in $((SECONDS - started)) s"
printf '%s\n%s\n' "$INITIALIZER_TAG" "$SERVER_TAG"
