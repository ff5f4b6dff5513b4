"""Key fingerprints: which key verified, so that a policy trusts a builder's key, not its name.

Two policies can each name a builder ``pipeline`` with different keys (a namespaced policy
next to the cluster baseline). The operator verifies against all of them and records the
fingerprint of the key that verified; each policy then accepts the statement only when
that fingerprint is its own builder's key. Pure (cryptography parses PEM in memory).
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization

#: Never the fingerprint of any key: what an unreadable key is given, so it matches nothing.
UNREADABLE = "unreadable"


def fingerprint(public_key_pem: bytes) -> str:
    """sha256:<hex> of the key's DER SubjectPublicKeyInfo; UNREADABLE when it is not a key."""
    try:
        key = serialization.load_pem_public_key(public_key_pem)
    except (ValueError, TypeError):
        return UNREADABLE
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()
