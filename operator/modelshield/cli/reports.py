"""Render ``modelshield test`` results as a table, JSON, JUnit XML or SARIF. Pure functions."""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from xml.etree import ElementTree

from modelshield import __version__
from modelshield.cli import manifests
from modelshield.engine import decisions


@dataclasses.dataclass(frozen=True)
class Result:
    """One workload's verdict and where it was read from."""

    document: manifests.Document
    kind: str
    namespace: str
    name: str
    decision: decisions.Decision

    @property
    def identity(self) -> str:
        """kind namespace/name."""
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def verdict(self) -> str:
        """PASS, WARN, FAIL or SKIP (no policy governs it)."""
        if not self.decision.governed_by:
            return "SKIP"
        if not self.decision.allowed:
            return "FAIL"
        return "WARN" if self.decision.warnings else "PASS"


def _violations(result: Result) -> list[tuple[str, decisions.Violation]]:
    return [("deny", v) for v in result.decision.violations] + [
        ("warn", v) for v in result.decision.warnings
    ]


def table(results: list[Result]) -> str:
    """A human-readable report."""
    lines = []
    for result in results:
        lines.append(f"{result.verdict}  {result.identity}  ({result.document.file})")
        for effect, violation in _violations(result):
            marker = "✗" if effect == "deny" else "!"
            lines.append(f"  {marker} {violation.code.value}: {violation.describe()}")
    counts = {v: sum(r.verdict == v for r in results) for v in ("PASS", "WARN", "FAIL", "SKIP")}
    lines.append(
        f"\n{len(results)} workload{'s' if len(results) != 1 else ''}: {counts['PASS']} passed, {counts['WARN']} passed with "
        f"warnings, {counts['FAIL']} failed, {counts['SKIP']} not governed by any policy"
    )
    return "\n".join(lines) + "\n"


def _violation_json(effect: str, violation: decisions.Violation) -> dict[str, Any]:
    return {
        "effect": effect,
        "code": violation.code.value,
        "path": violation.path,
        "message": violation.message,
        "policy": str(violation.policy),
        "enforcement": violation.enforcement.value,
    }


def as_json(results: list[Result]) -> str:
    """Machine-readable results."""
    return json.dumps(
        [
            {
                "file": str(r.document.file),
                "document": r.document.index + 1,
                "kind": r.kind,
                "namespace": r.namespace,
                "name": r.name,
                "verdict": r.verdict,
                "governedBy": [str(p) for p in r.decision.governed_by],
                "violations": [_violation_json(e, v) for e, v in _violations(r)],
            }
            for r in results
        ],
        indent=2,
    )


def junit(results: list[Result]) -> str:
    """JUnit XML: one test case per workload, failing when an Enforce policy denies it."""
    suite = ElementTree.Element(
        "testsuite",
        name="modelshield",
        tests=str(len(results)),
        failures=str(sum(r.verdict == "FAIL" for r in results)),
        skipped=str(sum(r.verdict == "SKIP" for r in results)),
    )
    for result in results:
        case = ElementTree.SubElement(
            suite, "testcase", classname=str(result.document.file), name=result.identity
        )
        if result.verdict == "FAIL":
            failure = ElementTree.SubElement(
                case, "failure", message=f"{len(result.decision.violations)} violation(s)"
            )
            failure.text = result.decision.message()
        elif result.verdict == "SKIP":
            ElementTree.SubElement(case, "skipped", message="not governed by any policy")
        if result.decision.warnings:
            output = ElementTree.SubElement(case, "system-out")
            output.text = "\n".join(w.describe() for w in result.decision.warnings)
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def sarif(results: list[Result]) -> str:
    """SARIF 2.1.0, for code-review annotations on the workload files."""
    codes = sorted({v.code.value for r in results for _, v in _violations(r)})
    runs_results = []
    for result in results:
        for effect, violation in _violations(result):
            runs_results.append(
                {
                    "ruleId": violation.code.value,
                    "level": "error" if effect == "deny" else "warning",
                    "message": {"text": f"{result.identity}: {violation.describe()}"},
                    "locations": [
                        {
                            "physicalLocation": {
                                "artifactLocation": {"uri": result.document.file.as_posix()}
                            },
                            "logicalLocations": [
                                {"fullyQualifiedName": f"{result.identity}/{violation.path}"}
                            ],
                        }
                    ],
                }
            )
    document = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "modelshield",
                        "version": __version__,
                        "rules": [{"id": code, "name": code} for code in codes],
                    }
                },
                "results": runs_results,
            }
        ],
    }
    return json.dumps(document, indent=2)


RENDERERS = {"table": table, "json": as_json, "junit": junit, "sarif": sarif}
