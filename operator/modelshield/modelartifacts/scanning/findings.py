"""Scan findings, the per-file record, and the report of a whole model."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelshield.api.v1alpha1.common import Severity

if TYPE_CHECKING:
    from modelshield.api.v1alpha1 import artifacts

LOW = Severity.LOW
MEDIUM = Severity.MEDIUM
HIGH = Severity.HIGH
CRITICAL = Severity.CRITICAL


@dataclass(frozen=True)
class Finding:
    """One thing a scanner found: how bad, where (file, offset or operator) and why."""

    severity: Severity
    file: str
    location: str
    reason: str
    scanner: str = "modelshield"


@dataclass
class FileRecord:
    """What was done with one file: its detected format, size and findings."""

    path: str
    format: str
    size: int
    findings: list[Finding] = field(default_factory=list)


@dataclass
class ScanReport:
    """The result of scanning every file of a model."""

    files: list[FileRecord] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        """Every finding, most severe first, then by file and location."""
        return most_severe_first(f for record in self.files for f in record.findings)

    @property
    def bytes_scanned(self) -> int:
        """Total size of the files scanned."""
        return sum(record.size for record in self.files)

    def worst(self) -> Severity | None:
        """The highest severity found, or None when nothing was found."""
        found = self.findings
        return found[0].severity if found else None

    def fails(self, threshold: Severity) -> bool:
        """Whether any finding is at or above the threshold."""
        worst = self.worst()
        return worst is not None and worst.rank >= threshold.rank


def most_severe_first(findings: Iterable[Finding]) -> list[Finding]:
    """Sort by severity (highest first), then file and location; drop exact duplicates."""
    unique = dict.fromkeys(findings)
    return sorted(unique, key=lambda f: (-f.severity.rank, f.file, f.location, f.reason))


def parse_severity(text: str) -> Severity:
    """Read low/medium/high/critical in any case."""
    for severity in Severity:
        if severity.value.lower() == text.strip().lower():
            return severity
    raise ValueError(f"{text!r} is not one of low, medium, high, critical")


def to_api(
    findings: Iterable[Finding], limit: int = 100
) -> tuple[list[artifacts.ScanFinding], bool]:
    """The first ``limit`` findings, most severe first, as API objects; and whether cut."""
    # Imported here: the API models cost a few hundred ms that `model scan` does not need.
    from modelshield.api.v1alpha1 import artifacts

    ordered = most_severe_first(findings)
    listed = [
        artifacts.ScanFinding(
            severity=f.severity,
            file=f.file[:4096],
            location=f.location[:1024],
            reason=(f.reason if f.scanner == "modelshield" else f"{f.reason} ({f.scanner})")[:4096],
        )
        for f in ordered[:limit]
    ]
    return listed, len(ordered) > limit
