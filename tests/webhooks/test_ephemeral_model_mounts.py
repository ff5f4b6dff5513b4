"""``kubectl debug`` on a pod whose model was verified at start (issue 19), over HTTPS.

The API server sends the ``ephemeralcontainers`` subresource as an UPDATE of the Pod
(kind ``Pod``, ``subResource: ephemeralcontainers``). Before, the validating webhook
judged that UPDATE as "admitted before" for the startup check and let an ephemeral
container mount the model volume writable after the check passed.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from modelshield_webhooks import caches, contexts
from tests.support import admissionscenarios as scenarios
from tests.support.httpsclient import HttpsClient

pytestmark = pytest.mark.integration

POD = scenarios.BY_LABEL["Pod"]
SUBRESOURCE = scenarios.BY_LABEL["Pod/ephemeralcontainers"]


def _apply_adds(obj: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSONPatch "add" operations the mutating webhook answers, applied as the API
    server does (only adds are answered here)."""
    result = copy.deepcopy(obj)
    for operation in patch:
        assert operation["op"] == "add", operation
        *parents, last = operation["path"].split("/")[1:]
        target: Any = result
        for token in parents:
            target = target[int(token)] if isinstance(target, list) else target[token]
        if isinstance(target, list):
            target.insert(len(target) if last == "-" else int(last), operation["value"])
        else:
            target[last] = operation["value"]
    return result


async def _admitted_pod(client: HttpsClient, context: contexts.AdmissionContext) -> dict[str, Any]:
    context.state.apply(
        caches.POLICIES,
        "MODIFIED",
        scenarios.policy(scenarios.ENFORCED, verify_at_startup=True, generation=2),
    )
    pod = scenarios.workload(POD)
    mutated = await client.review("/mutate", scenarios.review(POD, "CREATE", pod))
    admitted = _apply_adds(pod, json.loads(base64.b64decode(mutated["patch"])))
    answer = await client.review("/validate", scenarios.review(POD, "CREATE", admitted))
    assert answer["allowed"] is True, answer
    return admitted


def _debugged(pod: dict[str, Any], read_only: bool | None, name: str) -> dict[str, Any]:
    debugger = scenarios.container(scenarios.SIGNED, name, realistic=False)
    mount: dict[str, Any] = {"name": "model", "mountPath": "/debug/models"}
    if read_only is not None:
        mount["readOnly"] = read_only
    debugger.update(targetContainerName="server", volumeMounts=[mount])
    new = copy.deepcopy(pod)
    new["spec"].setdefault("ephemeralContainers", []).append(debugger)
    return new


@pytest.mark.parametrize("read_only", [None, False])
async def test_a_debugger_mounting_the_model_writable_is_denied(
    client: HttpsClient, context: contexts.AdmissionContext, read_only: bool | None
) -> None:
    pod = await _admitted_pod(client, context)
    new = _debugged(pod, read_only, "debugger")

    answer = await client.review("/validate", scenarios.review(SUBRESOURCE, "UPDATE", new, pod))

    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert "spec.ephemeralContainers[0].volumeMounts[0].readOnly" in message
    assert "ephemeral container 'debugger' mounts the model volume 'model' writable" in message


async def test_a_debugger_mounting_the_model_read_only_is_admitted(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    pod = await _admitted_pod(client, context)
    new = _debugged(pod, True, "debugger")

    answer = await client.review("/validate", scenarios.review(SUBRESOURCE, "UPDATE", new, pod))

    assert answer["allowed"] is True, answer


async def test_a_debugger_the_pod_already_had_is_not_judged_again(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    pod = await _admitted_pod(client, context)
    before = _debugged(pod, False, "old")  # admitted before this rule existed
    new = _debugged(before, True, "new")

    answer = await client.review("/validate", scenarios.review(SUBRESOURCE, "UPDATE", new, before))

    assert answer["allowed"] is True, answer
