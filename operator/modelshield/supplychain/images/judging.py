"""Judging fetched material: which signature verifies, by whom, for which digest; which attestations.

No network: ``imageverifier`` fetches, this module decides. Keyless bundles are checked by
sigstore-python in a worker thread (certificate-chain and log-proof verification is CPU
work that must not stall the event loop). Outcomes rank from best to worst so that
one good signature wins and, otherwise, the most telling failure is reported:
VERIFIED, then DIGEST_MISMATCH (a trusted signature for another image), then
SIGNATURE_MISMATCH (a trusted identity whose signature does not verify), then
SIGNER_UNTRUSTED (signed, but by nobody the policy trusts), then NO_SIGNATURE.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from modelshield.api.v1alpha1 import policies
from modelshield.engine import facts
from modelshield.supplychain.images import attestations, bundles, cosignsignatures, signers

_RANK = {
    facts.Outcome.VERIFIED: 0,
    facts.Outcome.DIGEST_MISMATCH: 1,
    facts.Outcome.SIGNATURE_MISMATCH: 2,
    facts.Outcome.SIGNER_UNTRUSTED: 3,
    facts.Outcome.NO_SIGNATURE: 4,
}

Compiler = Callable[[Sequence[policies.Signer]], tuple[list[signers.TrustedSigner], list[str]]]


@dataclasses.dataclass
class Material:
    """Everything fetched for one image digest."""

    signature_layers: list[tuple[cosignsignatures.SignatureLayer, bytes]] = dataclasses.field(
        default_factory=list
    )
    envelopes: list[attestations.Envelope] = dataclasses.field(default_factory=list)
    bundles: list[bundles.Bundle] = dataclasses.field(default_factory=list)
    malformed: list[str] = dataclasses.field(default_factory=list)
    #: Set when some signature source could not be read (registry down...).
    signature_error: facts.SignatureFact | None = None
    attestation_error: facts.SignatureFact | None = None


def _statement(envelope: attestations.Envelope) -> attestations.Statement | None:
    try:
        return attestations.parse_statement(envelope)
    except attestations.MalformedError:
        return None


def is_signature_bundle(bundle: bundles.Bundle) -> bool:
    """A bundle that signs the image itself (cosign's sign statement), not an attestation."""
    if bundle.envelope is None:
        return False
    statement = _statement(bundle.envelope)
    return statement is not None and statement.predicate_type == attestations.COSIGN_SIGN


def _key_signer_of(
    envelope: attestations.Envelope, candidates: Sequence[signers.TrustedSigner]
) -> signers.KeySigner | None:
    signed = envelope.signed_bytes()
    for signer in candidates:
        if isinstance(signer, signers.KeySigner) and any(
            signer.verify(signature, signed) for _, signature in envelope.signatures
        ):
            return signer
    return None


@dataclasses.dataclass(frozen=True)
class Judge:
    """Decides for one image digest."""

    digest: str
    trust_root: Any = None

    def _simple_signing(
        self,
        layer: cosignsignatures.SignatureLayer,
        payload: bytes,
        trusted: Sequence[signers.TrustedSigner],
    ) -> facts.SignatureFact:
        for signer in trusted:
            if isinstance(signer, signers.KeySigner) and signer.verify(layer.signature, payload):
                problem = cosignsignatures.check_payload(payload, self.digest)
                if problem is None:
                    return facts.SignatureFact(
                        facts.Outcome.VERIFIED, signer.name, "cosign signature (.sig)"
                    )
                return facts.SignatureFact(facts.Outcome.DIGEST_MISMATCH, signer.name, problem)
        if layer.certificate_pem and any(isinstance(s, signers.KeylessSigner) for s in trusted):
            detail = (
                "a keyless signature in cosign's tag format (.sig) is not checked; "
                "sign with --new-bundle-format for keyless verification"
            )
            return facts.SignatureFact(facts.Outcome.SIGNER_UNTRUSTED, None, detail)
        names = ", ".join(s.name for s in trusted if isinstance(s, signers.KeySigner)) or "none"
        return facts.SignatureFact(
            facts.Outcome.SIGNER_UNTRUSTED,
            None,
            f"a cosign signature exists but verifies with no trusted key (trusted: {names})",
        )

    async def _keyless(
        self, bundle: bundles.Bundle, signer: signers.KeylessSigner
    ) -> tuple[attestations.Statement | None, facts.SignatureFact | None]:
        """The verified statement, or the failure, for one keyless signer."""
        try:
            payload_type, payload = await asyncio.to_thread(
                signer.verify_bundle, bundle.raw, self.trust_root
            )
        except signers.IdentityMismatchError as error:
            return None, facts.SignatureFact(facts.Outcome.SIGNER_UNTRUSTED, None, str(error))
        except signers.BundleVerificationError as error:
            return None, facts.SignatureFact(
                facts.Outcome.SIGNATURE_MISMATCH, signer.name, str(error)
            )
        statement = _statement(attestations.Envelope(payload_type, payload, ()))
        if statement is None:
            problem = "verified bundle does not carry an in-toto statement"
            return None, facts.SignatureFact(facts.Outcome.SIGNATURE_MISMATCH, signer.name, problem)
        return statement, None

    async def _bundle_signature(
        self, bundle: bundles.Bundle, trusted: Sequence[signers.TrustedSigner]
    ) -> facts.SignatureFact:
        assert bundle.envelope is not None
        verified: tuple[str, attestations.Statement] | None = None
        failures: list[facts.SignatureFact] = []
        key_signer = _key_signer_of(bundle.envelope, trusted)
        statement = _statement(bundle.envelope)
        if key_signer is not None and statement is not None:
            verified = (key_signer.name, statement)
        elif bundle.has_certificate:
            for signer in trusted:
                if isinstance(signer, signers.KeylessSigner):
                    found, problem = await self._keyless(bundle, signer)
                    if found is not None:
                        verified = (signer.name, found)
                        break
                    if problem is not None:
                        failures.append(problem)
        if verified is not None:
            name, statement = verified
            if attestations.names_digest(statement, self.digest):
                return facts.SignatureFact(
                    facts.Outcome.VERIFIED, name, "sigstore bundle (referrer)"
                )
            subjects = ", ".join(statement.subject_digests) or "nothing"
            return facts.SignatureFact(
                facts.Outcome.DIGEST_MISMATCH, name, f"bundle signs {subjects}, not {self.digest}"
            )
        if failures:
            return min(failures, key=lambda f: _RANK[f.outcome])
        return facts.SignatureFact(
            facts.Outcome.SIGNER_UNTRUSTED,
            None,
            "a sigstore bundle exists but no trusted signer made it",
        )

    async def signature(
        self,
        material: Material,
        trusted: Sequence[signers.TrustedSigner],
        problems: Sequence[str],
        requirement: policies.ImageRequirements,
    ) -> facts.SignatureFact:
        """The image's signature outcome against the policy's signers."""
        if not requirement.signers:
            return facts.SignatureFact(
                facts.Outcome.VERIFIED, None, "the policy requires no signature"
            )
        if not trusted:
            return facts.SignatureFact(
                facts.Outcome.ERROR, None, "no usable signer: " + "; ".join(problems)
            )
        found = [
            self._simple_signing(layer, payload, trusted)
            for layer, payload in material.signature_layers
        ]
        for bundle in material.bundles:
            if is_signature_bundle(bundle):
                found.append(await self._bundle_signature(bundle, trusted))
        best = min(found, key=lambda f: _RANK[f.outcome]) if found else None
        if best is not None and best.outcome is facts.Outcome.VERIFIED:
            return best
        if material.signature_error is not None:
            # Something could not be read: "unsigned" would be a guess, and failing open
            # on a guess is what this verifier exists to prevent.
            return material.signature_error
        if best is None:
            return facts.SignatureFact(
                facts.Outcome.NO_SIGNATURE,
                None,
                f"no cosign signature (.sig tag) and no sigstore bundle referrer for {self.digest}",
            )
        if problems:
            return dataclasses.replace(
                best, detail=f"{best.detail}; unusable signers: {'; '.join(problems)}"
            )
        return best

    def _fact(
        self, statement: attestations.Statement | None, signer: str
    ) -> facts.AttestationFact | None:
        if statement is None or statement.predicate_type == attestations.COSIGN_SIGN:
            return None
        if not attestations.names_digest(statement, self.digest):
            return None
        return facts.AttestationFact(
            predicate_type=statement.predicate_type,
            signer=signer,
            issued_at=attestations.issued_at(statement) or attestations.UNKNOWN_TIME,
            vulnerabilities=attestations.vulnerabilities(statement),
        )

    async def attestations(
        self,
        material: Material,
        requirement: policies.ImageRequirements,
        image_signers: Sequence[signers.TrustedSigner],
        compile_signers: Compiler,
    ) -> tuple[facts.AttestationFact, ...]:
        """Every attestation verified by the signers of some attestation requirement."""
        # Signature bundles are not attestations: skip them before any costly check.
        attested = [
            b for b in material.bundles if b.envelope is not None and not is_signature_bundle(b)
        ]
        keyed = list(material.envelopes) + [
            b.envelope for b in attested if b.envelope is not None and not b.has_certificate
        ]
        certified = [b for b in attested if b.has_certificate]
        found: dict[tuple[Any, ...], facts.AttestationFact] = {}
        for wanted in requirement.attestations:
            trusted = compile_signers(wanted.signers)[0] if wanted.signers else list(image_signers)
            candidates: list[tuple[attestations.Statement | None, str]] = []
            for envelope in keyed:
                signer = _key_signer_of(envelope, trusted)
                if signer is not None:
                    candidates.append((_statement(envelope), signer.name))
            for bundle in certified:
                for keyless in (s for s in trusted if isinstance(s, signers.KeylessSigner)):
                    statement, _ = await self._keyless(bundle, keyless)
                    if statement is not None:
                        candidates.append((statement, keyless.name))
                        break
            for statement, name in candidates:
                fact = self._fact(statement, name)
                if fact is not None:
                    vulnerabilities = tuple(sorted((fact.vulnerabilities or {}).items()))
                    found[(fact.predicate_type, fact.signer, fact.issued_at, vulnerabilities)] = (
                        fact
                    )
        return tuple(sorted(found.values(), key=lambda f: f.issued_at, reverse=True))
