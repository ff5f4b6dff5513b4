"""Each requirement × each kind × Enforce/Audit, and how policies combine."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from typing import Any

import pytest

from modelshield.api.v1alpha1 import policies
from modelshield.api.v1alpha1.common import Severity
from modelshield.engine import compiling, evaluating, facts
from modelshield.engine.decisions import Code
from tests.support import workloadbuilders as b

Mutate = Callable[[dict[str, Any]], None]


def _no_change(container: dict[str, Any]) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Case:
    """A requirement, the facts that break it, and the violation expected."""

    name: str
    requirements: dict[str, Any]
    code: Code
    path: str  # relative to the first container, or absolute when it starts with "/"
    images: dict[str, facts.ImageFacts] = dataclasses.field(default_factory=dict)
    artifact: facts.ArtifactFacts | None = None
    mutate: Mutate = _no_change
    model: str | None = b.MODEL


def _set(key: str, value: Any) -> Mutate:
    def mutate(container: dict[str, Any]) -> None:
        container[key] = value

    return mutate


def _security(key: str, value: Any) -> Mutate:
    def mutate(container: dict[str, Any]) -> None:
        container["securityContext"][key] = value

    return mutate


OLD = b.NOW - datetime.timedelta(days=3)
RECENT = b.NOW - datetime.timedelta(hours=1)
ATTESTATION = {
    "name": "scan",
    "predicateType": b.VULN,
    "maxAge": "24h",
    "vulnerabilities": {"blockAtOrAbove": "High"},
}
CRITICAL = facts.ScanFindingFact(Severity.CRITICAL, "model.pkl", "imports os.system")

CASES = [
    Case(
        "registry",
        {"images": {"allowedRegistries": ["other.example.com/"]}},
        Code.IMAGE_REGISTRY_NOT_ALLOWED,
        ".image",
    ),
    Case(
        "digest",
        {"images": {"requireDigest": True}},
        Code.IMAGE_NOT_PINNED,
        ".image",
        mutate=_set("image", "registry.example.com/ml/server:1.0"),
    ),
    Case("no-facts", {"images": {"signers": b.SIGNERS}}, Code.IMAGE_NOT_VERIFIED, ".image"),
    Case(
        "unsigned",
        {"images": {"signers": b.SIGNERS}},
        Code.IMAGE_UNSIGNED,
        ".image",
        images={
            b.SIGNED_IMAGE: facts.ImageFacts(
                b.SIGNED_IMAGE, None, facts.SignatureFact(facts.Outcome.NO_SIGNATURE)
            )
        },
    ),
    Case(
        "untrusted-signer",
        {"images": {"signers": b.SIGNERS}},
        Code.IMAGE_SIGNER_UNTRUSTED,
        ".image",
        images={b.SIGNED_IMAGE: b.verified_image(signer="someone-else")},
    ),
    Case(
        "registry-down",
        {"images": {"signers": b.SIGNERS}},
        Code.IMAGE_VERIFICATION_FAILED,
        ".image",
        images={
            b.SIGNED_IMAGE: facts.ImageFacts(
                b.SIGNED_IMAGE, None, facts.SignatureFact(facts.Outcome.REGISTRY_UNREACHABLE)
            )
        },
    ),
    Case(
        "attestation-missing",
        {"images": {"signers": b.SIGNERS, "attestations": [ATTESTATION]}},
        Code.ATTESTATION_MISSING,
        ".image",
        images={b.SIGNED_IMAGE: b.verified_image()},
    ),
    Case(
        "attestation-old",
        {"images": {"signers": b.SIGNERS, "attestations": [ATTESTATION]}},
        Code.ATTESTATION_TOO_OLD,
        ".image",
        images={b.SIGNED_IMAGE: b.verified_image(attested_at=OLD, vulnerabilities={})},
    ),
    Case(
        "attestation-critical",
        {"images": {"signers": b.SIGNERS, "attestations": [ATTESTATION]}},
        Code.ATTESTATION_VULNERABILITIES,
        ".image",
        images={
            b.SIGNED_IMAGE: b.verified_image(
                attested_at=RECENT, vulnerabilities={Severity.CRITICAL: 1, Severity.LOW: 4}
            )
        },
    ),
    Case(
        "model-undeclared",
        {"models": {"requireScan": True}},
        Code.MODEL_NOT_DECLARED,
        "",
        model=None,
    ),
    Case("model-not-found", {"models": {"requireScan": True}}, Code.MODEL_ARTIFACT_NOT_FOUND, ""),
    Case(
        "model-unsigned",
        {"models": {"signers": b.SIGNERS, "requireScan": False}},
        Code.MODEL_NOT_VERIFIED,
        "",
        artifact=b.artifact(verified=False),
    ),
    Case(
        "model-other-signer",
        {"models": {"signers": b.SIGNERS, "requireScan": False}},
        Code.MODEL_SIGNER_UNTRUSTED,
        "",
        # Another signer: another key (the name alone is not what admission trusts).
        artifact=b.artifact(signer="intern", signer_key="sha256:" + "1" * 64),
    ),
    Case(
        "model-stale-status",
        {"models": {"signers": b.SIGNERS}},
        Code.MODEL_NOT_VERIFIED,
        "",
        artifact=b.artifact(current=False),
    ),
    Case(
        "model-unscanned",
        {"models": {"requireScan": True}},
        Code.MODEL_NOT_SCANNED,
        "",
        artifact=b.artifact(scanned=False),
    ),
    Case(
        "model-findings",
        {"models": {"requireScan": True, "blockFindingsAtOrAbove": "High"}},
        Code.MODEL_SCAN_FINDINGS,
        "",
        artifact=b.artifact(findings=(CRITICAL,)),
    ),
    Case(
        "run-as-root",
        {"runtime": {}},
        Code.RUNTIME_RUN_AS_ROOT,
        ".securityContext.runAsNonRoot",
        mutate=_security("runAsNonRoot", False),
    ),
    Case(
        "writable-root",
        {"runtime": {}},
        Code.RUNTIME_WRITABLE_ROOT_FILESYSTEM,
        ".securityContext.readOnlyRootFilesystem",
        mutate=_security("readOnlyRootFilesystem", False),
    ),
    Case(
        "escalation",
        {"runtime": {}},
        Code.RUNTIME_PRIVILEGE_ESCALATION,
        ".securityContext.allowPrivilegeEscalation",
        mutate=_security("allowPrivilegeEscalation", True),
    ),
    Case(
        "privileged",
        {"runtime": {}},
        Code.RUNTIME_PRIVILEGED,
        ".securityContext.privileged",
        mutate=_security("privileged", True),
    ),
    Case(
        "no-limits",
        {"runtime": {}},
        Code.RUNTIME_NO_RESOURCE_LIMITS,
        ".resources.limits",
        mutate=_set("resources", {}),
    ),
]


def _evaluate(
    body: dict[str, Any],
    policy_list: list[compiling.AnyPolicy],
    images: dict[str, facts.ImageFacts] | None = None,
    artifact: facts.ArtifactFacts | None = None,
) -> Any:
    source = facts.StaticFacts(
        images=images or {},
        artifacts={(b.NAMESPACE, b.MODEL): artifact} if artifact else {},
    )
    policy_set = compiling.compile_policies(policy_list)
    return evaluating.evaluate(body, policy_set, {}, source, b.NOW)


@pytest.mark.parametrize("enforcement", ["Enforce", "Audit"])
@pytest.mark.parametrize("kind", b.KINDS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_requirement_is_enforced_for_every_kind(case: Case, kind: str, enforcement: str) -> None:
    container = b.hardened_container()
    case.mutate(container)
    body = b.workload(kind, b.pod_spec(container), model=case.model)
    decision = _evaluate(
        body, [b.policy(enforcement, **case.requirements)], case.images, case.artifact
    )

    found = decision.violations if enforcement == "Enforce" else decision.warnings
    codes = {v.code for v in found}
    assert case.code in codes, [v.describe() for v in found]
    assert decision.allowed is (enforcement == "Audit")
    violation = next(v for v in found if v.code == case.code)
    if case.path.startswith("."):
        assert violation.path == b.CONTAINER_PATHS[kind] + case.path
    assert violation.policy.name == "p"
    assert violation.message


@pytest.mark.parametrize("kind", b.KINDS)
def test_a_workload_meeting_every_requirement_is_allowed(kind: str) -> None:
    requirements: dict[str, Any] = {
        "images": {
            "allowedRegistries": ["registry.example.com/ml/"],
            "requireDigest": True,
            "signers": b.SIGNERS,
            "attestations": [ATTESTATION],
        },
        "models": {"signers": b.SIGNERS, "requireScan": True},
        "runtime": {},
    }
    decision = _evaluate(
        b.workload(kind),
        [b.policy(**requirements)],
        {b.SIGNED_IMAGE: b.verified_image(attested_at=RECENT, vulnerabilities={Severity.LOW: 2})},
        b.artifact(findings=(facts.ScanFindingFact(Severity.LOW, "README", "note"),)),
    )
    assert decision.allowed, decision.message()
    assert not decision.warnings
    assert decision.governed_by


def test_unselected_workloads_and_other_namespaces_are_not_governed() -> None:
    strict = b.policy(runtime={})
    unlabelled = b.workload("Deployment", b.pod_spec({"name": "c", "image": "x"}), labels={})
    assert _evaluate(unlabelled, [strict]).governed_by == ()
    elsewhere = b.workload("Deployment", b.pod_spec({"name": "c", "image": "x"}))
    elsewhere["metadata"]["namespace"] = "other"
    assert _evaluate(elsewhere, [strict]).allowed


def test_kinds_that_run_no_pods_are_never_governed() -> None:
    config_map = {"kind": "ConfigMap", "metadata": {"namespace": b.NAMESPACE}, "data": {}}
    assert _evaluate(config_map, [b.policy(selector={}, runtime={})]).governed_by == ()


def test_enforce_anywhere_wins_over_a_namespaced_audit_policy() -> None:
    baseline = policies.ClusterModelSecurityPolicy.model_validate(
        {
            "metadata": {"name": "baseline"},
            "spec": {"enforcement": "Enforce", "selector": {}, "runtime": {}},
        }
    )
    lenient = b.policy("Audit", runtime={})
    container = b.hardened_container()
    container["securityContext"]["privileged"] = True
    decision = _evaluate(b.workload("Deployment", b.pod_spec(container)), [baseline, lenient])
    assert not decision.allowed
    assert {str(v.policy) for v in decision.violations} == {"ClusterModelSecurityPolicy baseline"}
    assert {v.code for v in decision.warnings} == {Code.RUNTIME_PRIVILEGED}


def test_cluster_policy_respects_its_namespace_selector() -> None:
    baseline = policies.ClusterModelSecurityPolicy.model_validate(
        {
            "metadata": {"name": "baseline"},
            "spec": {
                "namespaceSelector": {"matchLabels": {"tier": "prod"}},
                "selector": {},
                "runtime": {},
            },
        }
    )
    policy_set = compiling.compile_policies([baseline])
    body = b.workload("Pod", b.pod_spec({"name": "c", "image": "x"}))
    source = facts.StaticFacts()
    assert evaluating.evaluate(body, policy_set, {"tier": "dev"}, source, b.NOW).allowed
    assert not evaluating.evaluate(body, policy_set, {"tier": "prod"}, source, b.NOW).allowed


@pytest.mark.parametrize("field", ["initContainers", "ephemeralContainers"])
def test_init_and_ephemeral_containers_are_checked(field: str) -> None:
    spec = b.pod_spec()
    spec[field] = [{"name": "debug", "image": "docker.io/library/busybox:latest"}]
    decision = _evaluate(b.workload("Pod", spec), [b.policy(images={"signers": b.SIGNERS})])
    paths = {v.path for v in decision.violations}
    assert f"spec.{field}[0].image" in paths


def test_ephemeral_containers_need_no_limits() -> None:
    spec = b.pod_spec()
    debug = b.hardened_container("registry.example.com/ml/debug@sha256:" + "c" * 64, "debug")
    del debug["resources"]
    spec["ephemeralContainers"] = [debug]
    assert _evaluate(b.workload("Pod", spec), [b.policy(runtime={})]).allowed


def test_pod_level_run_as_non_root_counts_and_user_zero_does_not() -> None:
    container = b.hardened_container()
    del container["securityContext"]["runAsNonRoot"]
    spec = b.pod_spec(container)
    spec["securityContext"] = {"runAsNonRoot": True}
    assert _evaluate(b.workload("Pod", spec), [b.policy(runtime={})]).allowed
    container["securityContext"]["runAsUser"] = 0
    assert not _evaluate(b.workload("Pod", spec), [b.policy(runtime={})]).allowed


def test_inference_service_storage_uri_names_the_model() -> None:
    body = b.workload("InferenceService", model=None)
    body["spec"]["predictor"]["model"] = {
        "modelFormat": {"name": "sklearn"},
        "storageUri": "s3://models/v1/",
    }
    requirement = b.policy(models={"signers": b.SIGNERS})
    assert _evaluate(body, [requirement], artifact=b.artifact()).allowed
    body["spec"]["predictor"]["model"]["storageUri"] = "s3://models/unknown/"
    decision = _evaluate(body, [requirement], artifact=b.artifact())
    assert [v.code for v in decision.violations] == [Code.MODEL_ARTIFACT_NOT_FOUND]
    assert decision.violations[0].path == "spec.predictor.model.storageUri"


def test_verified_tags_are_pinned_to_their_digest_by_patch() -> None:
    tagged = "registry.example.com/ml/server:1.0"
    body = b.workload("Deployment", b.pod_spec(b.hardened_container(tagged)))
    requirement = b.policy(images={"signers": b.SIGNERS, "mutateToDigest": True})
    decision = _evaluate(body, [requirement], {tagged: b.verified_image(tagged)})
    assert decision.patches == (
        {
            "op": "replace",
            "path": "/spec/template/spec/containers/0/image",
            "value": f"{tagged}@sha256:{'a' * 64}",
        },
    )


def test_an_unverified_image_is_never_pinned() -> None:
    tagged = "registry.example.com/ml/server:1.0"
    body = b.workload("Deployment", b.pod_spec(b.hardened_container(tagged)))
    requirement = b.policy(images={"signers": b.SIGNERS, "mutateToDigest": True})
    unsigned = facts.ImageFacts(
        tagged, "sha256:" + "d" * 64, facts.SignatureFact(facts.Outcome.NO_SIGNATURE)
    )
    assert _evaluate(body, [requirement], {tagged: unsigned}).patches == ()


def test_malformed_governed_workload_is_denied_with_the_path() -> None:
    body = b.workload("Deployment")
    body["spec"]["template"]["spec"]["containers"] = "not-a-list"
    decision = _evaluate(body, [b.policy(runtime={})])
    assert not decision.allowed
    assert decision.violations[0].code == Code.WORKLOAD_MALFORMED
    assert decision.violations[0].path == "spec.template.spec.containers"


def test_policies_differing_only_in_mutate_to_digest_keep_their_own_setting() -> None:
    pinning = b.policy(images={"signers": b.SIGNERS, "mutateToDigest": True})
    plain = b.policy(images={"signers": b.SIGNERS})
    plain = plain.model_copy(update={"metadata": plain.metadata.model_copy(update={"name": "q"})})
    for order in ([pinning, plain], [plain, pinning]):
        policy_set = compiling.compile_policies(order)
        settings = {
            p.ref.name: p.images.mutate_to_digest
            for p in policy_set.namespaced[b.NAMESPACE]
            if p.images
        }
        assert settings == {"p": True, "q": False}
