"""A private sigstore trust root for offline keyless tests: our own Fulcio-style CA, CT log and Rekor log.

Nothing here calls a public service. ``TestTrustRoot`` holds three keys (a CA that issues
short-lived code-signing certificates carrying the OIDC issuer extension, a CT log that
embeds an SCT in each, a transparency log that signs a checkpoint and an inclusion
promise for a one-entry tree) and writes the ``trusted_root.json`` that sigstore-python's
``Verifier`` reads. ``keyless_bundle`` then produces what ``cosign --new-bundle-format``
would attach in keyless mode: a v0.3 bundle whose DSSE envelope is signed by the
certificate's key and recorded in the log as a ``dsse/0.0.1`` entry. All signatures are
real (``cryptography``); sigstore-python checks every one of them.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import pathlib
import struct
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelshield.supplychain.images import attestations, bundles

OIDC_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_LIST = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _der(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_id(key: ec.EllipticCurvePrivateKey) -> bytes:
    return hashlib.sha256(_der(key)).digest()


def _der_octet_string(content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        header = bytes([length])
    elif length < 0x100:
        header = bytes([0x81, length])
    else:
        header = bytes([0x82]) + length.to_bytes(2, "big")
    return b"\x04" + header + content


class TestTrustRoot:
    """A CA, a CT log and a transparency log, each with its own P-256 key."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "modelshield-test") -> None:
        self.name = name
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        self.log_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} fulcio")])
        self.ca_certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
                x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False
            )
            .sign(self.ca_key, hashes.SHA256())
        )

    def trusted_root(self) -> dict[str, Any]:
        """The trusted_root.json document (sigstore protobuf-specs TrustedRoot, JSON form)."""
        start = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )

        def log(key: ec.EllipticCurvePrivateKey, url: str) -> dict[str, Any]:
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": _b64(_der(key)),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": start},
                },
                "logId": {"keyId": _b64(_key_id(key))},
            }

        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(self.log_key, f"https://rekor.{self.name}.invalid")],
            "certificateAuthorities": [
                {
                    "subject": {"organization": self.name, "commonName": f"{self.name} fulcio"},
                    "uri": f"https://fulcio.{self.name}.invalid",
                    "certChain": {
                        "certificates": [
                            {
                                "rawBytes": _b64(
                                    self.ca_certificate.public_bytes(serialization.Encoding.DER)
                                )
                            }
                        ]
                    },
                    "validFor": {"start": start},
                }
            ],
            "ctlogs": [log(self.ct_key, f"https://ctfe.{self.name}.invalid")],
            "timestampAuthorities": [],
        }

    def write(self, path: pathlib.Path) -> pathlib.Path:
        """Write trusted_root.json to path."""
        path.write_text(json.dumps(self.trusted_root()))
        return path

    def issue(
        self, key: ec.EllipticCurvePrivateKey, identity: str, issuer: str
    ) -> x509.Certificate:
        """A Fulcio-style certificate: 10 minutes, code signing, SAN identity, issuer, embedded SCT."""
        now = datetime.datetime.now(datetime.UTC)
        san = (
            x509.RFC822Name(identity)
            if "@" in identity and "://" not in identity
            else x509.UniformResourceIdentifier(identity)
        )
        utf8 = issuer.encode()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.ca_certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(minutes=10))
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(x509.UnrecognizedExtension(OIDC_ISSUER_V1, utf8), critical=False)
            .add_extension(
                x509.UnrecognizedExtension(OIDC_ISSUER_V2, bytes([0x0C, len(utf8)]) + utf8),
                critical=False,
            )
        )
        # The SCT signs the certificate without its SCT extension (RFC 6962 precertificate),
        # which is exactly the TBS of the certificate built so far.
        precertificate = builder.sign(self.ca_key, hashes.SHA256())
        return builder.add_extension(
            x509.UnrecognizedExtension(
                SCT_LIST, _der_octet_string(self._sct_list(precertificate, now))
            ),
            critical=False,
        ).sign(self.ca_key, hashes.SHA256())

    def _sct_list(self, precertificate: x509.Certificate, now: datetime.datetime) -> bytes:
        milliseconds = int(now.timestamp() * 1000)
        tbs = precertificate.tbs_certificate_bytes
        issuer_key_hash = _key_id(self.ca_key)
        signed_entry = issuer_key_hash + len(tbs).to_bytes(3, "big") + tbs
        # version v1, signature type certificate_timestamp, time, precert_entry, entry, no extensions
        signed = struct.pack("!BBQH", 0, 0, milliseconds, 1) + signed_entry + struct.pack("!H", 0)
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (
            struct.pack("!B", 0)
            + _key_id(self.ct_key)
            + struct.pack("!QH", milliseconds, 0)
            + struct.pack("!BBH", 4, 3, len(signature))
            + signature  # sha256, ecdsa
        )
        item = struct.pack("!H", len(sct)) + sct
        return struct.pack("!H", len(item)) + item

    def log_entry(self, envelope: dict[str, Any], certificate: x509.Certificate) -> dict[str, Any]:
        """A dsse/0.0.1 entry in a one-leaf log: inclusion proof, signed checkpoint and SET."""
        payload = base64.b64decode(envelope["payload"])
        body = json.dumps(
            {
                "apiVersion": "0.0.1",
                "kind": "dsse",
                "spec": {
                    "envelopeHash": {
                        "algorithm": "sha256",
                        "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest(),
                    },
                    "payloadHash": {
                        "algorithm": "sha256",
                        "value": hashlib.sha256(payload).hexdigest(),
                    },
                    "signatures": [
                        {
                            "signature": s["sig"],
                            "verifier": _b64(certificate.public_bytes(serialization.Encoding.PEM)),
                        }
                        for s in envelope["signatures"]
                    ],
                },
            },
            separators=(",", ":"),
        ).encode()
        integrated = int(datetime.datetime.now(datetime.UTC).timestamp())
        log_id = _key_id(self.log_key)
        root = hashlib.sha256(b"\x00" + body).digest()  # a one-leaf tree: the root is the leaf
        note = f"{self.name} log\n1\n{_b64(root)}\n"
        note_signature = self.log_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        checkpoint = f"{note}\n\u2014 {self.name}-log {_b64(log_id[:4] + note_signature)}\n"
        promise = rfc8785.dumps(
            {"body": _b64(body), "integratedTime": integrated, "logID": log_id.hex(), "logIndex": 0}
        )
        return {
            "logIndex": "0",
            "logId": {"keyId": _b64(log_id)},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": str(integrated),
            "inclusionPromise": {
                "signedEntryTimestamp": _b64(self.log_key.sign(promise, ec.ECDSA(hashes.SHA256())))
            },
            "inclusionProof": {
                "logIndex": "0",
                "rootHash": _b64(root),
                "treeSize": "1",
                "hashes": [],
                "checkpoint": {"envelope": checkpoint},
            },
            "canonicalizedBody": _b64(body),
        }

    def keyless_bundle(self, statement: dict[str, Any], identity: str, issuer: str) -> bytes:
        """A v0.3 sigstore bundle: DSSE over the statement, a fresh certificate, one log entry."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = self.issue(key, identity, issuer)
        payload = json.dumps(statement).encode()
        signature = key.sign(
            attestations.pae(attestations.IN_TOTO_PAYLOAD, payload), ec.ECDSA(hashes.SHA256())
        )
        envelope = {
            "payload": _b64(payload),
            "payloadType": attestations.IN_TOTO_PAYLOAD,
            "signatures": [{"sig": _b64(signature)}],
        }
        bundle = {
            "mediaType": bundles.BUNDLE_V03,
            "verificationMaterial": {
                "certificate": {
                    "rawBytes": _b64(certificate.public_bytes(serialization.Encoding.DER))
                },
                "tlogEntries": [self.log_entry(envelope, certificate)],
            },
            "dsseEnvelope": envelope,
        }
        return json.dumps(bundle).encode()


def statement(
    digest: str, predicate_type: str = attestations.COSIGN_SIGN, predicate: Any = None
) -> dict[str, Any]:
    """An in-toto v1 statement about an image digest."""
    document: dict[str, Any] = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": predicate_type,
    }
    if predicate is not None:
        document["predicate"] = predicate
    return document
