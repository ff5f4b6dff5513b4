"""The webhook's TLS material when cert-manager is absent: a CA, a serving certificate, the
Secret that holds them and the caBundle that trusts them. No I/O (``now`` is an argument).

Rotation issues a new CA and a new serving certificate together and never keeps a CA
private key anywhere: the caBundle carries the new CA *and* the previous one until the
next rotation, so API servers trust the webhook whichever certificate its pods still
serve while they reload.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_VALIDITY = datetime.timedelta(days=365)
#: Rotate when less than this fraction of the validity is left.
RENEW_FRACTION = 1 / 3
CA_KEY = "ca.crt"
CERT_KEY = "tls.crt"
PRIVATE_KEY = "tls.key"
_BACKDATE = datetime.timedelta(minutes=5)


@dataclasses.dataclass(frozen=True)
class Bundle:
    """PEM texts: the serving certificate and key, and the CA bundle that trusts it."""

    certificate: str
    private_key: str
    ca_bundle: str


def dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server uses to reach the webhook Service."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "modelshield"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def issue(
    service: str,
    namespace: str,
    now: datetime.datetime,
    *,
    validity: datetime.timedelta = DEFAULT_VALIDITY,
    previous_ca: str = "",
) -> Bundle:
    """A new CA and a serving certificate for the Service; previous_ca stays trusted."""
    not_before = now - _BACKDATE
    not_after = now + validity
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"modelshield-webhook-ca-{int(now.timestamp())}")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        # The CA outlives its only leaf a little so that the leaf never outlives it.
        .not_valid_after(not_after + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
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
    key = ec.generate_private_key(ec.SECP256R1())
    names = dns_names(service, namespace)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(names[2]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    return Bundle(
        certificate=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        private_key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        ca_bundle=ca_pem + _first_certificate(previous_ca),
    )


def _first_certificate(pem: str) -> str:
    """The first certificate of a PEM bundle (the CA that was current), or ''."""
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode()) if pem.strip() else []
    except ValueError:
        return ""
    return certificates[0].public_bytes(serialization.Encoding.PEM).decode() if certificates else ""


def from_secret(secret: Mapping[str, Any] | None) -> Bundle | None:
    """The bundle a Secret holds, or None when it holds none that can be read."""
    data = (secret or {}).get("data") or {}
    try:
        texts = {
            key: base64.b64decode(data[key]).decode() for key in (CERT_KEY, PRIVATE_KEY, CA_KEY)
        }
    except (KeyError, ValueError):
        return None
    return Bundle(
        certificate=texts[CERT_KEY], private_key=texts[PRIVATE_KEY], ca_bundle=texts[CA_KEY]
    )


def rotation_due(
    bundle: Bundle | None, service: str, namespace: str, now: datetime.datetime
) -> str | None:
    """Why the bundle must be replaced now, or None when it is good."""
    if bundle is None:
        return "no certificate yet"
    try:
        certificate = x509.load_pem_x509_certificate(bundle.certificate.encode())
        cas = x509.load_pem_x509_certificates(bundle.ca_bundle.encode())
    except ValueError:
        return "the certificate cannot be read"
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if now >= end - (end - start) * RENEW_FRACTION:
        return f"the certificate expires at {end.isoformat()}"
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "the certificate has no DNS names"
    if set(names.get_values_for_type(x509.DNSName)) != set(dns_names(service, namespace)):
        return "the certificate names another Service"
    if not any(ca.subject == certificate.issuer for ca in cas):
        return "the CA bundle does not hold the certificate's issuer"
    return None


def secret_manifest(
    name: str, namespace: str, bundle: Bundle, labels: Mapping[str, str]
) -> dict[str, Any]:
    """The kubernetes.io/tls Secret the webhook pods mount."""

    def encoded(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "data": {
            CERT_KEY: encoded(bundle.certificate),
            PRIVATE_KEY: encoded(bundle.private_key),
            CA_KEY: encoded(bundle.ca_bundle),
        },
    }


def with_ca_bundle(
    webhooks: Sequence[Mapping[str, Any]], ca_bundle: str
) -> list[dict[str, Any]] | None:
    """The webhook entries with clientConfig.caBundle set, or None when all already have it."""
    wanted = base64.b64encode(ca_bundle.encode()).decode()
    if all((w.get("clientConfig") or {}).get("caBundle") == wanted for w in webhooks):
        return None
    return [
        {**w, "clientConfig": {**(w.get("clientConfig") or {}), "caBundle": wanted}}
        for w in webhooks
    ]
