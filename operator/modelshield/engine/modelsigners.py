"""Whether a model's verified signature was made by one of THIS policy's signers.

The operator verifies a ModelArtifact against the signers of every governing policy (a
namespaced policy next to the cluster baseline) and records which key or keyless identity
verified (status.signerKey, signerIssuer, signerIdentity). A name alone proves nothing: a
namespaced policy can name its own key ``release`` like the baseline's. So a policy accepts
the model only when the recorded key is its own inline key, or the recorded issuer and
identity are those of its own keyless signer. A signer whose key is in a Secret (namespaced
policies only) is trusted by name, as trusted builders are (the engine reads no Secrets).
Pure.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from modelshield.api.v1alpha1 import signers as signer_types
from modelshield.engine import facts, keyids


@dataclasses.dataclass(frozen=True, slots=True)
class CompiledSigner:
    """One policy signer, by what identifies it."""

    name: str
    #: keyids.fingerprint of the inline key; None when it is not an inline key.
    key: str | None = None
    #: The key is in a Secret: trusted by name.
    from_secret: bool = False
    issuer: str | None = None
    subject: str | None = None
    subject_reg_exp: str | None = None


def compile_signers(signers: Iterable[signer_types.Signer]) -> tuple[CompiledSigner, ...]:
    """The policy's signers, each with its key's fingerprint or its keyless identity."""
    compiled: list[CompiledSigner] = []
    for signer in signers:
        if signer.public_key is not None:
            compiled.append(
                CompiledSigner(signer.name, key=keyids.fingerprint(signer.public_key.encode()))
            )
        elif signer.keyless is not None:
            compiled.append(
                CompiledSigner(
                    signer.name,
                    issuer=signer.keyless.issuer,
                    subject=signer.keyless.subject,
                    subject_reg_exp=signer.keyless.subject_reg_exp,
                )
            )
        else:
            compiled.append(CompiledSigner(signer.name, from_secret=True))
    return tuple(compiled)


def matches(signer: CompiledSigner, name: str | None, key: str, issuer: str, identity: str) -> bool:
    """Whether what verified (the signer's name, key fingerprint, or keyless issuer and
    identity) is this policy signer: by key or identity, by name only for a Secret's key."""
    if signer.from_secret:
        return name == signer.name
    if signer.key is not None:
        return signer.key != keyids.UNREADABLE and key == signer.key
    if not issuer or issuer != signer.issuer or not identity:
        return False
    if signer.subject is not None:
        return identity == signer.subject
    return signer.subject_reg_exp is not None and bool(
        re.fullmatch(signer.subject_reg_exp, identity)
    )


def _matches(signer: CompiledSigner, artifact: facts.ArtifactFacts) -> bool:
    return matches(
        signer,
        artifact.signer,
        artifact.signer_key,
        artifact.signer_issuer,
        artifact.signer_identity,
    )


def trusted_by(signers: Iterable[CompiledSigner], artifact: facts.ArtifactFacts) -> bool:
    """Whether the artifact's verified signature is one of these signers' (key or identity)."""
    return any(_matches(signer, artifact) for signer in signers)


def untrusted_reason(signers: tuple[CompiledSigner, ...], artifact: facts.ArtifactFacts) -> str:
    """Why the verified signature is not one of these signers' (for the message)."""
    names = {signer.name for signer in signers}
    if not (artifact.signer_key or artifact.signer_issuer):
        if artifact.signer in names:
            return (
                f"is signed by {artifact.signer!r}, but its status does not record which key or "
                "identity verified (written by an older operator); the operator records it "
                "when it checks the model again"
            )
    elif artifact.signer in names:
        verified = artifact.signer_key or f"{artifact.signer_issuer} {artifact.signer_identity}"
        return (
            f"is signed with a key or identity named {artifact.signer!r} that is not this "
            f"policy's signer of that name ({verified})"
        )
    return f"is signed by {artifact.signer!r}"
