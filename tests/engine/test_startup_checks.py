"""The init container of ``models.verifyAtStartup``: exempt only when exact, required on Pods.

Regression tests for two admission bypasses: any container named like the startup
container was exempt from every check (a privileged root shell in the startup image was
admitted), and nothing required a Pod to carry the real one (a ``command: ["true"]``
container of that name stopped the injection and was admitted).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelshield.engine import (
    decisions,
    evaluating,
    facts,
    modelchecks,
    runtimechecks,
    startup,
    workloads,
)
from modelshield.engine.decisions import Code
from tests.support import workloadbuilders as builders
from tests.support.startupchecks import (
    DIGEST,
    IMAGE,
    MOUNT,
    SOURCE,
    _decide,
    _injected,
    _pod_spec,
    _policy,
)


def _with_init(
    kind: str, change: dict[str, Any] | None = None, *, digest: str = DIGEST
) -> dict[str, Any]:
    spec = _pod_spec()
    spec["initContainers"] = [{**_injected(spec, digest), **(change or {})}]
    return builders.workload(kind, spec)


def _codes(decision: decisions.Decision) -> set[str]:
    return {v.code.value for v in (*decision.violations, *decision.warnings)}


# --- the exemption: exact container, image requirements only --------------------------


@pytest.mark.parametrize("kind", builders.KINDS)
def test_the_exact_injected_container_is_exempt_from_image_requirements(kind: str) -> None:
    decision = _decide(_with_init(kind))
    assert decision.allowed, decision.message()


def test_the_builder_s_container_passes_every_runtime_check() -> None:
    spec = _pod_spec()
    spec["initContainers"] = [_injected(spec)]
    workload = workloads.parse(builders.workload("Pod", spec))
    (init,) = [c for c in workload.containers if c.field == "initContainers"]
    requirement = builders.policy(runtime={}).spec.runtime
    assert requirement is not None
    assert list(runtimechecks.check_container(init, requirement)) == []
    context = init.spec["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["runAsUser"] != 0
    assert set(init.spec["resources"]["limits"]) == {"cpu", "memory"}


@pytest.mark.parametrize("kind", builders.KINDS)
def test_a_privileged_shell_under_the_startup_name_and_image_is_judged_in_full(kind: str) -> None:
    # The reviewer's bypass A: every kind, the startup image, the startup name.
    decision = _decide(_with_init(kind, builders.PRIVILEGED))
    assert not decision.allowed
    codes = _codes(decision)
    assert {"RuntimeRunAsRoot", "RuntimePrivileged", "RuntimePrivilegeEscalation"} <= codes
    # Not the exact container, so the image requirements apply to it like to any other.
    assert "ImageRegistryNotAllowed" in codes
    paths = {v.path for v in decision.violations}
    assert any(".initContainers[0]" in path for path in paths)


@pytest.mark.parametrize(
    "change",
    [
        {"command": ["true"]},
        {"args": ["--anything"]},
        {"image": "ghcr.io/example/modelshield:other"},
        {"env": []},
        {"restartPolicy": "Always"},
        {"volumeMounts": [dict(MOUNT, readOnly=False)]},
        {"resources": {"limits": {"cpu": "64", "memory": "512Gi"}}},
        {"securityContext": {**_injected(_pod_spec())["securityContext"], "runAsUser": 1001}},
        {"terminationMessagePath": "/tmp/elsewhere"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_any_difference_makes_it_another_container(change: dict[str, Any]) -> None:
    decision = _decide(_with_init("Pod", change))
    assert not decision.allowed
    assert "ModelStartupVerificationMissing" in _codes(decision)


def test_the_api_server_s_defaults_are_still_the_injected_container() -> None:
    obj = _with_init("Pod", {"terminationMessagePath": "/dev/termination-log"})
    obj["spec"]["volumes"][1]["configMap"]["defaultMode"] = 420
    assert _decide(obj).allowed


@pytest.mark.parametrize(
    "volume",
    [
        {"name": startup.KEYS_CONFIG_MAP, "emptyDir": {}},
        {"name": startup.KEYS_CONFIG_MAP, "configMap": {"name": "attacker-keys"}},
        None,
    ],
)
def test_the_keys_volume_must_be_the_operator_s_config_map(volume: dict[str, Any] | None) -> None:
    obj = _with_init("Pod")
    obj["spec"]["volumes"] = [obj["spec"]["volumes"][0], *([volume] if volume else [])]
    decision = _decide(obj)
    assert not decision.allowed
    assert "ModelStartupVerificationMissing" in _codes(decision)


def test_a_container_built_for_another_digest_is_not_accepted_on_create() -> None:
    decision = _decide(_with_init("Pod", digest="sha256:" + "c" * 64))
    assert not decision.allowed
    assert "ModelStartupVerificationMissing" in _codes(decision)


def test_an_update_keeps_the_container_the_pod_was_created_with() -> None:
    # The artifact was re-verified since: the pod's (immutable) init container names an
    # older digest; the API server sends it in oldObject and object alike.
    obj = _with_init("Pod", digest="sha256:" + "c" * 64)
    previous = tuple(obj["spec"]["initContainers"])
    assert _decide(obj, modelchecks.StartupCheck(IMAGE, previous=previous)).allowed
    # ...but only a container built by modelshield for this model.
    tampered = copy.deepcopy(obj)
    tampered["spec"]["initContainers"][0]["command"][-1] = "/etc/other.pub"
    check = modelchecks.StartupCheck(IMAGE, previous=tuple(tampered["spec"]["initContainers"]))
    assert not _decide(tampered, check).allowed


# --- the requirement: a Pod must carry it -------------------------------------------


def test_a_pod_without_the_container_is_denied_with_its_own_code() -> None:
    decision = _decide(builders.workload("Pod", _pod_spec()))
    assert not decision.allowed
    (violation,) = decision.violations
    assert violation.code is Code.MODEL_STARTUP_VERIFICATION_MISSING
    assert violation.path == "spec.initContainers"
    assert "webhook.mutating" in violation.message
    assert startup.CONTAINER_NAME in violation.message


def test_a_fake_container_stops_nothing() -> None:
    # The reviewer's bypass B: a hardened `true` under the startup name and image.
    decision = _decide(_with_init("Pod", {"command": ["true"]}))
    violation = next(v for v in decision.violations if v.code.value.startswith("ModelStartup"))
    assert violation.path == "spec.initContainers[0]"
    assert "not the one modelshield injects" in violation.message
    assert "remove yours" in violation.message


def test_audit_warns_instead() -> None:
    decision = _decide(builders.workload("Pod", _pod_spec()), policy_set=_policy("Audit"))
    assert decision.allowed
    assert [w.code for w in decision.warnings] == [Code.MODEL_STARTUP_VERIFICATION_MISSING]


@pytest.mark.parametrize("kind", [k for k in builders.KINDS if k != "Pod"])
def test_templates_need_not_carry_it(kind: str) -> None:
    assert _decide(builders.workload(kind, _pod_spec())).allowed


def test_a_pod_without_a_model_volume_is_told_to_mount_one() -> None:
    (violation,) = _decide(builders.workload("Pod")).violations
    assert violation.code is Code.MODEL_STARTUP_VERIFICATION_MISSING
    assert "mounts no volume" in violation.message


def test_an_unverified_model_reports_only_what_is_wrong_with_the_model() -> None:
    source = facts.StaticFacts(
        images=SOURCE.images,
        artifacts={(builders.NAMESPACE, builders.MODEL): builders.artifact(verified=False)},
    )
    decision = _decide(builders.workload("Pod", _pod_spec()), source=source)
    assert _codes(decision) == {"ModelNotVerified"}
    # Without model signers the startup check still needs a verified digest and signer.
    decision = _decide(
        builders.workload("Pod", _pod_spec()), source=source, policy_set=_policy(signers=False)
    )
    (violation,) = decision.violations
    assert violation.code is Code.MODEL_STARTUP_VERIFICATION_MISSING
    assert "no verified digest and signer" in violation.message


def test_without_a_startup_check_the_container_is_a_container_like_any_other() -> None:
    # The operator's audit of running pods: no exemption, nothing required.
    assert _decide(builders.workload("Pod", _pod_spec()), check=None).allowed
    decision = _decide(_with_init("Pod"), check=None)
    assert _codes(decision) == {"ImageRegistryNotAllowed"}


# --- modelshield test: manifests before the mutating webhook --------------------------


def _offline(obj: dict[str, Any]) -> decisions.Decision:
    return evaluating.evaluate(obj, _policy(), {}, SOURCE, builders.NOW)


def test_offline_a_pod_manifest_is_expected_to_receive_the_container() -> None:
    assert _offline(builders.workload("Pod", _pod_spec())).allowed


def test_offline_a_pod_that_could_not_receive_it_is_reported() -> None:
    (violation,) = _offline(builders.workload("Pod")).violations
    assert violation.code is Code.MODEL_STARTUP_VERIFICATION_MISSING


def test_offline_a_manifest_carrying_its_own_startup_container_is_reported() -> None:
    # Even an exact copy: the offline check does not know the webhook's --startup-image,
    # and the mutating webhook would not inject its own next to it.
    decision = _offline(_with_init("Pod"))
    assert not decision.allowed
    codes = _codes(decision)
    assert "ModelStartupVerificationMissing" in codes
    assert "ImageRegistryNotAllowed" in codes


TOKEN_VOLUME = {
    "name": "kube-api-access-x1",
    "projected": {
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
        ],
        "defaultMode": 420,
    },
}
TOKEN_MOUNT = {
    "name": "kube-api-access-x1",
    "readOnly": True,
    "mountPath": startup.SERVICE_ACCOUNT_MOUNT,
}


def _with_token(mount: dict[str, Any], volume: dict[str, Any]) -> dict[str, Any]:
    # As the API server's ServiceAccount admission leaves a pod (seen on a real one).
    obj = _with_init("Pod")
    obj["spec"]["volumes"].append(volume)
    init = obj["spec"]["initContainers"][0]
    init["volumeMounts"] = [*init["volumeMounts"], mount]
    return obj


def test_the_service_account_token_mount_the_api_server_adds_is_accepted() -> None:
    assert _decide(_with_token(TOKEN_MOUNT, TOKEN_VOLUME)).allowed


@pytest.mark.parametrize(
    ("mount", "volume"),
    [
        ({**TOKEN_MOUNT, "mountPath": "/usr/lib/python3"}, TOKEN_VOLUME),
        ({**TOKEN_MOUNT, "readOnly": False}, TOKEN_VOLUME),
        (TOKEN_MOUNT, {"name": "kube-api-access-x1", "emptyDir": {}}),
        (TOKEN_MOUNT, {**TOKEN_VOLUME, "projected": {"sources": [{"configMap": {"name": "x"}}]}}),
    ],
    ids=["elsewhere", "writable", "not-projected", "no-token"],
)
def test_any_other_extra_mount_makes_it_another_container(
    mount: dict[str, Any], volume: dict[str, Any]
) -> None:
    decision = _decide(_with_token(mount, volume))
    assert "ModelStartupVerificationMissing" in _codes(decision)
