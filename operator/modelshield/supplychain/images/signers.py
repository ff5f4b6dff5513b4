"""Policy signers (``policies.Signer``) turned into verifiers, on ``cryptography`` and ``sigstore``.

A key signer checks a raw signature over bytes with its public key: ECDSA P-256
(SHA-256) or P-384 (SHA-384, and SHA-256 as cosign's default), Ed25519, RSA
(PKCS#1 v1.5 or PSS, SHA-256); Ed25519 both pure and prehashed (Ed25519ph, what
cosign signs with), the latter through pycryptodome. A keyless signer checks a sigstore bundle with
sigstore-python's ``Verifier`` against the configured trust root (certificate chain,
SCT, transparency-log inclusion proof and signed entry timestamp, all offline) and the
certificate's OIDC issuer and identity.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from Crypto.Hash import SHA512
from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from modelshield.api.v1alpha1 import policies

#: Looks a Secret key up: (namespace, name, key) -> its value, or None when missing.
SecretResolver = Callable[[str, str, str], str | None]
SecretSource = SecretResolver | Mapping[tuple[str, str, str], str]

_OIDC_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_SIGSTORE_OTHERNAME = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


class SignerConfigurationError(ValueError):
    """A policy signer cannot be used (bad PEM, unsupported key, missing secret)."""


class IdentityMismatchError(ValueError):
    """A keyless certificate names another issuer or identity than the signer's."""


class BundleVerificationError(ValueError):
    """A keyless bundle does not verify (chain, SCT, log proof or signature)."""


@dataclasses.dataclass(frozen=True)
class KeySigner:
    """A trusted public key."""

    name: str
    public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether signature is this key's signature over data."""
        key = self.public_key
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                return _verify_ed25519(key, signature, data)
            if isinstance(key, ec.EllipticCurvePublicKey):
                return _verify_ecdsa(key, signature, data)
            return _verify_rsa(key, signature, data)
        except (InvalidSignature, ValueError, UnsupportedAlgorithm):
            return False


