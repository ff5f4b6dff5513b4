"""ImageVerifier against a real registry, with signatures and attestations made by the real cosign.

Each scenario of the issue is one test; where a verdict is asked for, the engine's own
``evaluate`` gives it from the facts the verifier produced, as the webhook would.
"""

from __future__ import annotations

import datetime
import itertools
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelshield.api.v1alpha1 import policies
from modelshield.api.v1alpha1.common import Severity
from modelshield.engine import compiling, facts
from modelshield.engine.decisions import Code
from modelshield.supplychain.images import caching, imageverifier, pushing, registries
from tests.support import localtools
from tests.support.imagerequirements import NOW, codes, decide, requirement

pytestmark = pytest.mark.integration

VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"
Key = tuple[pathlib.Path, str]
_repositories = itertools.count()


def scan_requirement(
    *signers: tuple[str, str], max_age: str | None = None
) -> policies.ImageRequirements:
    """Signed image plus a signed vulnerability scan with nothing at or above High."""
    attestation: dict[str, Any] = {
        "name": "scan",
        "predicateType": VULN,
        "vulnerabilities": {"blockAtOrAbove": "High"},
    }
    if max_age:
        attestation["maxAge"] = max_age
    return requirement(*signers, attestations=[attestation])


class Images:
    """Pushes images to the test registry and names them."""

    def __init__(
        self, registry: localtools.LocalRegistry, client: registries.RegistryClient
    ) -> None:
        self.registry = registry
        self.client = client

    async def push(
        self, content: str, *, repository: str | None = None, tag: str = "v1"
    ) -> tuple[str, str]:
        """Push an image; returns (reference by digest, digest)."""
        repository = repository or f"ml/server-{next(_repositories)}"
        digest = await localtools.push_image(
            self.client, self.registry.host, repository, tag, content
        )
        return f"{self.registry.host}/{repository}@{digest}", digest


@pytest.fixture
async def images(registry: localtools.LocalRegistry) -> AsyncIterator[Images]:
    """Image pushing into the session's registry."""
    async with registries.RegistryClient(registry.options()) as client:
        yield Images(registry, client)


@pytest.fixture
async def verifier(
    registry: localtools.LocalRegistry,
) -> AsyncIterator[imageverifier.ImageVerifier]:
    """A verifier with an empty cache that reaches the session's registry."""
    image_verifier = imageverifier.ImageVerifier(registry_options=registry.options())
    yield image_verifier
    await image_verifier.close()


async def check(
    verifier: imageverifier.ImageVerifier, image: str, wanted: policies.ImageRequirements
) -> facts.ImageFacts:
    """Verify with the engine's own requirement key, as the webhook does."""
    return await verifier.verify(
        image, wanted, compiling.requirement_key(wanted), deadline_seconds=10
    )


@pytest.mark.parametrize("bundle_format", [False, True], ids=["sig-tag", "bundle"])
async def test_signed_image_passes(
    images: Images,
    verifier: imageverifier.ImageVerifier,
    cosign: localtools.Cosign,
    release_key: Key,
    bundle_format: bool,
) -> None:
    image, digest = await images.push("signed")
    cosign.sign(image, release_key[0], bundle_format=bundle_format)
    wanted = requirement(("release", release_key[1]))
    found = await check(verifier, image, wanted)
    assert found.signature.outcome is facts.Outcome.VERIFIED, found.signature
    assert found.signature.signer == "release"
    assert found.digest == digest
    assert decide(image, found, wanted).allowed


async def test_unsigned_image_fails(
    images: Images, verifier: imageverifier.ImageVerifier, release_key: Key
) -> None:
    image, _ = await images.push("unsigned")
    wanted = requirement(("release", release_key[1]))
    found = await check(verifier, image, wanted)
    assert found.signature.outcome is facts.Outcome.NO_SIGNATURE, found.signature
    decision = decide(image, found, wanted)
    assert not decision.allowed
    assert codes(decision) == {Code.IMAGE_UNSIGNED}


@pytest.mark.parametrize("bundle_format", [False, True], ids=["sig-tag", "bundle"])
async def test_signed_by_another_key_fails(
    images: Images,
    verifier: imageverifier.ImageVerifier,
    cosign: localtools.Cosign,
    release_key: Key,
    stranger_key: Key,
    bundle_format: bool,
) -> None:
    image, _ = await images.push("signed by a stranger")
    cosign.sign(image, stranger_key[0], bundle_format=bundle_format)
    wanted = requirement(("release", release_key[1]))
    found = await check(verifier, image, wanted)
    assert found.signature.outcome is facts.Outcome.SIGNER_UNTRUSTED, found.signature
    assert codes(decide(image, found, wanted)) == {Code.IMAGE_SIGNER_UNTRUSTED}


