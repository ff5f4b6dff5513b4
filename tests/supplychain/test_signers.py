"""Policy signers turned into verifiers, over real keys and signatures from `cryptography`."""

from __future__ import annotations

from typing import Any

import pytest
from Crypto.Hash import SHA512
from Crypto.Signature import eddsa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa

from modelshield.api.v1alpha1 import policies
from modelshield.supplychain.images import signers

DATA = b"payload the signer signed"


def pem(private: Any) -> str:
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return str(public.decode())


def ecdsa(curve: ec.EllipticCurve, algorithm: hashes.HashAlgorithm) -> tuple[str, bytes]:
    key = ec.generate_private_key(curve)
    return pem(key), key.sign(DATA, ec.ECDSA(algorithm))


def rsa_signed(scheme: Any) -> tuple[str, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return pem(key), key.sign(DATA, scheme, hashes.SHA256())


def ed25519_signed(prehashed: bool) -> tuple[str, bytes]:
    key = ed25519.Ed25519PrivateKey.generate()
    if not prehashed:
        return pem(key), key.sign(DATA)
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    signer = eddsa.new(eddsa.import_private_key(raw), "rfc8032")
    return pem(key), signer.sign(SHA512.new(DATA))


CASES = {
    "ecdsa-p256": lambda: ecdsa(ec.SECP256R1(), hashes.SHA256()),
    "ecdsa-p384-sha384": lambda: ecdsa(ec.SECP384R1(), hashes.SHA384()),
    "ecdsa-p384-sha256": lambda: ecdsa(ec.SECP384R1(), hashes.SHA256()),
    "rsa-pkcs1": lambda: rsa_signed(padding.PKCS1v15()),
    "rsa-pss": lambda: rsa_signed(padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)),
    "ed25519": lambda: ed25519_signed(False),
    "ed25519ph": lambda: ed25519_signed(True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_key_signatures(case: str) -> None:
    public, signature = CASES[case]()
    signer = signers.load_public_key("k", public)
    assert signer.verify(signature, DATA)
    assert not signer.verify(signature, DATA + b"!")
    assert not signer.verify(signature[:-1] + bytes([signature[-1] ^ 1]), DATA)
    other, _ = CASES[case]()
    assert not signers.load_public_key("o", other).verify(signature, DATA)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "not a PEM public key"),
        # A weak key on purpose: the verifier must refuse it.
        (pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "under 2048"),  # noqa: S505
        (pem(ec.generate_private_key(ec.SECP256K1())), "not supported"),
        (pem(dsa.generate_private_key(2048)), "not supported"),
    ],
)
def test_unusable_keys(text: str, reason: str) -> None:
    with pytest.raises(signers.SignerConfigurationError, match=reason):
        signers.load_public_key("k", text)


def test_compile_with_secret_refs_and_problems() -> None:
    good = pem(ec.generate_private_key(ec.SECP256R1()))
    entries = [
        policies.Signer.model_validate({"name": "inline", "publicKey": good}),
        policies.Signer.model_validate(
            {"name": "from-secret", "secretRef": {"name": "keys", "key": "cosign.pub"}}
        ),
        policies.Signer.model_validate(
            {"name": "missing", "secretRef": {"name": "keys", "key": "gone.pub"}}
        ),
        policies.Signer.model_validate(
            {
                "name": "ci",
                "keyless": {
                    "issuer": "https://token.example.com",
                    "subjectRegExp": "https://ci/.+",
                },
            }
        ),
    ]
    compiled, problems = signers.compile_signers(
        entries, secrets={("ml", "keys", "cosign.pub"): good}, namespace="ml"
    )
    assert [s.name for s in compiled] == ["inline", "from-secret", "ci"]
    assert len(problems) == 1
    assert "gone.pub" in problems[0]
    by_callback, _ = signers.compile_signers(
        entries[1:2], secrets=lambda ns, name, key: good, namespace="ml"
    )
    assert isinstance(by_callback[0], signers.KeySigner)