def _verify_ecdsa(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    # cosign signs with SHA-256 whatever the curve unless told otherwise; sigstore-go's
    # defaults pick the curve's own hash. Either is a sound signature by this key.
    by_curve: dict[str, list[hashes.HashAlgorithm]] = {
        "secp256r1": [hashes.SHA256()],
        "secp384r1": [hashes.SHA384(), hashes.SHA256()],
        "secp521r1": [hashes.SHA512(), hashes.SHA256()],
    }
    for algorithm in by_curve.get(key.curve.name, [hashes.SHA256()]):
        try:
            key.verify(signature, data, ec.ECDSA(algorithm))
            return True
        except InvalidSignature:
            continue
    return False


def _verify_ed25519(key: ed25519.Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
        return True
    except InvalidSignature:
        pass
    # cosign signs with Ed25519ph (RFC 8032 prehash: SHA-512 of the message), which
    # `cryptography` does not offer; pycryptodome does.
    verifier = eddsa.new(_pycryptodome_key(key.public_bytes_raw()), "rfc8032")
    try:
        verifier.verify(SHA512.new(data), signature)
        return True
    except ValueError:
        return False


@functools.lru_cache(maxsize=256)
def _pycryptodome_key(raw: bytes) -> ECC.EccKey:
    return eddsa.import_public_key(raw)


def _verify_rsa(key: rsa.RSAPublicKey, signature: bytes, data: bytes) -> bool:
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    for scheme in (padding.PKCS1v15(), pss):
        try:
            key.verify(signature, data, scheme, hashes.SHA256())
            return True
        except InvalidSignature:
            continue
    return False


@dataclasses.dataclass(frozen=True)
class KeylessSigner:
    """A sigstore keyless identity: OIDC issuer plus exact subject or subject regexp."""

    name: str
    issuer: str
    subject: str | None
    subject_pattern: re.Pattern[str] | None

    def identities_match(self, certificate: x509.Certificate) -> tuple[bool, str]:
        """Whether the certificate carries this issuer and identity; the reason when not."""
        issuers = _extension_texts(certificate, (_OIDC_ISSUER_V1, _OIDC_ISSUER_V2))
        if self.issuer not in issuers:
            return False, f"certificate issuer {sorted(issuers) or 'none'} is not {self.issuer}"
        identities = certificate_identities(certificate)
        for identity in identities:
            if self.subject is not None and identity == self.subject:
                return True, ""
            if self.subject_pattern is not None and self.subject_pattern.fullmatch(identity):
                return True, ""
        wanted = self.subject if self.subject is not None else f"/{self.subject_pattern}/"
        return False, f"certificate identity {sorted(identities) or 'none'} does not match {wanted}"

    def verify_bundle(self, bundle_json: bytes, trust_root: Any) -> tuple[str, bytes]:
        """Verify a DSSE sigstore bundle offline; returns (payload type, payload).

        Raises ``IdentityMismatchError`` when the certificate is someone else's and
        ``BundleVerificationError`` when the bundle does not verify against the trust root.
        """
        from sigstore import errors as sigstore_errors
        from sigstore import models as sigstore_models
        from sigstore.verify import verifier as sigstore_verifier

        try:
            bundle = sigstore_models.Bundle.from_json(bundle_json)
        except (sigstore_errors.Error, ValueError) as error:
            raise BundleVerificationError(
                f"not a keyless bundle sigstore can read: {error}"
            ) from error
        matches, reason = self.identities_match(bundle.signing_certificate)
        if not matches:
            raise IdentityMismatchError(reason)
        if trust_root is None:
            raise BundleVerificationError(
                "no sigstore trust root is configured for keyless signers"
            )
        verifier = sigstore_verifier.Verifier(trusted_root=trust_root)
        try:
            return verifier.verify_dsse(bundle, _CertificatePolicy(self))
        except (sigstore_errors.Error, ValueError) as error:
            raise BundleVerificationError(f"sigstore verification failed: {error}") from error


class _CertificatePolicy:
    """sigstore's VerificationPolicy protocol over our identity check (exact or regexp)."""

    def __init__(self, signer: KeylessSigner) -> None:
        self._signer = signer

    def verify(self, cert: x509.Certificate) -> None:
        from sigstore import errors as sigstore_errors

        matches, reason = self._signer.identities_match(cert)
        if not matches:
            raise sigstore_errors.VerificationError(reason)


def _extension_texts(
    certificate: x509.Certificate, oids: Sequence[x509.ObjectIdentifier]
) -> set[str]:
    texts = set()
    for extension in certificate.extensions:
        if extension.oid in oids and isinstance(extension.value, x509.UnrecognizedExtension):
            raw = extension.value.value
            # V1 is the raw string; V2 is a DER UTF8String (tag 0x0c, short length).
            if len(raw) >= 2 and raw[0] == 0x0C and raw[1] == len(raw) - 2:
                raw = raw[2:]
            texts.add(raw.decode("utf-8", "replace"))
    return texts


def certificate_identities(certificate: x509.Certificate) -> set[str]:
    """The SAN identities sigstore recognizes: e-mails, URIs and its own other-name."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    identities = set(san.get_values_for_type(x509.RFC822Name))
    identities.update(san.get_values_for_type(x509.UniformResourceIdentifier))
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == _SIGSTORE_OTHERNAME and len(other.value) > 2:
            identities.add(other.value[2:].decode("utf-8", "replace"))
    return identities


TrustedSigner = KeySigner | KeylessSigner


def load_public_key(name: str, pem: str) -> KeySigner:
    """A KeySigner from PEM, refusing key types cosign does not sign with."""
    try:
        key = serialization.load_pem_public_key(pem.strip().encode())
    except (ValueError, UnsupportedAlgorithm) as error:
        raise SignerConfigurationError(f"signer {name}: not a PEM public key ({error})") from error
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise SignerConfigurationError(f"signer {name}: curve {key.curve.name} not supported")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise SignerConfigurationError(f"signer {name}: RSA keys under 2048 bits are refused")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise SignerConfigurationError(f"signer {name}: {type(key).__name__} keys not supported")
    return KeySigner(name=name, public_key=key)


def _secret_value(source: SecretSource | None, namespace: str, name: str, key: str) -> str | None:
    if source is None:
        return None
    if callable(source):
        return source(namespace, name, key)
    return source.get((namespace, name, key))


def compile_signers(
    signers: Sequence[policies.Signer],
    *,
    secrets: SecretSource | None = None,
    namespace: str = "",
) -> tuple[list[TrustedSigner], list[str]]:
    """Verifiers for the policy's signers, and a problem line for each signer that is unusable.

    An unusable signer never matches; the others still do (key rotation keeps working
    while one entry is broken), and the problems are reported with the result.
    """
    compiled: list[TrustedSigner] = []
    problems: list[str] = []
    for signer in signers:
        try:
            if signer.public_key is not None:
                compiled.append(load_public_key(signer.name, signer.public_key))
            elif signer.secret_ref is not None:
                ref = signer.secret_ref
                value = _secret_value(secrets, namespace, ref.name, ref.key)
                if value is None:
                    raise SignerConfigurationError(
                        f"signer {signer.name}: Secret {namespace}/{ref.name} key {ref.key} not found"
                    )
                compiled.append(load_public_key(signer.name, value))
            elif signer.keyless is not None:
                identity = signer.keyless
                pattern = re.compile(identity.subject_reg_exp) if identity.subject_reg_exp else None
                compiled.append(
                    KeylessSigner(signer.name, identity.issuer, identity.subject, pattern)
                )
        except SignerConfigurationError as error:
            problems.append(str(error))
    return compiled, problems
