"""``ImageVerifier``: an image reference and an image requirement in, ``facts.ImageFacts`` out.

One verification: resolve the tag (unless pinned), then fetch concurrently cosign's
``.sig`` and ``.att`` tags and the image's sigstore-bundle referrers, then check every
signature and attestation against the policy's signers (``judging``). Everything runs
under the caller's deadline; every failure becomes an ``Outcome`` with a reason, never
an exception. Results go to the cache, which the webhook reads without blocking.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modelshield.api.v1alpha1 import policies
from modelshield.engine import facts
from modelshield.supplychain.images import (
    attestations,
    bundles,
    caching,
    cosignsignatures,
    credentials,
    judging,
    references,
    registries,
    signers,
    verifiers,
)

_logger = logging.getLogger(__name__)

_KIND_OUTCOMES = {
    "unreachable": facts.Outcome.REGISTRY_UNREACHABLE,
    "timeout": facts.Outcome.TIMED_OUT,
    "not-found": facts.Outcome.NOT_FOUND,
    "digest-mismatch": facts.Outcome.DIGEST_MISMATCH,
    "error": facts.Outcome.ERROR,
}
_MAX_PAYLOAD_BYTES = 256 * 1024
_MAX_BUNDLE_BYTES = 4 * 1024 * 1024


def load_trust_root(source: Any) -> Any:
    """A sigstore ``TrustedRoot`` from a path, or the object itself; None stays None."""
    if source is None or not isinstance(source, (str, pathlib.Path)):
        return source
    from sigstore import models as sigstore_models

    return sigstore_models.TrustedRoot.from_file(str(source))


def failure(outcome: facts.Outcome, detail: str) -> facts.SignatureFact:
    """A SignatureFact for a verification that could not conclude."""
    return facts.SignatureFact(outcome=outcome, signer=None, detail=detail)


def outcome_of(error: registries.RegistryError) -> facts.Outcome:
    """The outcome a registry error stands for."""
    return _KIND_OUTCOMES.get(error.kind, facts.Outcome.ERROR)


class ImageVerifier(verifiers.Verifier):
    """Verifies image signatures and attestations; share one per process (it owns the cache)."""

    def __init__(
        self,
        *,
        cache: caching.VerificationCache | None = None,
        trust_root: Any = None,
        registry_options: registries.RegistryOptions | None = None,
        secrets: signers.SecretSource | None = None,
    ) -> None:
        """trust_root: a sigstore ``TrustedRoot`` or a path to a trusted_root.json (keyless).

        secrets: how ``secretRef`` signers are resolved, a callable
        ``(namespace, name, key) -> str | None`` or a mapping with those tuples as keys.
        """
        self.cache = cache if cache is not None else caching.VerificationCache()
        self.trust_root = load_trust_root(trust_root)
        self.client = registries.RegistryClient(registry_options)
        self._secrets = secrets

    async def close(self) -> None:
        """Release the HTTP connections."""
        await self.client.close()

    def cached(self, reference: str, requirement_key: str) -> facts.ImageFacts | None:
        """The live cached result for a reference, without any I/O (the webhook's hot path)."""
        return self.cache.by_reference(reference, requirement_key)

    async def verify(
        self,
        reference: str,
        requirement: policies.ImageRequirements,
        requirement_key: str,
        *,
        deadline_seconds: float,
        pull_secrets: Sequence[Mapping[str, Any]] = (),
        namespace: str = "",
    ) -> facts.ImageFacts:
        """Verify one image reference against one image requirement, within the deadline."""
        hit = self.cache.by_reference(reference, requirement_key)
        if hit is not None:
            return hit
        wants_attestations = bool(requirement.attestations)
        try:
            parsed = references.parse(reference)
        except references.InvalidReferenceError as error:
            return self._failed(
                reference, None, facts.Outcome.ERROR, str(error), wants_attestations
            )
        found = credentials.from_pull_secrets(pull_secrets)
        credential = found.get(parsed.registry) or found.get(parsed.api_host)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_seconds
        digest = parsed.digest
        try:
            async with asyncio.timeout_at(deadline):
                if digest is None:
                    manifest = await self.client.get_manifest(
                        parsed.api_host, parsed.repository, parsed.identifier, credential=credential
                    )
                    digest = manifest.digest
                known = self.cache.by_digest(digest, requirement_key)
                if known is not None:
                    result = dataclasses.replace(known, reference=reference)
                else:
                    pinned = parsed.with_digest(digest)
                    result = await self.cache.single_flight(
                        (digest, requirement_key, credential),
                        lambda: self._verify_digest(
                            reference, pinned, requirement, credential, namespace, deadline
                        ),
                    )
                    result = dataclasses.replace(result, reference=reference)
        except TimeoutError:
            result = self._failed(
                reference,
                digest,
                facts.Outcome.TIMED_OUT,
                f"verification did not finish within {deadline_seconds:g}s",
                wants_attestations,
            )
        except registries.RegistryError as error:
            result = self._failed(
                reference, digest, outcome_of(error), str(error), wants_attestations
            )
        except Exception as error:  # fail closed with a reason; never crash admission
            _logger.exception("resolving %s failed unexpectedly", reference)
            result = self._failed(
                reference,
                digest,
                facts.Outcome.ERROR,
                f"internal error: {error}",
                wants_attestations,
            )
        self.cache.store(reference, requirement_key, result, pinned=parsed.digest is not None)
        return result

    @staticmethod
    def _failed(
        reference: str,
        digest: str | None,
        outcome: facts.Outcome,
        detail: str,
        wants_attestations: bool,
    ) -> facts.ImageFacts:
        fact = failure(outcome, detail)
        return facts.ImageFacts(
            reference=reference,
            digest=digest,
            signature=fact,
            attestation_failure=fact if wants_attestations else None,
        )

    async def _verify_digest(
        self,
        reference: str,
        image: references.Reference,
        requirement: policies.ImageRequirements,
        credential: credentials.Credential | None,
        namespace: str,
        deadline: float,
    ) -> facts.ImageFacts:
        """The shared work of one (digest, requirement) verification; never raises."""
        digest = image.digest
        assert digest is not None
        wants_attestations = bool(requirement.attestations)
        try:
            async with asyncio.timeout_at(deadline):
                material = await self._collect(
                    image, credential, bool(requirement.signers), wants_attestations
                )
                image_signers, problems = signers.compile_signers(
                    requirement.signers, secrets=self._secrets, namespace=namespace
                )
                judge = judging.Judge(digest=digest, trust_root=self.trust_root)
                signature = await judge.signature(material, image_signers, problems, requirement)
                found: tuple[facts.AttestationFact, ...] = ()
                attestation_failure = None
                if wants_attestations:
                    if material.attestation_error is not None:
                        attestation_failure = material.attestation_error
                    else:
                        found = await judge.attestations(
                            material, requirement, image_signers, self._compile_for(namespace)
                        )
        except TimeoutError:
            return self._failed(
                reference,
                digest,
                facts.Outcome.TIMED_OUT,
                "verification did not finish within its deadline",
                wants_attestations,
            )
        except Exception as error:  # verification must fail closed, never crash admission
            _logger.exception("verifying %s failed unexpectedly", image)
            return self._failed(
                reference,
                digest,
                facts.Outcome.ERROR,
                f"internal error: {error}",
                wants_attestations,
            )
        return facts.ImageFacts(
            reference=reference,
            digest=digest,
            signature=signature,
            attestations=found,
            attestation_failure=attestation_failure,
        )

    def _compile_for(
        self, namespace: str
    ) -> Callable[[Sequence[policies.Signer]], tuple[list[signers.TrustedSigner], list[str]]]:
        def compile_(
            entries: Sequence[policies.Signer],
        ) -> tuple[list[signers.TrustedSigner], list[str]]:
            return signers.compile_signers(entries, secrets=self._secrets, namespace=namespace)

        return compile_

    async def _collect(
        self,
        image: references.Reference,
        credential: credentials.Credential | None,
        wants_signatures: bool,
        wants_attestations: bool,
    ) -> judging.Material:
        """Fetch every signature and attestation artifact of the image, concurrently."""
        host, repository, digest = image.api_host, image.repository, image.digest
        assert digest is not None
        material = judging.Material()
        if not (wants_signatures or wants_attestations):
            return material

        async def signature_layers() -> None:
            manifest = await self._tag_manifest(host, repository, digest, "sig", credential)
            if manifest is None:
                return
            layers = cosignsignatures.signature_layers(manifest.document)
            payloads = await asyncio.gather(
                *(
                    self.client.get_blob(
                        host,
                        repository,
                        layer.payload_digest,
                        credential=credential,
                        max_bytes=_MAX_PAYLOAD_BYTES,
                    )
                    for layer in layers
                )
            )
            material.signature_layers.extend(zip(layers, payloads, strict=True))

        async def attestation_envelopes() -> None:
            manifest = await self._tag_manifest(host, repository, digest, "att", credential)
            if manifest is None:
                return
            layers = cosignsignatures.envelope_layers(manifest.document)
            blobs = await asyncio.gather(
                *(
                    self.client.get_blob(
                        host,
                        repository,
                        layer.digest,
                        credential=credential,
                        max_bytes=_MAX_BUNDLE_BYTES,
                    )
                    for layer in layers
                )
            )
            for blob in blobs:
                try:
                    material.envelopes.append(attestations.parse_envelope(blob))
                except attestations.MalformedError as error:
                    material.malformed.append(f"attestation: {error}")

        async def referrer_bundles() -> None:
            descriptors = await self.client.referrers(
                host, repository, digest, credential=credential
            )
            chosen = [d for d in descriptors if bundles.is_bundle_descriptor(d)][
                : bundles.MAX_REFERRERS
            ]
            results = await asyncio.gather(
                *(
                    self._bundle(host, repository, digest, str(d["digest"]), credential)
                    for d in chosen
                )
            )
            material.bundles.extend(b for b in results if b is not None)

        jobs: dict[str, Any] = {"bundles": referrer_bundles()}
        if wants_signatures:
            jobs["signatures"] = signature_layers()
        if wants_attestations:
            jobs["attestations"] = attestation_envelopes()
        outcomes = await asyncio.gather(*jobs.values(), return_exceptions=True)
        for name, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, registries.RegistryError):
                fact = failure(outcome_of(outcome), str(outcome))
                if name in ("signatures", "bundles"):
                    material.signature_error = material.signature_error or fact
                if name in ("attestations", "bundles"):
                    material.attestation_error = material.attestation_error or fact
            elif isinstance(outcome, BaseException):
                raise outcome
        return material

    async def _tag_manifest(
        self,
        host: str,
        repository: str,
        digest: str,
        suffix: str,
        credential: credentials.Credential | None,
    ) -> registries.Manifest | None:
        tag = references.signature_tag(digest, suffix)
        try:
            return await self.client.get_manifest(host, repository, tag, credential=credential)
        except registries.NotFoundError:
            return None

    async def _bundle(
        self,
        host: str,
        repository: str,
        digest: str,
        manifest_digest: str,
        credential: credentials.Credential | None,
    ) -> bundles.Bundle | None:
        manifest = await self.client.get_manifest(
            host, repository, manifest_digest, credential=credential
        )
        # The tag-schema fallback index is written by clients, not the registry: trust
        # only manifests that themselves name this image as subject.
        layer = bundles.bundle_layer(manifest.document)
        if layer is None or bundles.subject_digest(manifest.document) != digest:
            return None
        raw = await self.client.get_blob(
            host, repository, layer[0], credential=credential, max_bytes=_MAX_BUNDLE_BYTES
        )
        try:
            return bundles.parse(raw)
        except attestations.MalformedError:
            return None
