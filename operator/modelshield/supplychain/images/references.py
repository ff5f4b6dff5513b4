"""Image references (``registry/repository:tag@sha256:...``), parsed as the container runtimes do.

A reference in a pod spec may omit the registry (Docker Hub), the ``library/`` prefix
of official images and the tag (``latest``); kubelet fills these in the same way, so
the verifier must too, or it would verify a different image than the one that runs.
"""

from __future__ import annotations

import dataclasses
import re

from modelshield.engine import references as engine_references

DOCKER_HUB = "docker.io"
#: The host that serves Docker Hub's distribution API.
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_PATTERN = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_PATTERN = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$"
)
_TAG_PATTERN = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_PATTERN = re.compile(r"^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$")
_MAX_REFERENCE_LENGTH = 4096


class InvalidReferenceError(ValueError):
    """The text is not a valid image reference."""


@dataclasses.dataclass(frozen=True)
class Reference:
    """A fully qualified image reference: registry, repository, and a tag and/or a digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """The host that serves the registry's distribution API."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """registry/repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What to ask the registry for: the digest when pinned, otherwise the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_digest(self, digest: str) -> Reference:
        """The same repository pinned to digest (the tag dropped: the digest is the identity)."""
        return Reference(self.registry, self.repository, None, digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse(text: str) -> Reference:
    """Parse an image reference the way kubelet and containerd normalize it."""
    if not text or len(text) > _MAX_REFERENCE_LENGTH or text != text.strip():
        raise InvalidReferenceError(f"{text!r} is not an image reference")
    remainder, digest = text, None
    if "@" in remainder:
        remainder, digest = remainder.split("@", 1)
        if not _DIGEST_PATTERN.match(digest):
            raise InvalidReferenceError(f"{text!r}: {digest!r} is not a sha256/sha512 digest")
    tag = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG_PATTERN.match(tag):
            raise InvalidReferenceError(f"{text!r}: {tag!r} is not a valid tag")
    # Where the registry ends is the runtime's rule (an upper-case first component is a
    # host), shared with the engine's allow-list so both mean the image that runs.
    registry, repository = engine_references.split_domain(remainder)
    if registry != DOCKER_HUB and not _DOMAIN_PATTERN.match(registry):
        raise InvalidReferenceError(f"{text!r}: {registry!r} is not a registry host")
    if registry == DOCKER_HUB_API:
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    if not _REPOSITORY_PATTERN.match(repository) or len(repository) > 255:
        raise InvalidReferenceError(f"{text!r}: {repository!r} is not a repository name")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry=registry, repository=repository, tag=tag, digest=digest)


def signature_tag(digest: str, suffix: str) -> str:
    """cosign's tag for an artifact attached to digest, e.g. ``sha256-<hex>.sig``."""
    algorithm, _, hex_digest = digest.partition(":")
    return f"{algorithm}-{hex_digest}.{suffix}" if suffix else f"{algorithm}-{hex_digest}"
