"""Image references read exactly as the container runtime reads them.

kubelet hands a pod's ``image`` to the runtime, which parses it with distribution's
reference grammar (``github.com/distribution/reference``: ``ParseDockerRef``, that is
``ParseNormalizedNamed`` and then ``TagNameOnly``). The allow-list, the verifier and the
digest pinning must all mean the image the runtime pulls, so this module mirrors that
grammar rule for rule, including the one that decides where the registry ends: the first
path component is a registry host when it contains ``.`` or ``:``, is ``localhost`` or
has an upper-case letter (``Evil/server`` is the host ``Evil``, not ``docker.io/Evil``).
"""

from __future__ import annotations

import dataclasses
import functools
import re

DOCKER_HUB = "docker.io"
_LEGACY_DOCKER_HUB = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
#: distribution's RepositoryNameTotalLengthMax: the path after the registry.
_MAX_PATH_LENGTH = 255
#: Longer than any reference a registry serves (path 255, tag 128, digest 135, and a
#: host); refused before the patterns run, so that no review pays for a huge string.
_MAX_REFERENCE_LENGTH = 2048

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[(?:[a-fA-F0-9:]+)\])"
_DOMAIN_AND_PORT = rf"{_HOST}(?::[0-9]+)?"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME}"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
# Python's `re` backtracks where Go's RE2 is leftmost-first: fullmatch keeps the anchoring.
_REFERENCE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?")
_ANCHORED_NAME = re.compile(rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})")
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")
#: go-digest's algorithms that the runtimes register, with the length of their hex part.
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX = re.compile(r"[a-f0-9]+")


class InvalidReferenceError(ValueError):
    """The text is not an image reference the container runtime would accept."""


@dataclasses.dataclass(frozen=True, slots=True)
class ImageReference:
    """A reference as the runtime pulls it: registry, path, and a tag or a digest.

    With both a tag and a digest the runtime pulls the digest (``ParseDockerRef`` drops
    the tag); ``tag`` is then None. With neither, ``tag`` is ``latest``.
    """

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """registry/path, without tag or digest."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        if self.digest is not None:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag}"


def split_domain(name: str) -> tuple[str, str]:
    """distribution's ``splitDockerDomain``: (registry host, remote name) of a name."""
    first, slash, rest = name.partition("/")
    if not slash:
        return DOCKER_HUB, _OFFICIAL_PREFIX + name
    if first == "localhost" or "." in first or ":" in first or first.lower() != first:
        domain, remote = first, rest
    else:
        domain, remote = DOCKER_HUB, name
    if domain == _LEGACY_DOCKER_HUB:
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in remote:
        remote = _OFFICIAL_PREFIX + remote
    return domain, remote


def _check_digest(text: str, digest: str) -> None:
    algorithm, _, encoded = digest.partition(":")
    length = _DIGEST_LENGTHS.get(algorithm)
    if length is None:
        raise InvalidReferenceError(f"{text!r}: digest algorithm {algorithm!r} is not available")
    if len(encoded) != length or not _LOWER_HEX.fullmatch(encoded):
        raise InvalidReferenceError(f"{text!r}: {digest!r} is not a valid {algorithm} digest")


def parse(text: str) -> ImageReference:
    """``ParseDockerRef``: the reference the runtime pulls, or InvalidReferenceError."""
    if not text:
        raise InvalidReferenceError("an image reference must not be empty")
    if len(text) > _MAX_REFERENCE_LENGTH:
        raise InvalidReferenceError(f"an image reference of {len(text)} characters is too long")
    if _IDENTIFIER.fullmatch(text):
        raise InvalidReferenceError(
            f"{text!r}: a 64-character hexadecimal string is an image ID, not a name"
        )
    domain, remainder = split_domain(text)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidReferenceError(f"{text!r}: repository name {remote!r} must be lowercase")
    full = f"{domain}/{remainder}"
    matched = _REFERENCE.fullmatch(full)
    if matched is None:
        raise InvalidReferenceError(f"{text!r} is not a valid image reference")
    name, tag, digest = matched.group(1), matched.group(2), matched.group(3)
    split = _ANCHORED_NAME.fullmatch(name)
    assert split is not None  # the reference pattern matched the same name
    parsed_domain, path = split.group(1) or "", split.group(2)
    if len(path) > _MAX_PATH_LENGTH:
        raise InvalidReferenceError(f"{text!r}: repository name is longer than 255 characters")
    if digest is not None:
        _check_digest(text, digest)
        tag = None
    elif tag is None:
        tag = DEFAULT_TAG
    return ImageReference(domain=parsed_domain, path=path, tag=tag, digest=digest)


# Pure and asked for the same few images on every review: remembered, within a bound.
@functools.lru_cache(maxsize=4096)
def normalized(text: str) -> str | None:
    """The fully qualified reference the runtime pulls; None when it would refuse it."""
    try:
        return str(parse(text))
    except InvalidReferenceError:
        return None
