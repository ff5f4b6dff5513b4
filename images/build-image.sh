#!/usr/bin/env bash
# Builds modelshield's image from the repository's Dockerfile with BuildKit.
#
# Usage: images/build-image.sh [TAG]                    # default modelshield:dev
#   PYTHON_IMAGE=python:3.11-slim-bookworm ...         # a base of your choice; by default
#                                                      # the one images/base-image.sh makes
#                                                      # (made first when it is missing)
#   CA_BUNDLE=/path/to/ca.pem ...                      # the CAs pip trusts in the build
#                                                      # (default: this machine's bundle)
#   VERSION=0.1.0 REVISION=<commit> ...                # OCI labels
#
# The CA bundle goes in as a BuildKit secret: mounted for the one RUN that downloads wheels,
# never a layer of the image. It lets pip verify TLS where egress goes through an inspecting
# proxy whose CA only this machine trusts.
set -euo pipefail

readonly TAG="${1:-modelshield:dev}"
readonly DEFAULT_BASE=modelshield-python:3.11-bookworm

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { printf 'build-image: %s\n' "$*" >&2; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repository="$(dirname "$here")"
docker="$("$here/docker-engine.sh")"

base="${PYTHON_IMAGE:-$DEFAULT_BASE}"
if [[ "$base" == "$DEFAULT_BASE" ]] && ! "$docker" image inspect "$base" >/dev/null 2>&1; then
  "$here/base-image.sh" "$base"
fi

ca_bundle="${CA_BUNDLE:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
secret_args=()
if [[ -s "$ca_bundle" ]]; then
  secret_args=(--secret "id=ca-bundle,src=$ca_bundle")
elif [[ -n "${CA_BUNDLE:-}" ]]; then
  die "CA_BUNDLE=$CA_BUNDLE is not a readable, non-empty file"
fi

revision="${REVISION:-$(git -C "$repository" rev-parse HEAD 2>/dev/null || echo unknown)}"
previous="$("$docker" image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)"
started=$SECONDS
DOCKER_BUILDKIT=1 "$docker" build \
  --build-arg "PYTHON_IMAGE=$base" \
  --build-arg "REVISION=$revision" \
  ${VERSION:+--build-arg "VERSION=$VERSION"} \
  "${secret_args[@]}" \
  --tag "$TAG" "$repository"
"$docker" run --rm "$TAG" --version >/dev/null || die "$TAG does not run \`modelshield --version\`"
size="$("$docker" image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}')"
# The image the tag named before is left untagged by the rebuild; each one kept its own
# source layer, and a day of rebuilds piled up ten of them. Removed unless still in use.
current="$("$docker" image inspect --format '{{.Id}}' "$TAG")"
if [[ -n "$previous" && "$previous" != "$current" ]]; then
  "$docker" image rm "$previous" >/dev/null 2>&1 \
    || log "the previous $TAG ($previous) is still in use: left in place"
fi
log "$TAG on $base: $size, built in $((SECONDS - started)) s"
