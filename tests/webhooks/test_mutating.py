"""The mutating webhook over real HTTPS: digest pinning and the startup init container."""

from __future__ import annotations

import base64
import json

import pytest

from modelshield_webhooks import caches, contexts, mutating
from tests.support import admissionscenarios as scenarios
from tests.support.httpsclient import HttpsClient

pytestmark = pytest.mark.integration


async def test_mutate_pins_tags_to_the_verified_digest(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    context.state.apply(
        caches.POLICIES,
        "MODIFIED",
        scenarios.policy(scenarios.ENFORCED, mutate_to_digest=True, generation=2),
    )
    info = scenarios.BY_LABEL["Deployment"]
    obj = scenarios.workload(info, [scenarios.SIGNED_BY_TAG, scenarios.UNSIGNED])
    answer = await client.review("/mutate", scenarios.review(info, "CREATE", obj))
    assert answer["allowed"] is True
    assert answer["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(answer["patch"]))
    assert patch == [
        {
            "op": "replace",
            "path": "/spec/template/spec/containers/0/image",
            "value": f"{scenarios.SIGNED_BY_TAG}@{scenarios.DIGEST}",
        }
    ]


async def test_an_update_pins_only_the_images_it_sets(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    # Pinning the untouched first container would restart it (Pod) or roll out (template)
    # because of an edit that did not concern it.
    context.state.apply(
        caches.POLICIES,
        "MODIFIED",
        scenarios.policy(scenarios.ENFORCED, mutate_to_digest=True, generation=2),
    )
    info = scenarios.BY_LABEL["Deployment"]
    old = scenarios.workload(info, [scenarios.SIGNED_BY_TAG, scenarios.UNSIGNED])
    new = scenarios.workload(info, [scenarios.SIGNED_BY_TAG, scenarios.SIGNED_BY_TAG])
    answer = await client.review("/mutate", scenarios.review(info, "UPDATE", new, old))
    assert answer["allowed"] is True
    assert json.loads(base64.b64decode(answer["patch"])) == [
        {
            "op": "replace",
            "path": "/spec/template/spec/containers/1/image",
            "value": f"{scenarios.SIGNED_BY_TAG}@{scenarios.DIGEST}",
        }
    ]


async def test_mutate_injects_the_startup_verification_into_pods(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    context.state.apply(
        caches.POLICIES,
        "MODIFIED",
        scenarios.policy(scenarios.ENFORCED, verify_at_startup=True, generation=2),
    )
    info = scenarios.BY_LABEL["Pod"]
    answer = await client.review(
        "/mutate", scenarios.review(info, "CREATE", scenarios.workload(info))
    )
    patch = json.loads(base64.b64decode(answer["patch"]))
    add_container, add_volume = patch
    assert add_container["op"] == "add"
    assert add_container["path"] == "/spec/initContainers"
    (init,) = add_container["value"]
    assert init["name"] == contexts.STARTUP_CONTAINER_NAME
    assert init["image"] == context.startup_image
    # The ModelArtifact's verified digest and signer, the model volume mounted read-only.
    assert init["command"][:4] == ["modelshield", "model", "verify", "/models"]
    assert "sha256:" + "b" * 64 in init["command"]
    assert init["env"] == [{"name": "MODELSHIELD_EXPECTED_SIGNER", "value": scenarios.MODEL_SIGNER}]
    assert {m["name"] for m in init["volumeMounts"]} == {"model", mutating.MODEL_KEYS}
    assert all(mount["readOnly"] for mount in init["volumeMounts"])
    assert add_volume == {
        "op": "add",
        "path": "/spec/volumes/-",
        "value": {"name": mutating.MODEL_KEYS, "configMap": {"name": mutating.MODEL_KEYS}},
    }

    # The validating webhook, which runs next, accepts the pod with its injected container.
    pod = scenarios.workload(info)
    pod["spec"]["initContainers"] = [init]
    pod["spec"]["volumes"].append(add_volume["value"])
    validated = await client.review("/validate", scenarios.review(info, "CREATE", pod))
    assert validated["allowed"] is True, validated
    # ...but not another image under that name.
    pod["spec"]["initContainers"] = [{**init, "image": scenarios.UNSIGNED}]
    validated = await client.review("/validate", scenarios.review(info, "CREATE", pod))
    assert validated["allowed"] is False


async def test_startup_verification_without_a_model_volume_is_refused(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    context.state.apply(
        caches.POLICIES,
        "MODIFIED",
        scenarios.policy(scenarios.ENFORCED, verify_at_startup=True, generation=2),
    )
    info = scenarios.BY_LABEL["Pod"]
    pod = scenarios.workload(info, realistic=False)
    answer = await client.review("/mutate", scenarios.review(info, "CREATE", pod))
    assert answer["allowed"] is False
    assert "models.verifyAtStartup" in answer["status"]["message"]


async def test_mutate_without_mutating_policies_returns_no_patch(client: HttpsClient) -> None:
    info = scenarios.BY_LABEL["Pod"]
    answer = await client.review(
        "/mutate", scenarios.review(info, "CREATE", scenarios.workload(info))
    )
    assert answer == {"uid": answer["uid"], "allowed": True}
