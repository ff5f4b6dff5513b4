"""Signing material made by the tests: EC key pairs and a small certificate authority."""

from __future__ import annotations

import datetime
import pathlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class KeyPair:
    """A private key file and the public key's PEM."""

    private_path: pathlib.Path
    public_pem: bytes


def key_pair(directory: pathlib.Path, name: str) -> KeyPair:
    """A P-256 key pair written under directory."""
    directory.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    path = directory / f"{name}.key"
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (directory / f"{name}.pub").write_bytes(public)
    return KeyPair(path, public)


@dataclass(frozen=True)
class CertificateMaterial:
    """A leaf key and certificate, and the root that issued it (all PEM files)."""

    key_path: pathlib.Path
    certificate_path: pathlib.Path
    root_path: pathlib.Path
    #: The intermediate CA between root and leaf, when one was asked for.
    intermediate_path: pathlib.Path | None = None


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def certificate_material(
    directory: pathlib.Path,
    *,
    leaf_days: tuple[int, int] = (-1, 30),
    intermediate_days: tuple[int, int] | None = None,
    leaf_name: str = "model release signer",
) -> CertificateMaterial:
    """A root CA and a code-signing leaf valid from now+leaf_days[0] to now+leaf_days[1].

    With ``intermediate_days`` an intermediate CA valid for those days issues the leaf.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(_name("modelshield test root"))
        .issuer_name(_name("modelshield test root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=400))
        .not_valid_after(now + datetime.timedelta(days=400))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(root_key, hashes.SHA256())
    )
    issuer, issuer_key, intermediate = root, root_key, None
    if intermediate_days is not None:
        issuer_key = ec.generate_private_key(ec.SECP256R1())
        intermediate = (
            x509.CertificateBuilder()
            .subject_name(_name("modelshield test intermediate"))
            .issuer_name(root.subject)
            .public_key(issuer_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=intermediate_days[0]))
            .not_valid_after(now + datetime.timedelta(days=intermediate_days[1]))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(root_key, hashes.SHA256())
        )
        issuer = intermediate
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(leaf_name))
        .issuer_name(issuer.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=leaf_days[0]))
        .not_valid_after(now + datetime.timedelta(days=leaf_days[1]))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    key_path = directory / "leaf.key"
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    certificate_path = directory / "leaf.pem"
    certificate_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    root_path = directory / "root.pem"
    root_path.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    intermediate_path = None
    if intermediate is not None:
        intermediate_path = directory / "intermediate.pem"
        intermediate_path.write_bytes(intermediate.public_bytes(serialization.Encoding.PEM))
    return CertificateMaterial(key_path, certificate_path, root_path, intermediate_path)
