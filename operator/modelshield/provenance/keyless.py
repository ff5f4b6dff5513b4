"""Keyless trusted builders: the provenance statement in a sigstore bundle, verified offline.

A pipeline without a long-lived key signs its statement keyless (``cosign attest-blob
--new-bundle-format``, or sigstore's ``sign_dsse``): the provenance file is then a sigstore
bundle holding the DSSE envelope, a short-lived certificate for the pipeline's OIDC
identity and its transparency-log entry. sigstore-python's ``Verifier`` checks the chain to
the configured trust root, the log entry and the signature
(``supplychain.images.signers.KeylessSigner.verify_bundle``, the code that verifies keyless
image attestations); the certificate must carry the builder's issuer and identity (exact,
or a full match of its regexp). Nothing is fetched: without a trust root, a keyless builder
verifies nothing.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelshield.provenance import envelopes

if TYPE_CHECKING:
    from modelshield.supplychain.images import signers

#: mediaType prefix of every sigstore bundle version.
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle"


@dataclasses.dataclass(frozen=True)
class KeylessBuilder:
    """A builder trusted by its OIDC issuer and identity; picklable."""

    name: str
    issuer: str
    subject: str | None = None
    subject_reg_exp: str | None = None


def bundles(data: bytes) -> list[bytes]:
    """The sigstore bundles a provenance file holds (one JSON document, or one per line)."""
    if len(data) > envelopes.MAX_FILE_BYTES:
        return []
    try:
        documents: list[Any] = [json.loads(data)]
    except ValueError:
        try:
            documents = [json.loads(line) for line in data.splitlines() if line.strip()]
        except ValueError:
            return []
    return [
        json.dumps(document).encode()
        for document in documents
        if isinstance(document, dict)
        and str(document.get("mediaType", "")).startswith(BUNDLE_MEDIA_TYPE)
    ]


def load_trust_root(path: pathlib.Path) -> Any:
    """The sigstore TrustedRoot of a trusted_root.json, or of a client trust config (the
    file model-signing's keyless verification reads)."""
    from sigstore import models as sigstore_models

    text = path.read_text()
    if "trustedRoot" in json.loads(text):
        return sigstore_models.ClientTrustConfig.from_json(text).trusted_root
    return sigstore_models.TrustedRoot.from_file(str(path))


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the bundles proved: the verified statements, and why others were refused."""

    verified: list[envelopes.Verified]
    refused: list[str]


def verify(
    data: bytes,
    builders: Sequence[KeylessBuilder],
    trust_root: pathlib.Path | None,
    payload_type: str,
) -> Outcome:
    """The bundles in data that one of the keyless builders signed (DSSE of payload_type)."""
    found = bundles(data)
    if not found or not builders:
        return Outcome([], [])
    if trust_root is None:
        return Outcome([], ["no sigstore trust root is configured for keyless builders"])
    try:
        root = load_trust_root(trust_root)
    except (OSError, ValueError) as error:
        return Outcome([], [f"the sigstore trust root cannot be read: {error}"])
    # Imported here: most provenance is key-signed, and a cold worker should not pay for it.
    from modelshield.supplychain.images import signers

    verified, refused = [], []
    for raw in found:
        for builder in builders:
            signer = signers.KeylessSigner(
                builder.name,
                builder.issuer,
                builder.subject,
                re.compile(builder.subject_reg_exp) if builder.subject_reg_exp else None,
            )
            try:
                kind, payload = signer.verify_bundle(raw, root)
            except (signers.IdentityMismatchError, signers.BundleVerificationError) as error:
                refused.append(f"{builder.name}: {error}")
                continue
            if kind != payload_type:
                refused.append(f"{builder.name}: payload type {kind!r} is not {payload_type!r}")
                continue
            verified.append(
                envelopes.Verified(
                    builder=builder.name,
                    payload=payload,
                    issuer=builder.issuer,
                    identity=_identity(raw, signer),
                )
            )
            break
    return Outcome(verified, refused)


def _identity(raw: bytes, signer: signers.KeylessSigner) -> str:
    """The certificate identity that matched the builder (the bundle verified already)."""
    from sigstore import models as sigstore_models

    from modelshield.supplychain.images import signers as image_signers

    certificate = sigstore_models.Bundle.from_json(raw).signing_certificate
    for identity in sorted(image_signers.certificate_identities(certificate)):
        if identity == signer.subject or (
            signer.subject_pattern is not None and signer.subject_pattern.fullmatch(identity)
        ):
            return identity
    return ""
