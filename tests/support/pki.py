"""A throwaway CA and serving certificates for the webhook's HTTPS tests, made with `cryptography`."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import pathlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclasses.dataclass(frozen=True)
class Authority:
    """A CA that signs serving certificates."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> bytes:
        """The CA certificate in PEM (what goes into a caBundle)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def create(cls, name: str = "modelshield-test-ca") -> Authority:
        """A fresh self-signed CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    def issue(self, common_name: str, addresses: Sequence[str] = ()) -> tuple[bytes, bytes]:
        """A serving certificate for localhost, 127.0.0.1 and these further IP addresses:
        (certificate PEM, key PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                        *(
                            x509.IPAddress(ipaddress.ip_address(a))
                            for a in addresses
                            if a != "127.0.0.1"
                        ),
                    ]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def write_serving_pair(
    authority: Authority,
    directory: pathlib.Path,
    common_name: str,
    addresses: Sequence[str] = (),
) -> tuple[pathlib.Path, pathlib.Path]:
    """Issue a serving certificate and write it as tls.crt and tls.key under directory."""
    certificate, key = authority.issue(common_name, addresses)
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(certificate)
    key_file.write_bytes(key)
    key_file.chmod(0o600)
    return cert_file, key_file


def common_name_of(der: bytes) -> str:
    """The subject CN of a DER certificate (what the server presented)."""
    certificate = x509.load_der_x509_certificate(der)
    value = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return value if isinstance(value, str) else value.decode()
