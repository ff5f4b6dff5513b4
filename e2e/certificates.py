"""Key material for a throwaway control plane, made with `cryptography`.

ECDSA P-256 keys everywhere: Kubernetes accepts them for serving certificates,
cluster signing and service-account tokens (ES256), and they are generated in
microseconds, where RSA keys would cost a noticeable part of the start time.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough for any test session, short enough to be obviously throwaway.
CERTIFICATE_LIFETIME = datetime.timedelta(days=2)
# Clocks of processes on one machine agree, but a certificate "not valid yet"
# by a second is a confusing failure; back-date by a little.
CLOCK_SKEW_ALLOWANCE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class ControlPlaneCertificates:
    """Paths of the PEM files the control plane components are started with."""

    ca_certificate: Path
    ca_private_key: Path
    serving_certificate: Path
    serving_private_key: Path
    service_account_private_key: Path
    service_account_public_key: Path


def _private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    path.chmod(0o600)


def generate_certificates(
    directory: Path, service_ip: ipaddress.IPv4Address
) -> ControlPlaneCertificates:
    """Creates a CA, an API server serving certificate signed by it (valid for
    loopback, the in-cluster names and SERVICE_IP, the `kubernetes` Service's
    address) and a service-account signing key pair, all under DIRECTORY."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before = now - CLOCK_SKEW_ALLOWANCE
    not_after = now + CERTIFICATE_LIFETIME

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelshield-e2e-ca")])
    ca_certificate = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    serving_key = ec.generate_private_key(ec.SECP256R1())
    dns_names = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    serving_certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name) for name in dns_names]
                + [
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                    x509.IPAddress(service_ip),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    service_account_key = ec.generate_private_key(ec.SECP256R1())

    paths = ControlPlaneCertificates(
        ca_certificate=directory / "ca.crt",
        ca_private_key=directory / "ca.key",
        serving_certificate=directory / "apiserver.crt",
        serving_private_key=directory / "apiserver.key",
        service_account_private_key=directory / "service-account.key",
        service_account_public_key=directory / "service-account.pub",
    )
    paths.ca_certificate.write_bytes(ca_certificate.public_bytes(serialization.Encoding.PEM))
    _write_private(paths.ca_private_key, _private_key_pem(ca_key))
    paths.serving_certificate.write_bytes(
        serving_certificate.public_bytes(serialization.Encoding.PEM)
    )
    _write_private(paths.serving_private_key, _private_key_pem(serving_key))
    _write_private(paths.service_account_private_key, _private_key_pem(service_account_key))
    paths.service_account_public_key.write_bytes(
        service_account_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return paths
