"""Sigstore bundles attached to an image as OCI referrers, as ``cosign --new-bundle-format`` writes them.

Pure parsing. The referrer is an OCI manifest whose ``artifactType`` is the bundle media
type, whose ``subject`` is the image and whose single layer is the bundle JSON. A
bundle carries either a DSSE envelope (cosign signs an in-toto statement of type
``https://sigstore.dev/cosign/sign/v1`` for an image signature, and the attested
statement for ``cosign attest``) or a message signature, plus verification material: a
public-key hint or a certificate with transparency-log entries. Key-signed bundles are
checked here with the policy key (sigstore-python reads only certificate bundles);
certificate bundles go to sigstore-python's ``Verifier`` (``signers.KeylessSigner``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from modelshield.supplychain.images import attestations

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_MEDIA_PREFIX = "application/vnd.dev.sigstore.bundle"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
#: Referrers examined per image; more is either an attack or a mistake.
MAX_REFERRERS = 32


@dataclasses.dataclass(frozen=True)
class Bundle:
    """What the verifier needs from one sigstore bundle."""

    raw: bytes
    media_type: str
    envelope: attestations.Envelope | None
    #: ``sha256:<hex>`` the message signature covers, for message-signature bundles.
    message_digest: str | None
    message_signature: bytes | None
    has_certificate: bool
    public_key_hint: str | None


def is_bundle_descriptor(descriptor: Mapping[str, Any]) -> bool:
    """Whether a referrer descriptor may be a sigstore bundle (its manifest decides).

    cosign 2.x, writing the tag-schema index itself, records the empty config media type
    as the descriptor's artifactType, so that and a missing artifactType are accepted too.
    """
    artifact_type = descriptor.get("artifactType")
    if artifact_type is None or artifact_type == EMPTY_CONFIG:
        return True
    return isinstance(artifact_type, str) and artifact_type.startswith(BUNDLE_MEDIA_PREFIX)


def bundle_layer(manifest: Mapping[str, Any]) -> tuple[str, int] | None:
    """The (digest, size) of the bundle layer of a referrer manifest, or None."""
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        return None
    for layer in layers[:4]:
        if not isinstance(layer, Mapping):
            continue
        media_type, digest, size = layer.get("mediaType"), layer.get("digest"), layer.get("size")
        if (
            isinstance(media_type, str)
            and media_type.startswith(BUNDLE_MEDIA_PREFIX)
            and isinstance(digest, str)
            and isinstance(size, int)
        ):
            return digest, size
    return None


def subject_digest(manifest: Mapping[str, Any]) -> str | None:
    """The digest a referrer manifest declares as its subject."""
    subject = manifest.get("subject")
    digest = subject.get("digest") if isinstance(subject, Mapping) else None
    return digest if isinstance(digest, str) else None


def parse(raw: bytes) -> Bundle:
    """A Bundle from its JSON bytes; raises ``attestations.MalformedError``."""
    try:
        document = json.loads(raw)
    except ValueError as error:
        raise attestations.MalformedError("bundle is not JSON") from error
    if not isinstance(document, dict):
        raise attestations.MalformedError("bundle is not a JSON object")
    media_type = document.get("mediaType")
    if not isinstance(media_type, str) or not media_type.startswith(BUNDLE_MEDIA_PREFIX):
        raise attestations.MalformedError(f"bundle media type {media_type!r} is not sigstore's")
    material = document.get("verificationMaterial")
    material = material if isinstance(material, Mapping) else {}
    hint = material.get("publicKey")
    envelope = None
    if isinstance(document.get("dsseEnvelope"), Mapping):
        envelope = attestations.envelope_from_mapping(document["dsseEnvelope"])
    message_digest = message_signature = None
    signature_part = document.get("messageSignature")
    if isinstance(signature_part, Mapping):
        digest_part = signature_part.get("messageDigest")
        if isinstance(digest_part, Mapping) and digest_part.get("algorithm") == "SHA2_256":
            digest_bytes = attestations.decode_base64(digest_part.get("digest"), "message digest")
            message_digest = f"sha256:{digest_bytes.hex()}"
        message_signature = attestations.decode_base64(
            signature_part.get("signature"), "message signature"
        )
    if envelope is None and message_signature is None:
        raise attestations.MalformedError(
            "bundle has neither a DSSE envelope nor a message signature"
        )
    return Bundle(
        raw=raw,
        media_type=media_type,
        envelope=envelope,
        message_digest=message_digest,
        message_signature=message_signature,
        has_certificate=bool(material.get("certificate") or material.get("x509CertificateChain")),
        public_key_hint=str(hint.get("hint"))
        if isinstance(hint, Mapping) and hint.get("hint")
        else None,
    )
