"""cosign's tag-based formats: ``sha256-<hex>.sig`` (simple signing) and ``sha256-<hex>.att``.

Pure parsing and payload checks. The ``.sig`` manifest has one layer per signature,
of media type ``application/vnd.dev.cosign.simplesigning.v1+json``; the layer blob is
the signed payload and the signature is base64 in the layer annotation
``dev.cosignproject.cosign/signature``. The payload names the signed image digest in
``critical.image.docker-manifest-digest``: a signature copied next to another image
verifies as a signature but names the wrong digest, which ``check_payload`` catches.
The ``.att`` manifest's layers are DSSE envelopes (``application/vnd.dsse.envelope.v1+json``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from modelshield.supplychain.images import attestations

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
SIGNATURE_TYPE = "cosign container image signature"
#: Layers looked at per manifest; a registry cannot make us fetch without bound.
MAX_LAYERS = 32


@dataclasses.dataclass(frozen=True)
class SignatureLayer:
    """One signature of a ``.sig`` manifest: where its payload is and the signature over it."""

    payload_digest: str
    payload_size: int
    signature: bytes
    certificate_pem: str | None = None


@dataclasses.dataclass(frozen=True)
class EnvelopeLayer:
    """One DSSE envelope of a ``.att`` manifest."""

    digest: str
    size: int


def _layers(manifest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        return []
    return [layer for layer in layers[:MAX_LAYERS] if isinstance(layer, Mapping)]


def signature_layers(manifest: Mapping[str, Any]) -> list[SignatureLayer]:
    """The simple-signing layers of a ``.sig`` manifest; malformed layers are skipped."""
    found = []
    for layer in _layers(manifest):
        annotations = layer.get("annotations")
        if layer.get("mediaType") != SIMPLE_SIGNING or not isinstance(annotations, Mapping):
            continue
        digest, size = layer.get("digest"), layer.get("size")
        encoded = annotations.get(SIGNATURE_ANNOTATION)
        if not isinstance(digest, str) or not isinstance(size, int) or not isinstance(encoded, str):
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        certificate = annotations.get(CERTIFICATE_ANNOTATION)
        found.append(
            SignatureLayer(
                payload_digest=digest,
                payload_size=size,
                signature=signature,
                certificate_pem=certificate
                if isinstance(certificate, str) and certificate
                else None,
            )
        )
    return found


def envelope_layers(manifest: Mapping[str, Any]) -> list[EnvelopeLayer]:
    """The DSSE envelope layers of a ``.att`` manifest."""
    return [
        EnvelopeLayer(digest=layer["digest"], size=layer["size"])
        for layer in _layers(manifest)
        if layer.get("mediaType") == attestations.DSSE_ENVELOPE
        and isinstance(layer.get("digest"), str)
        and isinstance(layer.get("size"), int)
    ]


def check_payload(payload: bytes, digest: str) -> str | None:
    """None when the simple-signing payload signs digest; otherwise why it does not."""
    try:
        document = json.loads(payload)
    except ValueError:
        return "signature payload is not JSON"
    critical = document.get("critical") if isinstance(document, dict) else None
    if not isinstance(critical, Mapping):
        return "signature payload has no critical section"
    kind = critical.get("type")
    if not isinstance(kind, str) or kind.lower() != SIGNATURE_TYPE:
        return f"signature payload type is {kind!r}, not {SIGNATURE_TYPE!r}"
    image = critical.get("image")
    signed = image.get("docker-manifest-digest") if isinstance(image, Mapping) else None
    if not isinstance(signed, str):
        return "signature payload names no image digest"
    if signed != digest:
        return f"signature is for {signed}, not for this image ({digest})"
    return None
