"""The startup re-verification through both handlers: the reviewer's two bypasses, closed.

A: an init container named ``modelshield-verify-model`` with the startup image, privileged,
root and any command, was admitted in every kind (exempt from every check).
B: such a container (even a harmless ``true``) stopped the injection, and nothing
required the real one, so verifyAtStartup was never enforced; nor was it with the
mutating webhook disabled.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from typing import Any

import pytest

from modelshield_webhooks import caches, contexts, mutating, validating
from tests.support import admissionscenarios as scenarios
from tests.support import imageverdicts as verdicts
from tests.support import workloadbuilders as builders

builders.PRIVILEGED = builders.PRIVILEGED
HARMLESS_LOOKING = {
    "command": ["true"],
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
    },
    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
}


def _context(startup_image: str | None = None, **policy_options: Any) -> contexts.AdmissionContext:
    context = contexts.AdmissionContext(
        state=scenarios.standard_state(**policy_options),
        verifier=verdicts.FixedVerdictVerifierForTests(),
        verify_deadline_seconds=1.0,
        namespace_wait_seconds=0.0,
        clock=lambda: scenarios.NOW,
    )
    if startup_image:
        return dataclasses.replace(context, startup_image=startup_image)
    return context


def _pod_spec(label: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec inside obj (itself, not a copy)."""
    spec: dict[str, Any] = obj["spec"]
    if label == "Pod":
        return spec
    if label == "InferenceService":
        return spec["predictor"]  # type: ignore[no-any-return]
    if label == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]  # type: ignore[no-any-return]


async def _validate(context: contexts.AdmissionContext, document: dict[str, Any]) -> dict[str, Any]:
    answer = await validating.review(json.dumps(document).encode(), context)
    return dict(answer["response"])


def _apply(obj: dict[str, Any], patches: list[dict[str, Any]]) -> dict[str, Any]:
    """JSONPatch ``add`` as the API server applies it (all the mutating webhook sends here)."""
    patched = copy.deepcopy(obj)
    for patch in patches:
        assert patch["op"] == "add"
        *parents, last = patch["path"].strip("/").split("/")
        node: Any = patched
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), patch["value"])
        else:
            node[last] = patch["value"]
    return patched


async def _mutated_pod(context: contexts.AdmissionContext) -> dict[str, Any]:
    info = scenarios.BY_LABEL["Pod"]
    pod = scenarios.workload(info)
    answer = await mutating.review(
        json.dumps(scenarios.review(info, "CREATE", pod)).encode(), context
    )
    assert answer["response"]["allowed"], answer
    patches = json.loads(base64.b64decode(answer["response"]["patch"]))
    return _apply(pod, patches)


@pytest.mark.parametrize("label", [info.label for info in scenarios.KINDS if not info.sub_resource])
@pytest.mark.parametrize("verify_at_startup", [False, True])
async def test_a_privileged_startup_named_container_is_denied_in_every_kind(
    label: str, verify_at_startup: bool
) -> None:
    context = _context(verify_at_startup=verify_at_startup)
    info = scenarios.BY_LABEL[label]
    obj = scenarios.workload(info)
    container = {"name": contexts.STARTUP_CONTAINER_NAME, "image": context.startup_image}
    _pod_spec(label, obj)["initContainers"] = [{**container, **builders.PRIVILEGED}]
    answer = await _validate(context, scenarios.review(info, "CREATE", obj))
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert "is privileged" in message
    assert "may run as root" in message
    assert "is not from an allowed registry" in message  # image requirements apply too


@pytest.mark.parametrize("image", ["startup", scenarios.SIGNED])
async def test_a_fake_startup_container_gets_no_patch_and_is_denied(image: str) -> None:
    context = _context(verify_at_startup=True)
    info = scenarios.BY_LABEL["Pod"]
    pod = scenarios.workload(info)
    pod["spec"]["initContainers"] = [
        {
            "name": contexts.STARTUP_CONTAINER_NAME,
            "image": context.startup_image if image == "startup" else image,
            **HARMLESS_LOOKING,
        }
    ]
    body = json.dumps(scenarios.review(info, "CREATE", pod)).encode()
    mutated = await mutating.review(body, context)
    assert "patch" not in mutated["response"]
    answer = await _validate(context, scenarios.review(info, "CREATE", pod))
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert "spec.initContainers[0]: a policy asks to re-verify the model" in message
    assert "is not the one modelshield injects" in message


