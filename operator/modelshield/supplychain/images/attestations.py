"""In-toto statements in DSSE envelopes: parsing, the signed bytes, subjects, times, findings.

Pure functions. The signature itself is checked by ``signers``; what is established
here is read only from the signed payload, never from unsigned annotations.
Vulnerability counts come from cosign's ``vuln`` predicate (its ``scanner.result``
holding a Trivy or Grype report) or from a CycloneDX BOM, a SARIF log, or a plain
``{"summary": {"critical": n, ...}}`` used as the predicate.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

from modelshield.api.v1alpha1.common import Severity

DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO_PAYLOAD = "application/vnd.in-toto+json"
#: cosign writes this predicate type for ``cosign attest --type vuln`` (older releases without https://).
COSIGN_VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"
#: The statement cosign's bundle format signs to say "this image is signed".
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
#: When a signed statement carries no time at all, it is as old as can be: maxAge fails.
UNKNOWN_TIME = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

_MAX_FINDINGS = 1_000_000


class MalformedError(ValueError):
    """The envelope or statement does not have the expected shape."""


@dataclasses.dataclass(frozen=True)
class Envelope:
    """A DSSE envelope; signatures are (keyid, raw signature bytes)."""

    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]

    def signed_bytes(self) -> bytes:
        """The DSSE pre-authentication encoding, the bytes each signature covers."""
        return pae(self.payload_type, self.payload)


@dataclasses.dataclass(frozen=True)
class Statement:
    """The parts of an in-toto statement the verifier uses."""

    predicate_type: str
    subject_digests: tuple[str, ...]
    predicate: Mapping[str, Any]


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def decode_base64(text: Any, what: str) -> bytes:
    """Standard or URL-safe base64 (DSSE allows either), padding optional."""
    if not isinstance(text, str):
        raise MalformedError(f"{what} is not a base64 string")
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as error:
        raise MalformedError(f"{what} is not base64") from error


def envelope_from_mapping(document: Mapping[str, Any]) -> Envelope:
    """An Envelope from its JSON form (as in a ``.att`` layer or a bundle's ``dsseEnvelope``)."""
    payload_type = document.get("payloadType")
    if not isinstance(payload_type, str):
        raise MalformedError("DSSE envelope has no payloadType")
    signatures = document.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise MalformedError("DSSE envelope has no signatures")
    parsed = tuple(
        (str(entry.get("keyid") or ""), decode_base64(entry.get("sig"), "DSSE signature"))
        for entry in signatures
        if isinstance(entry, Mapping)
    )
    return Envelope(payload_type, decode_base64(document.get("payload"), "DSSE payload"), parsed)


def parse_envelope(raw: bytes) -> Envelope:
    """An Envelope from JSON bytes."""
    try:
        document = json.loads(raw)
    except ValueError as error:
        raise MalformedError("DSSE envelope is not JSON") from error
    if not isinstance(document, dict):
        raise MalformedError("DSSE envelope is not a JSON object")
    return envelope_from_mapping(document)


def parse_statement(envelope: Envelope) -> Statement:
    """The in-toto statement an envelope carries (in-toto v0.1 or v1)."""
    if envelope.payload_type != IN_TOTO_PAYLOAD:
        raise MalformedError(f"payload type {envelope.payload_type} is not in-toto")
    try:
        document = json.loads(envelope.payload)
    except ValueError as error:
        raise MalformedError("in-toto statement is not JSON") from error
    if not isinstance(document, dict):
        raise MalformedError("in-toto statement is not a JSON object")
    predicate_type = document.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise MalformedError("in-toto statement has no predicateType")
    digests: list[str] = []
    for subject in document.get("subject") or []:
        digest = subject.get("digest") if isinstance(subject, Mapping) else None
        if isinstance(digest, Mapping):
            digests.extend(
                f"{algorithm}:{value}"
                for algorithm, value in digest.items()
                if isinstance(value, str)
            )
    predicate = document.get("predicate")
    return Statement(
        predicate_type=predicate_type,
        subject_digests=tuple(digests),
        predicate=predicate if isinstance(predicate, Mapping) else {},
    )


def names_digest(statement: Statement, digest: str) -> bool:
    """Whether the statement's subjects include the image digest."""
    return digest in statement.subject_digests


def parse_time(value: Any) -> datetime.datetime | None:
    """An RFC 3339 time (Go's nanosecond fractions and ``Z`` accepted), in UTC."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if "." in text:
        # Python takes at most 6 fraction digits; Go writes up to 9.
        head, _, tail = text.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        text = f"{head}.{tail[: min(digits, 6)]}{tail[digits:]}"
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC)


def _dig(document: Any, *path: str | int) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(document, list) or len(document) <= step:
                return None
        elif not isinstance(document, Mapping):
            return None
        document = document[step] if isinstance(step, int) else document.get(step)
    return document


def issued_at(statement: Statement) -> datetime.datetime | None:
    """When the attested fact was produced, from the signed predicate; None if it says nothing."""
    predicate = statement.predicate
    for path in (
        ("metadata", "scanFinishedOn"),  # cosign vuln
        ("metadata", "scanStartedOn"),
        ("Timestamp",),  # cosign custom
        ("runDetails", "metadata", "finishedOn"),  # SLSA v1
        ("metadata", "buildFinishedOn"),  # SLSA v0.2
        ("metadata", "timestamp"),  # CycloneDX
        ("runs", 0, "invocations", 0, "endTimeUtc"),  # SARIF
        ("timestamp",),
    ):
        found = parse_time(_dig(predicate, *path))
        if found is not None:
            return found
    return None


_SEVERITY_WORDS = {
    "critical": Severity.CRITICAL,
    "high": Severity.HIGH,
    "important": Severity.HIGH,
    "medium": Severity.MEDIUM,
    "moderate": Severity.MEDIUM,
    "low": Severity.LOW,
    "negligible": Severity.LOW,
}


def severity_of(value: Any) -> Severity | None:
    """A finding's severity from a word (any case) or a CVSS-style score."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _SEVERITY_WORDS:
            return _SEVERITY_WORDS[word]
        try:
            value = float(word)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value >= 9.0:
            return Severity.CRITICAL
        if value >= 7.0:
            return Severity.HIGH
        if value >= 4.0:
            return Severity.MEDIUM
        if value > 0:
            return Severity.LOW
    return None


def _count(severities: Sequence[Severity | None]) -> dict[Severity, int]:
    counts = dict.fromkeys(Severity, 0)
    for severity in severities[:_MAX_FINDINGS]:
        if severity is not None:
            counts[severity] += 1
    return counts


def _trivy(report: Mapping[str, Any]) -> dict[Severity, int]:
    found = []
    for result in report.get("Results") or []:
        for vulnerability in _dig(result, "Vulnerabilities") or []:
            found.append(severity_of(_dig(vulnerability, "Severity")))
    return _count(found)


def _grype(report: Mapping[str, Any]) -> dict[Severity, int]:
    return _count(
        [severity_of(_dig(m, "vulnerability", "severity")) for m in report["matches"] or []]
    )


def _cyclonedx(report: Mapping[str, Any]) -> dict[Severity, int]:
    found = []
    for vulnerability in report.get("vulnerabilities") or []:
        ratings = [severity_of(_dig(r, "severity")) for r in _dig(vulnerability, "ratings") or []]
        ranked = [r for r in ratings if r is not None]
        found.append(max(ranked, key=lambda s: s.rank) if ranked else None)
    return _count(found)


def _sarif(report: Mapping[str, Any]) -> dict[Severity, int]:
    found: list[Severity | None] = []
    levels = {"error": Severity.HIGH, "warning": Severity.MEDIUM, "note": Severity.LOW}
    for run in report.get("runs") or []:
        rules = {
            rule.get("id"): rule
            for rule in _dig(run, "tool", "driver", "rules") or []
            if isinstance(rule, Mapping)
        }
        for result in _dig(run, "results") or []:
            if not isinstance(result, Mapping):
                continue
            rule = rules.get(result.get("ruleId"), {})
            score = _dig(result, "properties", "security-severity") or _dig(
                rule, "properties", "security-severity"
            )
            severity = severity_of(score) if score is not None else None
            found.append(severity or levels.get(str(result.get("level", "warning"))))
    return _count(found)


def _summary(summary: Mapping[str, Any]) -> dict[Severity, int]:
    counts = dict.fromkeys(Severity, 0)
    for word, count in summary.items():
        severity = severity_of(word) if isinstance(word, str) else None
        if severity is not None and isinstance(count, int) and count >= 0:
            counts[severity] += count
    return counts


def vulnerabilities(statement: Statement) -> dict[Severity, int] | None:
    """Findings per severity when the predicate is a scan report we can read, else None.

    None (not an empty count) for a report in an unknown shape, so an unreadable scan
    is never mistaken for a clean one.
    """
    predicate = statement.predicate
    report: Any = _dig(predicate, "scanner", "result")
    if report is None:
        report = _dig(predicate, "scanners", 0, "result")
    if report is None:
        report = predicate
    if not isinstance(report, Mapping):
        return None
    if isinstance(report.get("summary"), Mapping):
        return _summary(report["summary"])
    if "SchemaVersion" in report or "Results" in report:
        return _trivy(report)
    if isinstance(report.get("matches"), list):
        return _grype(report)
    if report.get("bomFormat") == "CycloneDX" or "vulnerabilities" in report:
        return _cyclonedx(report)
    if isinstance(report.get("runs"), list):
        return _sarif(report)
    return None
