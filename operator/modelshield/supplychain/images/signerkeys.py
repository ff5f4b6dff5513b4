"""``secretRef`` signers made inline: image requirements with the Secrets' public keys in them.

A requirement whose image or attestation signers name a Secret is verified as the same
requirement with ``publicKey`` set to the Secret's value (read in the namespace of the
workload, which is the policy's: a namespaced policy governs only its own namespace,
and a ClusterModelSecurityPolicy may not use ``secretRef``). Its cache key is derived
from the resolved signers, so two namespaces whose Secrets hold different keys never
share a verification result, and a rotated key is a new requirement.

The hot path (``resolved_now``) is dictionary lookups: the resolved requirement is kept
per (namespace, requirement key) and rebuilt only when the Secret cache changes. A
Secret that is missing or lacks the key leaves its signer unresolved, and the verifier
reports "Secret ... not found" for it (fail closed).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
from collections.abc import Mapping, Sequence

from modelshield.api.v1alpha1 import policies
from modelshield.engine import compiling
from modelshield.supplychain.images import secretreading

#: (Secret name, key)
Ref = tuple[str, str]


def secret_refs(requirement: policies.ImageRequirements) -> frozenset[Ref]:
    """Every Secret key the requirement's image and attestation signers name."""
    found: set[Ref] = set()
    for signer in _all_signers(requirement):
        if signer.secret_ref is not None:
            found.add((signer.secret_ref.name, signer.secret_ref.key))
    return frozenset(found)


def _all_signers(requirement: policies.ImageRequirements) -> list[policies.Signer]:
    signers = list(requirement.signers)
    for attestation in requirement.attestations:
        signers.extend(attestation.signers)
    return signers


def _decoded(data: secretreading.SecretData | None, key: str) -> str | None:
    if data is None:
        return None
    value = data.get(key)
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError):
        return None


def _inline(
    signers: Sequence[policies.Signer], values: Mapping[str, secretreading.SecretData | None]
) -> list[policies.Signer]:
    inlined = []
    for signer in signers:
        ref = signer.secret_ref
        pem = _decoded(values.get(ref.name), ref.key) if ref is not None else None
        if pem is not None:
            signer = signer.model_copy(update={"secret_ref": None, "public_key": pem})
        inlined.append(signer)
    return inlined


def inlined(
    requirement: compiling.CompiledImages,
    values: Mapping[str, secretreading.SecretData | None],
) -> compiling.CompiledImages:
    """The requirement with each resolvable ``secretRef`` signer given its key inline.

    values: Secret data by Secret name (None: missing or unreadable).
    """
    source = requirement.source
    resolved = source.model_copy(
        update={
            "signers": _inline(source.signers, values),
            "attestations": [
                attestation.model_copy(update={"signers": _inline(attestation.signers, values)})
                for attestation in source.attestations
            ],
        }
    )
    return dataclasses.replace(
        requirement, key=compiling.requirement_key(resolved), source=resolved
    )


class SignerKeys:
    """Resolves ``secretRef`` signers through a Secret cache; one per server process."""

    def __init__(self, secrets: secretreading.CachedSecrets) -> None:
        self.secrets = secrets
        self._refs: dict[str, frozenset[Ref]] = {}
        self._resolved: dict[tuple[str, str], tuple[int, compiling.CompiledImages]] = {}

    def _refs_of(self, requirement: compiling.CompiledImages) -> frozenset[Ref]:
        refs = self._refs.get(requirement.key)
        if refs is None:
            refs = self._refs[requirement.key] = secret_refs(requirement.source)
        return refs

    def resolved_now(
        self, requirement: compiling.CompiledImages, namespace: str
    ) -> compiling.CompiledImages | None:
        """The requirement to verify, without I/O; None when a Secret must be read first."""
        refs = self._refs_of(requirement)
        if not refs:
            return requirement
        memo_key = (namespace, requirement.key)
        memo = self._resolved.get(memo_key)
        version = self.secrets.version
        values: dict[str, secretreading.SecretData | None] = {}
        for name in {name for name, _ in refs}:
            live, data = self.secrets.data_now(namespace, name)
            if not live:
                return None
            values[name] = data
        if memo is not None and memo[0] == version:
            return memo[1]
        resolved = inlined(requirement, values)
        self._resolved[memo_key] = (version, resolved)
        return resolved

    async def resolve(
        self, requirement: compiling.CompiledImages, namespace: str
    ) -> compiling.CompiledImages:
        """The requirement to verify, reading the Secrets it names that are not cached."""
        refs = self._refs_of(requirement)
        if not refs:
            return requirement
        names = sorted({name for name, _ in refs})
        found = await asyncio.gather(*(self.secrets.get(namespace, name) for name in names))
        resolved = inlined(requirement, dict(zip(names, found, strict=True)))
        self._resolved[(namespace, requirement.key)] = (self.secrets.version, resolved)
        return resolved
