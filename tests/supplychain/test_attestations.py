"""DSSE envelopes, in-toto statements, signed times and vulnerability summaries."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import pytest

from modelshield.api.v1alpha1.common import Severity
from modelshield.supplychain.images import attestations, bundles

DIGEST = "sha256:" + "ef" * 32


def envelope(statement: dict[str, Any], *, urlsafe: bool = False) -> dict[str, Any]:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return {
        "payloadType": attestations.IN_TOTO_PAYLOAD,
        "payload": encode(json.dumps(statement).encode()).decode().rstrip("=" if urlsafe else ""),
        "signatures": [{"keyid": "", "sig": base64.b64encode(b"signature").decode()}],
    }


def statement(predicate: Any, predicate_type: str = attestations.COSIGN_VULN) -> dict[str, Any]:
    return {
        "_type": "https://in-toto.io/Statement/v0.1",
        "subject": [{"name": "r/ml/server", "digest": {"sha256": DIGEST[7:]}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def parsed(
    predicate: Any, predicate_type: str = attestations.COSIGN_VULN
) -> attestations.Statement:
    raw = json.dumps(envelope(statement(predicate, predicate_type))).encode()
    return attestations.parse_statement(attestations.parse_envelope(raw))


def test_pae_matches_the_dsse_specification() -> None:
    # The DSSE spec's own example.
    assert attestations.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


@pytest.mark.parametrize("urlsafe", [False, True])
def test_statement_subjects(urlsafe: bool) -> None:
    raw = json.dumps(envelope(statement({}), urlsafe=urlsafe)).encode()
    found = attestations.parse_statement(attestations.parse_envelope(raw))
    assert found.predicate_type == attestations.COSIGN_VULN
    assert attestations.names_digest(found, DIGEST)
    assert not attestations.names_digest(found, "sha256:" + "00" * 32)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"{", "not JSON"),
        (b"[]", "not a JSON object"),
        (
            json.dumps({"payloadType": "x", "payload": "", "signatures": []}).encode(),
            "no signatures",
        ),
        (json.dumps({"payload": "", "signatures": [{}]}).encode(), "no payloadType"),
        (
            json.dumps(
                {"payloadType": "x", "payload": "!!", "signatures": [{"sig": "AA=="}]}
            ).encode(),
            "not base64",
        ),
    ],
)
def test_malformed_envelopes(document: bytes, reason: str) -> None:
    with pytest.raises(attestations.MalformedError, match=reason):
        attestations.parse_envelope(document)


def test_non_in_toto_payload_is_refused() -> None:
    with pytest.raises(attestations.MalformedError, match="not in-toto"):
        attestations.parse_statement(attestations.Envelope("text/plain", b"{}", ()))


@pytest.mark.parametrize(
    ("predicate", "expected"),
    [
        (
            {"metadata": {"scanFinishedOn": "2026-11-20T10:05:00.123456789Z"}},
            "2026-11-20T10:05:00.123456+00:00",
        ),
        ({"Timestamp": "2026-11-20T10:05:00Z", "Data": "x"}, "2026-11-20T10:05:00+00:00"),
        (
            {"runDetails": {"metadata": {"finishedOn": "2026-11-20T12:05:00+02:00"}}},
            "2026-11-20T10:05:00+00:00",
        ),
        (
            {"runs": [{"invocations": [{"endTimeUtc": "2026-11-20T10:05:00Z"}]}]},
            "2026-11-20T10:05:00+00:00",
        ),
    ],
)
def test_issued_at_from_the_signed_predicate(predicate: dict[str, Any], expected: str) -> None:
    found = attestations.issued_at(parsed(predicate))
    assert found == datetime.datetime.fromisoformat(expected)


def test_issued_at_unknown() -> None:
    assert attestations.issued_at(parsed({"metadata": {"scanFinishedOn": "yesterday"}})) is None


def _counts(critical: int = 0, high: int = 0, medium: int = 0, low: int = 0) -> dict[Severity, int]:
    return {
        Severity.CRITICAL: critical,
        Severity.HIGH: high,
        Severity.MEDIUM: medium,
        Severity.LOW: low,
    }


@pytest.mark.parametrize(
    ("predicate", "expected"),
    [
        (  # cosign vuln with a Trivy report
            {
                "scanner": {
                    "result": {
                        "SchemaVersion": 2,
                        "Results": [
                            {
                                "Vulnerabilities": [
                                    {"Severity": "CRITICAL"},
                                    {"Severity": "HIGH"},
                                    {"Severity": "UNKNOWN"},
                                ]
                            },
                            {"Target": "clean"},
                        ],
                    }
                }
            },
            _counts(critical=1, high=1),
        ),
        ({"scanner": {"result": {"SchemaVersion": 2}}}, _counts()),  # Trivy, nothing found
        (  # cosign vuln with a Grype report
            {
                "scanner": {
                    "result": {
                        "matches": [
                            {"vulnerability": {"severity": "Medium"}},
                            {"vulnerability": {"severity": "Negligible"}},
                        ]
                    }
                }
            },
            _counts(medium=1, low=1),
        ),
        (  # the spec's plural form
            {"scanners": [{"result": {"summary": {"CRITICAL": 2, "low": 3, "unknown": 9}}}]},
            _counts(critical=2, low=3),
        ),
        (  # CycloneDX: the worst rating of each vulnerability
            {
                "bomFormat": "CycloneDX",
                "vulnerabilities": [
                    {"ratings": [{"severity": "low"}, {"severity": "critical"}]},
                    {"ratings": []},
                ],
            },
            _counts(critical=1),
        ),
        (  # SARIF: security-severity scores, else the level
            {
                "runs": [
                    {
                        "tool": {
                            "driver": {
                                "rules": [{"id": "R1", "properties": {"security-severity": "9.8"}}]
                            }
                        },
                        "results": [
                            {"ruleId": "R1"},
                            {"ruleId": "R2", "level": "warning"},
                            {"ruleId": "R3", "properties": {"security-severity": "7.1"}},
                        ],
                    }
                ]
            },
            _counts(critical=1, high=1, medium=1),
        ),
    ],
)
def test_vulnerability_summaries(predicate: dict[str, Any], expected: dict[Severity, int]) -> None:
    assert attestations.vulnerabilities(parsed(predicate)) == expected


@pytest.mark.parametrize(
    "predicate", [{}, {"scanner": {"result": {"something": "else"}}}, {"scanner": {"result": []}}]
)
def test_unreadable_scan_is_not_a_clean_scan(predicate: dict[str, Any]) -> None:
    assert attestations.vulnerabilities(parsed(predicate)) is None


@pytest.mark.parametrize(
    ("value", "severity"),
    [
        ("Critical", Severity.CRITICAL),
        ("important", Severity.HIGH),
        ("MODERATE", Severity.MEDIUM),
        (9.0, Severity.CRITICAL),
        ("6.9", Severity.MEDIUM),
        (0.1, Severity.LOW),
        (0, None),
        ("none", None),
        (True, None),
    ],
)
def test_severity_words_and_scores(value: Any, severity: Severity | None) -> None:
    assert attestations.severity_of(value) == severity


def test_bundle_parsing() -> None:
    document = {
        "mediaType": bundles.BUNDLE_V03,
        "verificationMaterial": {"publicKey": {"hint": "abc"}},
        "dsseEnvelope": envelope(statement({})),
    }
    bundle = bundles.parse(json.dumps(document).encode())
    assert bundle.envelope is not None
    assert not bundle.has_certificate
    assert bundle.public_key_hint == "abc"
    signed = {
        "mediaType": bundles.BUNDLE_V03,
        "verificationMaterial": {"certificate": {"rawBytes": "AA=="}},
        "messageSignature": {
            "messageDigest": {
                "algorithm": "SHA2_256",
                "digest": base64.b64encode(bytes.fromhex(DIGEST[7:])).decode(),
            },
            "signature": "AA==",
        },
    }
    message = bundles.parse(json.dumps(signed).encode())
    assert message.has_certificate
    assert message.message_digest == DIGEST
    assert message.envelope is None
    for broken in (
        b"[]",
        json.dumps({"mediaType": "other"}).encode(),
        json.dumps({"mediaType": bundles.BUNDLE_V03}).encode(),
    ):
        with pytest.raises(attestations.MalformedError):
            bundles.parse(broken)


def test_bundle_descriptors_and_layers() -> None:
    assert bundles.is_bundle_descriptor({"artifactType": bundles.BUNDLE_V03})
    assert bundles.is_bundle_descriptor(
        {"artifactType": bundles.EMPTY_CONFIG}
    )  # cosign 2.x fallback index
    assert not bundles.is_bundle_descriptor({"artifactType": "application/spdx+json"})
    manifest = {
        "layers": [{"mediaType": bundles.BUNDLE_V03, "digest": DIGEST, "size": 3}],
        "subject": {"digest": DIGEST},
    }
    assert bundles.bundle_layer(manifest) == (DIGEST, 3)
    assert bundles.subject_digest(manifest) == DIGEST
    assert (
        bundles.bundle_layer({"layers": [{"mediaType": "x", "digest": DIGEST, "size": 1}]}) is None
    )
