"""Parsing AdmissionReviews and building responses."""

from __future__ import annotations

import base64
import json

import pytest

from modelshield.api.v1alpha1.policies import Enforcement
from modelshield.engine import decisions
from modelshield_webhooks import responses, reviews
from tests.support import admissionscenarios as scenarios


def test_a_recorded_review_parses_into_the_request() -> None:
    info = scenarios.BY_LABEL["Pod/ephemeralcontainers"]
    obj = scenarios.workload(info)
    request = reviews.decode(
        json.dumps(scenarios.review(info, "UPDATE", obj, obj, uid="u-7", dry_run=True)).encode()
    )
    assert request.uid == "u-7"
    assert (request.group, request.version, request.kind) == ("", "v1", "Pod")
    assert request.resource == "pods"
    assert request.sub_resource == "ephemeralcontainers"
    assert request.operation == "UPDATE"
    assert request.namespace == scenarios.ENFORCED
    assert request.name == "fraud-detector"
    assert request.username == "system:serviceaccount:ci:deployer"
    assert request.dry_run is True
    assert request.object == obj
    assert request.old_object == obj
    assert request.describe == "UPDATE Pod (ephemeralcontainers) ml/fraud-detector"


def test_delete_needs_no_object() -> None:
    info = scenarios.BY_LABEL["Deployment"]
    document = scenarios.review(info, "DELETE", None, scenarios.workload(info))
    assert reviews.parse(document).object is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"operation": "PATCH"}, "request.operation 'PATCH'"),
        ({"operation": {"a": 1}}, "request.operation"),
        ({"kind": None}, "request.kind or request.resource is missing"),
        ({"kind": {"group": "", "version": "v1", "kind": ""}}, "request.kind.kind is empty"),
        ({"namespace": 3}, "request field namespace is not a string"),
        ({"object": None}, "a CREATE request carries no object"),
        ({"object": [1]}, "request.object is not an object"),
        ({"dryRun": "yes"}, "request.dryRun is not a boolean"),
    ],
)
def test_malformed_requests_keep_their_uid(change: dict[str, object], problem: str) -> None:
    info = scenarios.BY_LABEL["Pod"]
    document = scenarios.review(info, "CREATE", scenarios.workload(info), uid="u-9")
    document["request"].update(change)
    with pytest.raises(reviews.MalformedReviewError) as raised:
        reviews.parse(document)
    assert problem in raised.value.problem
    assert raised.value.uid == "u-9"
    answer = responses.malformed(raised.value)
    assert answer["response"]["uid"] == "u-9"
    assert answer["response"]["allowed"] is False


def _violation(message: str, enforcement: Enforcement) -> decisions.Violation:
    return decisions.Violation(
        code=decisions.Code.IMAGE_UNSIGNED,
        path="spec.containers[0].image",
        message=message,
        policy=decisions.PolicyRef("ModelSecurityPolicy", "ml", "p"),
        enforcement=enforcement,
    )


def test_denial_names_policy_path_and_fix_and_keeps_audit_warnings() -> None:
    decision = decisions.Decision(
        allowed=False,
        violations=(_violation("container 'a' has no signature; sign it", Enforcement.ENFORCE),),
        warnings=(_violation("container 'b' is not pinned", Enforcement.AUDIT),),
    )
    answer = responses.from_decision("u", decision, subject="Pod ml/x")["response"]
    assert answer["allowed"] is False
    assert answer["status"]["message"] == (
        "Pod ml/x violates 1 modelshield requirement:\n"
        "[ModelSecurityPolicy ml/p] spec.containers[0].image: container 'a' has no signature; sign it"
    )
    assert answer["warnings"] == [
        "modelshield (Audit) [ModelSecurityPolicy ml/p] spec.containers[0].image: "
        "container 'b' is not pinned"
    ]


def test_warnings_are_bounded_in_size_and_number() -> None:
    many = [f"warning {index} " + "x" * 2000 for index in range(20)]
    bounded = responses.bounded_warnings(many)
    assert len(bounded) == responses.MAX_WARNINGS
    assert all(len(w) <= responses.MAX_WARNING_LENGTH for w in bounded)
    assert bounded[-1] == "... and 13 more modelshield warnings"


def test_patch_is_base64_json_patch() -> None:
    patch = [{"op": "add", "path": "/metadata/labels/x", "value": "y"}]
    answer = responses.allow("u", patches=patch)["response"]
    assert answer["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(answer["patch"])) == patch
