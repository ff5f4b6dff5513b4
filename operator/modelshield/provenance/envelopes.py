"""DSSE envelopes: signing a statement with a key, verifying envelopes against builders' keys.

The envelope format, the pre-authentication encoding and the signature schemes are
securesystemslib's (``dsse.Envelope``, ``CryptoSigner``, ``SSlibKey``). What this module
adds: a provenance file may hold one envelope or several (one JSON document per line, as
SLSA generators write ``.intoto.jsonl``); each signature is tried against every trusted key
whatever its ``keyid`` (cosign writes an empty one), and a key matches only by signature.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization
from securesystemslib import dsse
from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import CryptoSigner, Signature, SSlibKey

from modelshield.engine import keyids
from modelshield.provenance import statements

#: A provenance file larger than this is refused before it is parsed.
MAX_FILE_BYTES = 4 * 1024 * 1024


class EnvelopeError(ValueError):
    """The file holds no readable DSSE envelope."""


@dataclasses.dataclass(frozen=True)
class TrustedKey:
    """A builder trusted by name, known by its PEM public key."""

    name: str
    public_key_pem: bytes


@dataclasses.dataclass(frozen=True)
class Verified:
    """An envelope whose signature verified with a trusted key."""

    builder: str
    payload: bytes
    #: keyids.fingerprint of the key that verified.
    key: str = ""
    #: Keyless (``provenance.keyless``): the certificate's OIDC issuer and identity.
    issuer: str = ""
    identity: str = ""


def sign(
    statement: Mapping[str, Any], private_key_pem: bytes, password: bytes | None = None
) -> dict[str, Any]:
    """A DSSE envelope of the statement, signed with the private key (EC, Ed25519 or RSA)."""
    private_key = serialization.load_pem_private_key(private_key_pem, password=password)
    signer = CryptoSigner(private_key)
    payload = json.dumps(statement, separators=(",", ":"), sort_keys=True).encode()
    envelope = dsse.Envelope(payload, statements.PAYLOAD_TYPE, {})
    envelope.sign(signer)
    result: dict[str, Any] = envelope.to_dict()
    return result


def read(data: bytes) -> list[dsse.Envelope]:
    """The envelopes a provenance file holds: one JSON document, or one per line."""
    if len(data) > MAX_FILE_BYTES:
        raise EnvelopeError(f"the file is larger than {MAX_FILE_BYTES} bytes")
    try:
        documents: list[Any] = [json.loads(data)]
    except ValueError:
        try:
            documents = [json.loads(line) for line in data.splitlines() if line.strip()]
        except ValueError as error:
            raise EnvelopeError(f"neither JSON nor JSON lines: {error}") from error
    envelopes = []
    for index, document in enumerate(documents):
        try:
            envelopes.append(dsse.Envelope.from_dict(dict(document)))
        except (KeyError, TypeError, ValueError) as error:
            raise EnvelopeError(f"document {index + 1} is not a DSSE envelope: {error}") from error
    if not envelopes:
        raise EnvelopeError("the file holds no envelope")
    return envelopes


def _keys(trusted: Sequence[TrustedKey]) -> Iterator[tuple[TrustedKey, SSlibKey]]:
    for key in trusted:
        try:
            public = serialization.load_pem_public_key(key.public_key_pem)
            yield key, SSlibKey.from_crypto(public)
        except (ValueError, TypeError):
            continue  # an unreadable or unsupported key verifies nothing


def verify(envelopes: Sequence[dsse.Envelope], trusted: Sequence[TrustedKey]) -> list[Verified]:
    """The envelopes of the in-toto payload type that a trusted key signed, with its name."""
    keys = list(_keys(trusted))
    found = []
    for envelope in envelopes:
        if envelope.payload_type != statements.PAYLOAD_TYPE:
            continue
        signed = envelope.pae()
        builder = next(
            (
                trusted_key
                for signature in envelope.signatures.values()
                for trusted_key, key in keys
                if _verifies(key, signature, signed)
            ),
            None,
        )
        if builder is not None:
            found.append(
                Verified(
                    builder=builder.name,
                    payload=envelope.payload,
                    key=keyids.fingerprint(builder.public_key_pem),
                )
            )
    return found


def _verifies(key: SSlibKey, signature: Signature, data: bytes) -> bool:
    try:
        key.verify_signature(Signature(key.keyid, signature.signature), data)
    except UnverifiedSignatureError:
        return False
    return True
