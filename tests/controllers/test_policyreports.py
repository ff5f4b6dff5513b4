"""PolicyReports: one per namespace, failures first, bounded, summary over everything."""

from __future__ import annotations

import datetime

from modelshield.api.v1alpha1.policies import Enforcement
from modelshield.controllers.builders import policyreports as pr
from modelshield.engine import decisions

NOW = datetime.datetime(2026, 11, 26, tzinfo=datetime.UTC)
POLICY = decisions.PolicyRef("ModelSecurityPolicy", "ml", "p")
AUDIT_POLICY = decisions.PolicyRef("ClusterModelSecurityPolicy", "", "base")


def _violation(
    code: decisions.Code, policy: decisions.PolicyRef, enforcement: Enforcement
) -> decisions.Violation:
    return decisions.Violation(
        code=code, path="spec.x", message="fix it", policy=policy, enforcement=enforcement
    )


def _audited(
    name: str,
    *violations: decisions.Violation,
    governed_by: tuple[decisions.PolicyRef, ...] = (POLICY,),
) -> pr.Audited:
    enforce = tuple(v for v in violations if v.enforcement is Enforcement.ENFORCE)
    audit = tuple(v for v in violations if v.enforcement is Enforcement.AUDIT)
    decision = decisions.Decision(
        allowed=not enforce, violations=enforce, warnings=audit, governed_by=governed_by
    )
    return pr.Audited("apps/v1", "Deployment", "ml", name, f"uid-{name}", decision)


def test_results_and_summary() -> None:
    report = pr.build(
        "ml",
        [
            _audited("good"),
            _audited(
                "bad",
                _violation(decisions.Code.IMAGE_UNSIGNED, POLICY, Enforcement.ENFORCE),
                _violation(decisions.Code.RUNTIME_RUN_AS_ROOT, AUDIT_POLICY, Enforcement.AUDIT),
                governed_by=(POLICY, AUDIT_POLICY),
            ),
        ],
        NOW,
    )
    assert report["apiVersion"] == "wgpolicyk8s.io/v1alpha2"
    assert report["metadata"]["namespace"] == "ml"
    assert report["summary"] == {"pass": 1, "fail": 1, "warn": 1, "error": 0, "skip": 0}
    first = report["results"][0]
    assert first["result"] == "fail"
    assert first["rule"] == "ImageUnsigned"
    assert first["category"] == "images"
    assert first["policy"] == "ModelSecurityPolicy ml/p"
    assert first["resources"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "namespace": "ml",
            "name": "bad",
            "uid": "uid-bad",
        }
    ]
    assert [r["result"] for r in report["results"]] == ["fail", "warn", "pass"]


def test_bounded_size_keeps_failures() -> None:
    audited = [_audited(f"ok-{i}") for i in range(500)] + [
        _audited(
            f"bad-{i}", _violation(decisions.Code.MODEL_NOT_SCANNED, POLICY, Enforcement.ENFORCE)
        )
        for i in range(10)
    ]
    report = pr.build("ml", audited, NOW, max_results=50)
    assert len(report["results"]) == 50
    assert all(r["result"] == "fail" for r in report["results"][:10])
    assert report["summary"]["pass"] == 500
    assert report["summary"]["fail"] == 10
    assert report["metadata"]["annotations"][pr.TRUNCATED_ANNOTATION] == "460"


def test_same_content_ignores_timestamps() -> None:
    audited = [
        _audited("bad", _violation(decisions.Code.IMAGE_UNSIGNED, POLICY, Enforcement.ENFORCE))
    ]
    first = pr.build("ml", audited, NOW)
    later = pr.build("ml", audited, NOW + datetime.timedelta(hours=1))
    assert pr.same_content(first, later)
    assert not pr.same_content(first, pr.build("ml", [_audited("good")], NOW))


def test_an_audit_policys_network_block_is_a_warn_result_not_a_pass() -> None:
    base = _audited("fraud", governed_by=(POLICY, AUDIT_POLICY))
    noted = pr.Audited(
        *(base.api_version, base.kind, base.namespace, base.name, base.uid, base.decision),
        network_notes=((str(AUDIT_POLICY), "under Enforce only this traffic would be allowed"),),
    )
    report = pr.build("ml", [noted], NOW)
    by_policy = {(r["policy"], r["rule"]): r for r in report["results"]}
    warned = by_policy[(str(AUDIT_POLICY), pr.NETWORK_NOT_ENFORCED)]
    assert warned["result"] == "warn"
    assert warned["category"] == "network"
    assert (str(AUDIT_POLICY), "Compliant") not in by_policy
    assert by_policy[(str(POLICY), "Compliant")]["result"] == "pass"
    assert report["summary"]["warn"] == 1
