"""Image reference parsing, normalized as kubelet does."""

from __future__ import annotations

import pytest

from modelshield.supplychain.images import references

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", "latest", None),
        ("nginx:1.27", "docker.io", "library/nginx", "1.27", None),
        ("kserve/sklearnserver:v0.14", "docker.io", "kserve/sklearnserver", "v0.14", None),
        ("index.docker.io/library/nginx", "docker.io", "library/nginx", "latest", None),
        ("ghcr.io/org/team/server:v1", "ghcr.io", "org/team/server", "v1", None),
        ("localhost/server", "localhost", "server", "latest", None),
        ("127.0.0.1:5000/ml/server:v1", "127.0.0.1:5000", "ml/server", "v1", None),
        (
            f"registry.example.com:443/ml/server@{DIGEST}",
            "registry.example.com:443",
            "ml/server",
            None,
            DIGEST,
        ),
        (
            f"registry.example.com/ml/server:v1@{DIGEST}",
            "registry.example.com",
            "ml/server",
            "v1",
            DIGEST,
        ),
        ("[::1]:5000/ml/server", "[::1]:5000", "ml/server", "latest", None),
    ],
)
def test_parse(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    parsed = references.parse(text)
    assert (parsed.registry, parsed.repository, parsed.tag, parsed.digest) == (
        registry,
        repository,
        tag,
        digest,
    )


def test_identifier_prefers_the_digest_and_round_trips() -> None:
    parsed = references.parse(f"registry.example.com/ml/server:v1@{DIGEST}")
    assert parsed.identifier == DIGEST
    assert str(parsed) == f"registry.example.com/ml/server:v1@{DIGEST}"
    assert str(parsed.with_digest(DIGEST)) == f"registry.example.com/ml/server@{DIGEST}"
    assert references.parse("nginx").api_host == "registry-1.docker.io"


@pytest.mark.parametrize(
    "text",
    [
        "",
        " nginx",
        "Nginx",
        "nginx@sha256:abc",
        "nginx:bad tag",
        "host.io/ml//server",
        "nginx:-x",
        "a" * 5000,
    ],
)
def test_invalid(text: str) -> None:
    with pytest.raises(references.InvalidReferenceError):
        references.parse(text)


def test_signature_tag() -> None:
    assert references.signature_tag(DIGEST, "sig") == "sha256-" + "ab" * 32 + ".sig"
    assert references.signature_tag(DIGEST, "") == "sha256-" + "ab" * 32
