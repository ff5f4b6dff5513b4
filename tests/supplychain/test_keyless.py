"""Keyless (sigstore) signatures and attestations, verified offline against a private trust root.

The certificates, SCTs, log entries and checkpoints come from ``sigstoretestroot``, our own
CA, CT log and transparency log; the bundles are attached to images in the real registry
the way cosign attaches them. Verification is sigstore-python's ``Verifier``, fully offline.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelshield.api.v1alpha1 import policies
from modelshield.api.v1alpha1.common import Severity
from modelshield.engine import facts
from modelshield.supplychain.images import attestations, imageverifier, registries
from tests.support import localtools, sigstoretestroot

pytestmark = pytest.mark.integration

ISSUER = "https://token.ci.example.com"
IDENTITY = "https://ci.example.com/org/model-server/.github/workflows/release.yml@refs/heads/main"


@pytest.fixture(scope="module")
def trust_root() -> sigstoretestroot.TestTrustRoot:
    return sigstoretestroot.TestTrustRoot()


@pytest.fixture
def trust_root_file(
    trust_root: sigstoretestroot.TestTrustRoot, tmp_path: pathlib.Path
) -> pathlib.Path:
    return trust_root.write(tmp_path / "trusted_root.json")


@pytest.fixture
async def client(registry: localtools.LocalRegistry) -> AsyncIterator[registries.RegistryClient]:
    async with registries.RegistryClient(registry.options()) as opened:
        yield opened


def keyless(
    subject: str | None = IDENTITY, pattern: str | None = None, issuer: str = ISSUER, **extra: Any
) -> policies.ImageRequirements:
    identity: dict[str, Any] = {"issuer": issuer}
    if pattern is not None:
        identity["subjectRegExp"] = pattern
    else:
        identity["subject"] = subject
    return policies.ImageRequirements.model_validate(
        {"signers": [{"name": "ci", "keyless": identity}], **extra}
    )


async def _image(
    client: registries.RegistryClient, registry: localtools.LocalRegistry, name: str
) -> tuple[str, str]:
    repository = f"keyless/{name}"
    digest = await localtools.push_image(client, registry.host, repository, "v1", name)
    return repository, digest


async def _verify(
    registry: localtools.LocalRegistry,
    trust_root_file: pathlib.Path | None,
    image: str,
    wanted: policies.ImageRequirements,
) -> facts.ImageFacts:
    verifier = imageverifier.ImageVerifier(
        trust_root=trust_root_file, registry_options=registry.options()
    )
    try:
        return await verifier.verify(image, wanted, "k", deadline_seconds=10)
    finally:
        await verifier.close()


@pytest.mark.parametrize(
    "wanted",
    [
        keyless(),
        keyless(
            pattern=r"https://ci\.example\.com/org/[^/]+/\.github/workflows/release\.yml@refs/heads/.+"
        ),
    ],
    ids=["subject", "subject-regexp"],
)
async def test_keyless_signature_verifies_offline(
    client: registries.RegistryClient,
    registry: localtools.LocalRegistry,
    trust_root: sigstoretestroot.TestTrustRoot,
    trust_root_file: pathlib.Path,
    wanted: policies.ImageRequirements,
) -> None:
    repository, digest = await _image(client, registry, "signed")
    bundle = trust_root.keyless_bundle(sigstoretestroot.statement(digest), IDENTITY, ISSUER)
    await localtools.attach_bundle(client, registry.host, repository, digest, bundle)
    found = await _verify(
        registry, trust_root_file, f"{registry.host}/{repository}@{digest}", wanted
    )
    assert found.signature.outcome is facts.Outcome.VERIFIED, found.signature
    assert found.signature.signer == "ci"


@pytest.mark.parametrize(
    ("identity", "issuer"),
    [
        ("https://ci.example.com/someone/else.yml@refs/heads/main", ISSUER),
        (IDENTITY, "https://attacker.example.com"),
    ],
    ids=["other-identity", "other-issuer"],
)
async def test_other_identity_or_issuer_is_untrusted(
    client: registries.RegistryClient,
    registry: localtools.LocalRegistry,
    trust_root: sigstoretestroot.TestTrustRoot,
    trust_root_file: pathlib.Path,
    identity: str,
    issuer: str,
) -> None:
    repository, digest = await _image(client, registry, "someone-else")
    bundle = trust_root.keyless_bundle(sigstoretestroot.statement(digest), identity, issuer)
    await localtools.attach_bundle(client, registry.host, repository, digest, bundle)
    found = await _verify(
        registry, trust_root_file, f"{registry.host}/{repository}@{digest}", keyless()
    )
    assert found.signature.outcome is facts.Outcome.SIGNER_UNTRUSTED, found.signature


async def test_certificate_from_another_ca_does_not_verify(
    client: registries.RegistryClient,
    registry: localtools.LocalRegistry,
    trust_root_file: pathlib.Path,
) -> None:
    repository, digest = await _image(client, registry, "rogue-ca")
    rogue = sigstoretestroot.TestTrustRoot("rogue")
    bundle = rogue.keyless_bundle(sigstoretestroot.statement(digest), IDENTITY, ISSUER)
    await localtools.attach_bundle(client, registry.host, repository, digest, bundle)
    found = await _verify(
        registry, trust_root_file, f"{registry.host}/{repository}@{digest}", keyless()
    )
    assert found.signature.outcome is facts.Outcome.SIGNATURE_MISMATCH, found.signature
    assert "certificate" in found.signature.detail


async def test_tampered_log_entry_does_not_verify(
    client: registries.RegistryClient,
    registry: localtools.LocalRegistry,
    trust_root: sigstoretestroot.TestTrustRoot,
    trust_root_file: pathlib.Path,
) -> None:
    repository, digest = await _image(client, registry, "tampered-log")
    document = json.loads(
        trust_root.keyless_bundle(sigstoretestroot.statement(digest), IDENTITY, ISSUER)
    )
    entry = document["verificationMaterial"]["tlogEntries"][0]
    entry["integratedTime"] = str(int(entry["integratedTime"]) + 1)  # the promise no longer matches
    await localtools.attach_bundle(
        client, registry.host, repository, digest, json.dumps(document).encode()
    )
    found = await _verify(
        registry, trust_root_file, f"{registry.host}/{repository}@{digest}", keyless()
    )
    assert found.signature.outcome is facts.Outcome.SIGNATURE_MISMATCH, found.signature


async def test_keyless_bundle_for_another_digest_is_a_digest_mismatch(
    client: registries.RegistryClient,
    registry: localtools.LocalRegistry,
    trust_root: sigstoretestroot.TestTrustRoot,
    trust_root_file: pathlib.Path,
) -> None:
    repository, digest = await _image(client, registry, "copied-keyless")
    bundle = trust_root.keyless_bundle(
        sigstoretestroot.statement("sha256:" + "0f" * 32), IDENTITY, ISSUER
    )
    await localtools.attach_bundle(client, registry.host, repository, digest, bundle)
    found = await _verify(
        registry, trust_root_file, f"{registry.host}/{repository}@{digest}", keyless()
    )
    assert found.signature.outcome is facts.Outcome.DIGEST_MISMATCH, found.signature


async def test_without_a_trust_root_keyless_cannot_pass(
    client: registries.RegistryClient,
    registry: localtools.LocalRegistry,
    trust_root: sigstoretestroot.TestTrustRoot,
) -> None:
    repository, digest = await _image(client, registry, "no-root")
    bundle = trust_root.keyless_bundle(sigstoretestroot.statement(digest), IDENTITY, ISSUER)
    await localtools.attach_bundle(client, registry.host, repository, digest, bundle)
    found = await _verify(registry, None, f"{registry.host}/{repository}@{digest}", keyless())
    assert found.signature.outcome is facts.Outcome.SIGNATURE_MISMATCH
    assert "no sigstore trust root" in found.signature.detail


async def test_keyless_vulnerability_attestation(
    client: registries.RegistryClient,
    registry: localtools.LocalRegistry,
    trust_root: sigstoretestroot.TestTrustRoot,
    trust_root_file: pathlib.Path,
) -> None:
    repository, digest = await _image(client, registry, "keyless-scan")
    await localtools.attach_bundle(
        client,
        registry.host,
        repository,
        digest,
        trust_root.keyless_bundle(sigstoretestroot.statement(digest), IDENTITY, ISSUER),
    )
    predicate = localtools.vuln_predicate(["HIGH"], "2026-11-25T08:00:00Z")
    scan = trust_root.keyless_bundle(
        sigstoretestroot.statement(digest, attestations.COSIGN_VULN, predicate), IDENTITY, ISSUER
    )
    await localtools.attach_bundle(client, registry.host, repository, digest, scan)
    wanted = keyless(attestations=[{"name": "scan", "predicateType": attestations.COSIGN_VULN}])
    found = await _verify(
        registry, trust_root_file, f"{registry.host}/{repository}@{digest}", wanted
    )
    assert found.signature.outcome is facts.Outcome.VERIFIED
    [attestation] = found.attestations
    assert attestation.signer == "ci"
    assert attestation.vulnerabilities is not None
    assert attestation.vulnerabilities[Severity.HIGH] == 1
    assert sum(attestation.vulnerabilities.values()) == 1