async def test_without_the_mutating_webhook_a_pod_is_denied_and_told_why() -> None:
    context = _context(verify_at_startup=True)
    info = scenarios.BY_LABEL["Pod"]
    answer = await _validate(context, scenarios.review(info, "CREATE", scenarios.workload(info)))
    assert answer["allowed"] is False
    assert "webhook.mutating" in answer["status"]["message"]


async def test_audit_admits_a_pod_without_it_with_a_warning() -> None:
    context = _context(verify_at_startup=True)
    info = scenarios.BY_LABEL["Pod"]
    pod = scenarios.workload(info, namespace=scenarios.AUDITED)
    answer = await _validate(context, scenarios.review(info, "CREATE", pod))
    assert answer["allowed"] is True
    assert any(contexts.STARTUP_CONTAINER_NAME in w for w in answer["warnings"])


async def test_the_injected_container_is_admitted_on_create_and_on_update() -> None:
    context = _context(verify_at_startup=True)
    info = scenarios.BY_LABEL["Pod"]
    pod = await _mutated_pod(context)
    assert pod["spec"]["initContainers"][0]["image"] == context.startup_image
    created = await _validate(context, scenarios.review(info, "CREATE", pod))
    assert created["allowed"] is True, created
    # As stored: the API server's defaults on the container and the ConfigMap volume.
    stored = copy.deepcopy(pod)
    stored["spec"]["initContainers"][0]["terminationMessagePath"] = "/dev/termination-log"
    stored["spec"]["volumes"][-1]["configMap"]["defaultMode"] = 420
    relabelled = copy.deepcopy(stored)
    relabelled["metadata"]["labels"]["tier"] = "gold"
    updated = await _validate(context, scenarios.review(info, "UPDATE", relabelled, stored))
    assert updated["allowed"] is True, updated


async def test_an_update_after_the_artifact_was_re_verified_keeps_the_pod_s_container() -> None:
    context = _context(verify_at_startup=True)
    info = scenarios.BY_LABEL["Pod"]
    pod = await _mutated_pod(context)
    newer = scenarios.model_artifact(scenarios.ENFORCED)
    newer["status"]["verifiedDigest"] = newer["spec"]["digest"] = "sha256:" + "d" * 64
    context.state.apply(caches.ARTIFACTS, "MODIFIED", newer)
    relabelled = copy.deepcopy(pod)
    relabelled["metadata"]["labels"]["tier"] = "gold"
    updated = await _validate(context, scenarios.review(info, "UPDATE", relabelled, pod))
    assert updated["allowed"] is True, updated
    # A new pod must carry the new digest.
    created = await _validate(context, scenarios.review(info, "CREATE", pod))
    assert created["allowed"] is False
    assert "is not the one modelshield injects" in created["status"]["message"]


async def test_the_injected_container_is_never_pinned_by_the_mutating_webhook() -> None:
    # An UPDATE through the mutating webhook with mutateToDigest: pinning the startup image
    # would make the container another one, which validation would then deny.
    # Signed, from an allowed registry, verified by tag.
    context = _context(scenarios.SIGNED_BY_TAG, verify_at_startup=True, mutate_to_digest=True)
    info = scenarios.BY_LABEL["Pod"]
    pod = await _mutated_pod(context)
    relabelled = copy.deepcopy(pod)
    relabelled["metadata"]["labels"]["tier"] = "gold"
    answer = await mutating.review(
        json.dumps(scenarios.review(info, "UPDATE", relabelled, pod)).encode(), context
    )
    assert "patch" not in answer["response"], answer