async def test_signature_copied_from_another_digest_fails(
    images: Images,
    verifier: imageverifier.ImageVerifier,
    cosign: localtools.Cosign,
    release_key: Key,
) -> None:
    signed, signed_digest = await images.push("original", repository="ml/copied")
    cosign.sign(signed, release_key[0])
    target, target_digest = await images.push("impostor", repository="ml/copied", tag="v2")
    host, client = images.registry.host, images.client
    # An attacker with push rights puts the genuine .sig manifest next to another image.
    genuine = await client.get_manifest(host, "ml/copied", "sha256-" + signed_digest[7:] + ".sig")
    await pushing.put_manifest(
        client,
        host,
        "ml/copied",
        "sha256-" + target_digest[7:] + ".sig",
        genuine.raw,
        genuine.media_type,
    )
    wanted = requirement(("release", release_key[1]))
    found = await check(verifier, target, wanted)
    assert found.signature.outcome is facts.Outcome.DIGEST_MISMATCH, found.signature
    assert signed_digest in found.signature.detail
    assert codes(decide(target, found, wanted)) == {Code.IMAGE_SIGNATURE_INVALID}


async def test_bundle_copied_from_another_digest_fails(
    images: Images,
    verifier: imageverifier.ImageVerifier,
    cosign: localtools.Cosign,
    release_key: Key,
) -> None:
    import json

    signed, signed_digest = await images.push("original", repository="ml/copied-bundle")
    cosign.sign(signed, release_key[0], bundle_format=True)
    target, target_digest = await images.push("impostor", repository="ml/copied-bundle", tag="v2")
    host, client = images.registry.host, images.client
    repository = "ml/copied-bundle"
    index = await client.get_manifest(host, repository, "sha256-" + signed_digest[7:])
    genuine = await client.get_manifest(host, repository, index.document["manifests"][0]["digest"])
    # Re-point the genuine bundle manifest at the other image, as a referrer of it.
    moved = dict(genuine.document)
    moved["subject"] = {"mediaType": registries.OCI_MANIFEST, "digest": target_digest, "size": 1}
    raw = json.dumps(moved).encode()
    moved_digest = await pushing.put_manifest(
        client, host, repository, registries.digest_of(raw), raw, registries.OCI_MANIFEST
    )
    fallback = {
        "schemaVersion": 2,
        "mediaType": registries.OCI_INDEX,
        "manifests": [
            {"mediaType": registries.OCI_MANIFEST, "digest": moved_digest, "size": len(raw)}
        ],
    }
    await pushing.put_manifest(
        client,
        host,
        repository,
        "sha256-" + target_digest[7:],
        json.dumps(fallback).encode(),
        registries.OCI_INDEX,
    )
    wanted = requirement(("release", release_key[1]))
    found = await check(verifier, target, wanted)
    assert found.signature.outcome is facts.Outcome.DIGEST_MISMATCH, found.signature
    assert codes(decide(target, found, wanted)) == {Code.IMAGE_SIGNATURE_INVALID}


async def test_tag_moved_to_unsigned_digest_fails(
    images: Images, registry: localtools.LocalRegistry, cosign: localtools.Cosign, release_key: Key
) -> None:
    now = [0.0]
    cache = caching.VerificationCache(caching.CacheSettings(tag_ttl=30), clock=lambda: now[0])
    verifier = imageverifier.ImageVerifier(cache=cache, registry_options=registry.options())
    try:
        signed, signed_digest = await images.push("release 1", repository="ml/moving")
        cosign.sign(signed, release_key[0])
        by_tag = f"{registry.host}/ml/moving:v1"
        wanted = requirement(("release", release_key[1]))
        first = await check(verifier, by_tag, wanted)
        assert first.signature.outcome is facts.Outcome.VERIFIED
        assert first.digest == signed_digest
        _, moved_digest = await images.push("unsigned rebuild", repository="ml/moving")
        now[0] += 31  # past the tag's cache lifetime: the tag is resolved again
        second = await check(verifier, by_tag, wanted)
        assert second.digest == moved_digest
        assert second.signature.outcome is facts.Outcome.NO_SIGNATURE, second.signature
        assert not decide(by_tag, second, wanted).allowed
    finally:
        await verifier.close()


