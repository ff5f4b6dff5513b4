"""Validation of modelshield's own resources: the schema's rules and the semantic ones."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest

from modelshield.api.v1alpha1 import validation
from modelshield_webhooks import contexts, resources
from tests.support import admissionscenarios as scenarios
from tests.support import imageverdicts as verdicts
from tests.support.paths import FIXTURES


def _cluster_policy() -> dict[str, Any]:
    policy = scenarios.policy("", name="baseline")
    policy["kind"] = "ClusterModelSecurityPolicy"
    del policy["metadata"]["namespace"]
    return policy


def test_valid_policies_and_artifacts_pass() -> None:
    assert validation.problems_of(scenarios.policy(scenarios.ENFORCED)) == []
    assert validation.problems_of(_cluster_policy()) == []
    assert validation.problems_of(scenarios.model_artifact(scenarios.ENFORCED)) == []


def test_the_repository_fixtures_agree_with_the_crd_models() -> None:
    import yaml

    for path in sorted((FIXTURES / "policies" / "valid").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                assert validation.problems_of(document) == [], path
    for path in sorted((FIXTURES / "policies" / "invalid").glob("*.yaml")):
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert any(validation.problems_of(d) for d in documents), path


def _mutated(policy: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(policy)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


SIGNER = {"name": "release-2026", "publicKey": scenarios.PUBLIC_KEY}


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        (
            ["spec", "images", "allowedRegistries"],
            ["registry.example.com/", " "],
            "spec.images.allowedRegistries[1]",
            "should match pattern",  # the schema refuses a blank prefix since issue 20
        ),
        (["spec", "images", "signers"], [SIGNER, SIGNER], "spec.images.signers", "used twice"),
        (
            ["spec", "images", "signers"],
            [],
            "spec.images.mutateToDigest",
            "needs spec.images.signers",
        ),
        (
            ["spec", "images", "attestations"],
            [{"name": "scan", "predicateType": "x"}, {"name": "scan", "predicateType": "y"}],
            "spec.images.attestations",
            "used twice",
        ),
        (["spec", "enforcement"], "Sometimes", "spec.enforcement", "Enforce"),
    ],
)
def test_semantic_problems_name_the_field(
    path: list[Any], value: Any, field: str, words: str
) -> None:
    policy = scenarios.policy(scenarios.ENFORCED, mutate_to_digest=True, verify_at_startup=True)
    found = validation.problems_of(_mutated(policy, path, value))
    assert any(where == field and words in problem for where, problem in found), found


def test_a_cluster_policy_cannot_read_a_secret() -> None:
    policy = _cluster_policy()
    policy["spec"]["images"]["signers"] = [
        {"name": "from-secret", "secretRef": {"name": "keys", "key": "cosign.pub"}}
    ]
    found = validation.problems_of(policy)
    assert [where for where, _ in found] == ["spec.images.signers[0].secretRef"]
    namespaced = scenarios.policy(scenarios.ENFORCED)
    namespaced["spec"]["images"]["signers"] = policy["spec"]["images"]["signers"]
    assert validation.problems_of(namespaced) == []


def test_status_is_not_judged_by_the_admission_of_the_main_resource() -> None:
    artifact = scenarios.model_artifact(scenarios.ENFORCED)
    artifact["status"]["unexpected"] = True
    assert validation.problems_of(artifact) == []


def test_metadata_only_updates_of_an_old_invalid_policy_are_allowed() -> None:
    # The operator's finalizers and annotations must not be blocked by a newer rule.
    info = scenarios.KindInfo(
        "ModelSecurityPolicy", "modelshield.dev", "v1alpha1", "modelsecuritypolicies"
    )
    old = scenarios.policy(scenarios.ENFORCED)
    old["spec"]["images"]["allowedRegistries"] = [""]
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = ["kopf.zalando.org/KopfFinalizerMarker"]
    body = json.dumps(scenarios.review(info, "UPDATE", new, old)).encode()
    answer = asyncio.run(resources.review(body, _context()))
    assert answer["response"]["allowed"] is True
    new["spec"]["enforcement"] = "Audit"
    body = json.dumps(scenarios.review(info, "UPDATE", new, old)).encode()
    answer = asyncio.run(resources.review(body, _context()))
    assert answer["response"]["allowed"] is False
    assert "allowedRegistries[0]" in answer["response"]["status"]["message"]


def _context() -> contexts.AdmissionContext:
    return contexts.AdmissionContext(
        state=scenarios.standard_state(), verifier=verdicts.FixedVerdictVerifierForTests()
    )


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
@pytest.mark.parametrize(
    ("peer", "field", "words"),
    [
        ({"cidr": "10.1.2.3/8"}, "spec.network.egress[0].peers[0].cidr", "host bits set"),
        ({"cidr": "fd00::1/8"}, "spec.network.egress[0].peers[0].cidr", "host bits set"),
        ({"cidr": "10.0.0.0/99"}, "spec.network.egress[0].peers[0].cidr", "CIDR"),
        (
            {"podSelector": {"matchLabels": {"app": "x y"}}},
            "spec.network.egress[0].peers[0].podSelector.matchLabels.app",
            "label value",
        ),
    ],
)
def test_network_input_the_api_server_would_refuse_in_a_network_policy_is_denied(
    operation: str, peer: dict[str, Any], field: str, words: str
) -> None:
    # Issue 22: such input left governed workloads without any NetworkPolicy.
    info = scenarios.KindInfo(
        "ModelSecurityPolicy", "modelshield.dev", "v1alpha1", "modelsecuritypolicies"
    )
    old = scenarios.policy(scenarios.ENFORCED)
    old["spec"]["network"] = {"egress": [{"peers": [{"cidr": "10.0.0.0/8"}]}]}
    new = copy.deepcopy(old)
    new["spec"]["network"]["egress"][0]["peers"] = [peer]
    review = scenarios.review(info, operation, new, old if operation == "UPDATE" else None)
    answer = asyncio.run(resources.review(json.dumps(review).encode(), _context()))
    assert answer["response"]["allowed"] is False
    message = answer["response"]["status"]["message"]
    assert f"{field}: " in message
    assert words in message
