"""PolicyReports (``wgpolicyk8s.io/v1alpha2``): one per namespace, bounded in size.

One report per namespace, never one per pod or workload: peers that wrote a report per
resource filled etcd. The summary counts every result; the ``results`` list keeps failures
first and stops at ``max_results`` (the number left out is in an annotation), so a
namespace with thousands of violating workloads still fits well inside etcd's limits.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from modelshield.api.v1alpha1.policies import Enforcement
from modelshield.engine import decisions

API_VERSION = "wgpolicyk8s.io/v1alpha2"
KIND = "PolicyReport"
NAME = "modelshield"
SOURCE = "modelshield"
TRUNCATED_ANNOTATION = "modelshield.dev/results-left-out"
DEFAULT_MAX_RESULTS = 200
#: The rule of a ``warn`` result: an Audit policy's network block, not applied.
NETWORK_NOT_ENFORCED = "NetworkNotEnforced"
_RANK = {"fail": 0, "error": 1, "warn": 2, "skip": 3, "pass": 4}
_CATEGORIES = (
    ("Image", "images"),
    ("Attestation", "images"),
    ("Model", "models"),
    ("Runtime", "runtime"),
    ("Workload", "workload"),
)


@dataclasses.dataclass(frozen=True)
class Audited:
    """One governed workload and the engine's decision on it."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str
    decision: decisions.Decision
    #: (policy, message): an Audit policy's network block and what Enforce would narrow.
    network_notes: tuple[tuple[str, str], ...] = ()


def category(code: decisions.Code) -> str:
    """The requirement block a violation code belongs to."""
    return next((name for prefix, name in _CATEGORIES if code.value.startswith(prefix)), "other")


def _resource(audited: Audited) -> dict[str, Any]:
    return {
        "apiVersion": audited.api_version,
        "kind": audited.kind,
        "namespace": audited.namespace,
        "name": audited.name,
        "uid": audited.uid,
    }


def results_of(audited: Audited, timestamp: Mapping[str, int]) -> list[dict[str, Any]]:
    """One result per violation and per network note, and a ``pass`` per governing policy
    that found neither."""
    found = []
    failing_policies: set[str] = set()
    for violation in (*audited.decision.violations, *audited.decision.warnings):
        failing_policies.add(str(violation.policy))
        found.append(
            {
                "source": SOURCE,
                "policy": str(violation.policy),
                "rule": violation.code.value,
                "category": category(violation.code),
                "result": "fail" if violation.enforcement is Enforcement.ENFORCE else "warn",
                "severity": "high" if violation.enforcement is Enforcement.ENFORCE else "medium",
                "scored": True,
                "message": violation.message,
                "properties": {"path": violation.path},
                "timestamp": dict(timestamp),
                "resources": [_resource(audited)],
            }
        )
    for policy_name, message in audited.network_notes:
        failing_policies.add(policy_name)
        found.append(
            {
                "source": SOURCE,
                "policy": policy_name,
                "rule": NETWORK_NOT_ENFORCED,
                "category": "network",
                "result": "warn",
                "severity": "medium",
                "scored": True,
                "message": message,
                "timestamp": dict(timestamp),
                "resources": [_resource(audited)],
            }
        )
    for policy in audited.decision.governed_by:
        if str(policy) not in failing_policies:
            found.append(
                {
                    "source": SOURCE,
                    "policy": str(policy),
                    "rule": "Compliant",
                    "result": "pass",
                    "scored": True,
                    "message": "the workload meets every requirement of the policy",
                    "timestamp": dict(timestamp),
                    "resources": [_resource(audited)],
                }
            )
    return found


def build(
    namespace: str,
    audited: Iterable[Audited],
    now: datetime.datetime,
    *,
    max_results: int = DEFAULT_MAX_RESULTS,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The namespace's PolicyReport."""
    timestamp = {"seconds": int(now.timestamp()), "nanos": 0}
    results = [result for item in audited for result in results_of(item, timestamp)]
    summary = {name: 0 for name in ("pass", "fail", "warn", "error", "skip")}
    for result in results:
        summary[result["result"]] += 1
    results.sort(
        key=lambda r: (
            _RANK[r["result"]],
            r["resources"][0]["kind"],
            r["resources"][0]["name"],
            r["policy"],
            r["rule"],
        )
    )
    kept = results[:max_results]
    annotations = {TRUNCATED_ANNOTATION: str(len(results) - len(kept))}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": NAME,
            "namespace": namespace,
            "labels": dict(labels or {}),
            "annotations": annotations,
        },
        "scope": {"apiVersion": "v1", "kind": "Namespace", "name": namespace},
        "summary": summary,
        "results": kept,
    }


def same_content(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether rewriting would change anything but timestamps."""

    def strip(report: Mapping[str, Any]) -> Any:
        return (
            report.get("summary"),
            [{k: v for k, v in r.items() if k != "timestamp"} for r in report.get("results") or []],
            ((report.get("metadata") or {}).get("annotations") or {}).get(TRUNCATED_ANNOTATION),
        )

    return bool(strip(live) == strip(desired))
