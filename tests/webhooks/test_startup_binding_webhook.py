"""The mutating webhook binds the startup check to what the servers read (issue 21).

Over real HTTPS: the init container goes last, writable serving mounts of the model
volume are made read-only, and a mount that the check cannot cover is denied.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from modelshield_webhooks import caches, contexts
from tests.support import admissionscenarios as scenarios
from tests.support.httpsclient import HttpsClient

pytestmark = pytest.mark.integration


def _enable(context: contexts.AdmissionContext) -> None:
    context.state.apply(
        caches.POLICIES,
        "MODIFIED",
        scenarios.policy(scenarios.ENFORCED, verify_at_startup=True, generation=2),
    )


def _pod() -> dict[str, Any]:
    return scenarios.workload(scenarios.BY_LABEL["Pod"])


async def test_writable_model_mounts_become_read_only_and_the_check_runs_last(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    _enable(context)
    pod = _pod()
    pod["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] = False
    pod["spec"]["initContainers"] = [{"name": "download", "image": scenarios.SIGNED}]
    info = scenarios.BY_LABEL["Pod"]

    answer = await client.review("/mutate", scenarios.review(info, "CREATE", pod))

    patch = json.loads(base64.b64decode(answer["patch"]))
    assert patch[0] == {
        "op": "add",
        "path": "/spec/containers/0/volumeMounts/0/readOnly",
        "value": True,
    }
    assert patch[1]["path"] == "/spec/initContainers/-"
    assert patch[1]["value"]["name"] == contexts.STARTUP_CONTAINER_NAME


async def test_a_model_mount_with_a_sub_path_expr_is_denied(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    _enable(context)
    pod = _pod()
    mount = pod["spec"]["containers"][0]["volumeMounts"][0]
    mount["subPathExpr"] = "$(POD_NAME)"
    info = scenarios.BY_LABEL["Pod"]

    answer = await client.review("/mutate", scenarios.review(info, "CREATE", pod))

    assert answer["allowed"] is False
    assert "subPathExpr" in answer["status"]["message"]