@pytest.mark.parametrize("bundle_format", [False, True], ids=["att-tag", "bundle"])
async def test_recent_clean_scan_passes(
    images: Images,
    verifier: imageverifier.ImageVerifier,
    cosign: localtools.Cosign,
    release_key: Key,
    bundle_format: bool,
) -> None:
    image, _ = await images.push("scanned")
    cosign.sign(image, release_key[0])
    finished = (NOW - datetime.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cosign.attest(
        image,
        release_key[0],
        localtools.vuln_predicate(["LOW", "MEDIUM"], finished),
        bundle_format=bundle_format,
    )
    wanted = scan_requirement(("release", release_key[1]), max_age="7d")
    found = await check(verifier, image, wanted)
    [attestation] = found.attestations
    assert attestation.predicate_type == VULN
    assert attestation.signer == "release"
    assert abs(attestation.issued_at - (NOW - datetime.timedelta(hours=2))) < datetime.timedelta(
        seconds=2
    )
    assert attestation.vulnerabilities is not None
    assert attestation.vulnerabilities[Severity.LOW] == 1
    assert attestation.vulnerabilities[Severity.CRITICAL] == 0
    assert decide(image, found, wanted).allowed


async def test_old_attestation_fails(
    images: Images,
    verifier: imageverifier.ImageVerifier,
    cosign: localtools.Cosign,
    release_key: Key,
) -> None:
    # The scan's own signed time (scanFinishedOn) is 30 days old; cosign signs it as given.
    image, _ = await images.push("scanned long ago")
    cosign.sign(image, release_key[0])
    finished = (NOW - datetime.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cosign.attest(image, release_key[0], localtools.vuln_predicate([], finished))
    wanted = scan_requirement(("release", release_key[1]), max_age="7d")
    found = await check(verifier, image, wanted)
    assert [a.issued_at.date() for a in found.attestations] == [
        (NOW - datetime.timedelta(days=30)).date()
    ]
    assert codes(decide(image, found, wanted)) == {Code.ATTESTATION_TOO_OLD}


@pytest.mark.parametrize("bundle_format", [False, True], ids=["att-tag", "bundle"])
async def test_critical_finding_fails(
    images: Images,
    verifier: imageverifier.ImageVerifier,
    cosign: localtools.Cosign,
    release_key: Key,
    bundle_format: bool,
) -> None:
    image, _ = await images.push("vulnerable")
    cosign.sign(image, release_key[0])
    finished = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    predicate = localtools.vuln_predicate(["CRITICAL", "LOW"], finished)
    cosign.attest(image, release_key[0], predicate, bundle_format=bundle_format)
    wanted = scan_requirement(("release", release_key[1]))
    found = await check(verifier, image, wanted)
    assert found.attestations[0].vulnerabilities == {
        Severity.CRITICAL: 1,
        Severity.HIGH: 0,
        Severity.MEDIUM: 0,
        Severity.LOW: 1,
    }
    decision = decide(image, found, wanted)
    assert codes(decision) == {Code.ATTESTATION_VULNERABILITIES}
    assert "1 Critical" in decision.violations[0].message


async def test_attestation_by_untrusted_key_or_for_another_digest_is_not_reported(
    images: Images,
    verifier: imageverifier.ImageVerifier,
    cosign: localtools.Cosign,
    release_key: Key,
    stranger_key: Key,
) -> None:
    repository = "ml/attest-copies"
    image, digest = await images.push("a", repository=repository)
    other, other_digest = await images.push("b", repository=repository, tag="v2")
    finished = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    cosign.sign(image, release_key[0])
    cosign.attest(image, stranger_key[0], localtools.vuln_predicate([], finished))
    cosign.attest(other, release_key[0], localtools.vuln_predicate([], finished))
    host, client = images.registry.host, images.client
    # The trusted attestation of the other image, copied next to this one.
    copied = await client.get_manifest(host, repository, "sha256-" + other_digest[7:] + ".att")
    stranger = await client.get_manifest(host, repository, "sha256-" + digest[7:] + ".att")
    merged = dict(stranger.document)
    merged["layers"] = [*stranger.document["layers"], *copied.document["layers"]]
    import json

    await pushing.put_manifest(
        client,
        host,
        repository,
        "sha256-" + digest[7:] + ".att",
        json.dumps(merged).encode(),
        registries.OCI_MANIFEST,
    )
    wanted = scan_requirement(("release", release_key[1]))
    found = await check(verifier, image, wanted)
    assert found.signature.outcome is facts.Outcome.VERIFIED
    assert found.attestations == ()
    assert codes(decide(image, found, wanted)) == {Code.ATTESTATION_MISSING}


async def test_key_rotation_accepts_either_signer(
    images: Images,
    verifier: imageverifier.ImageVerifier,
    cosign: localtools.Cosign,
    release_key: Key,
    next_key: Key,
) -> None:
    old, _ = await images.push("built before rotation")
    new, _ = await images.push("built after rotation")
    cosign.sign(old, release_key[0])
    cosign.sign(new, next_key[0], bundle_format=True)
    wanted = requirement(("release", release_key[1]), ("next", next_key[1]))
    assert (await check(verifier, old, wanted)).signature.signer == "release"
    assert (await check(verifier, new, wanted)).signature.signer == "next"
    only_next = requirement(("next", next_key[1]))
    assert (
        await check(verifier, old, only_next)
    ).signature.outcome is facts.Outcome.SIGNER_UNTRUSTED


@pytest.mark.parametrize("algorithm", ["rsa", "p384", "ed25519"])
@pytest.mark.parametrize("bundle_format", [False, True], ids=["sig-tag", "bundle"])
async def test_key_types(
    images: Images,
    verifier: imageverifier.ImageVerifier,
    cosign: localtools.Cosign,
    tmp_path: pathlib.Path,
    algorithm: str,
    bundle_format: bool,
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    generated: Any = {
        "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate,
    }[algorithm]()
    pem = tmp_path / "private.pem"
    pem.write_bytes(
        generated.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key, public = cosign.import_key_pair(f"{algorithm}-{bundle_format}", pem)
    image, _ = await images.push(f"signed with {algorithm}")
    cosign.sign(image, key, bundle_format=bundle_format)
    found = await check(verifier, image, requirement((algorithm.replace("ed", "ed-"), public)))
    assert found.signature.outcome is facts.Outcome.VERIFIED, found.signature
