"""Ephemeral containers on the real API server (issue 19).

What ``kubectl debug`` does, written by hand: a PUT and a PATCH of
``/api/v1/namespaces/NS/pods/NAME/ephemeralcontainers`` on a pod whose model the startup
check verified. The API server sends the webhook an UPDATE of the Pod with
``subResource: ephemeralcontainers``; a debugger mounting the model volume writable (it
could rewrite the model after the check) is refused, read-only is admitted, and an
unsigned image is refused like in any container.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from e2e.clients import Kubectl
from e2e.modelartifactbodies import _model_artifact
from e2e.webhooks import DENIED, Images, WebhookProcess, images, policy, wait_for, webhook, workload

__all__ = ["images", "webhook"]  # module-scoped fixtures, shared by name


def _verified_pod(kubectl: Kubectl, namespace: str, images: Images) -> dict[str, Any]:
    document = yaml.safe_load(policy(namespace, images))
    document["spec"]["models"] = {
        "signers": [{"name": "model-release", "publicKey": images.public_key}],
        "verifyAtStartup": True,
    }
    kubectl("apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(document))
    _model_artifact(kubectl, namespace, "fraud-v7", images.public_key, verified=True)
    body = yaml.safe_load(workload("Pod", "served", images.signed))
    body["metadata"]["annotations"] = {"modelshield.dev/model-artifact": "fraud-v7"}
    body["spec"]["volumes"] = [{"name": "model", "emptyDir": {}}]
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": "model", "mountPath": "/models"}]

    def created() -> bool:
        result = kubectl(
            "apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(body), check=False
        )
        return result.returncode == 0

    wait_for("the webhook to see the verified ModelArtifact", created)
    pod: dict[str, Any] = json.loads(
        kubectl("get", "-n", namespace, "pod/served", "-o", "json").stdout
    )
    assert pod["spec"]["initContainers"][-1]["name"] == "modelshield-verify-model"
    return pod


def _debugger(name: str, image: str, read_only: bool | None) -> dict[str, Any]:
    mount: dict[str, Any] = {"name": "model", "mountPath": "/debug/models"}
    if read_only is not None:
        mount["readOnly"] = read_only
    return {
        "name": name,
        "image": image,
        "targetContainerName": "server",
        "command": ["sleep", "3600"],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [mount],
    }


def _put(kubectl: Kubectl, namespace: str, pod: dict[str, Any], debugger: dict[str, Any]) -> Any:
    body = json.loads(json.dumps(pod))
    body["spec"].setdefault("ephemeralContainers", []).append(debugger)
    uri = f"/api/v1/namespaces/{namespace}/pods/served/ephemeralcontainers"
    return kubectl("replace", "--raw", uri, "-f", "-", input_text=json.dumps(body), check=False)


def _patch(kubectl: Kubectl, namespace: str, debugger: dict[str, Any]) -> Any:
    # kubectl debug sends a strategic merge patch of the subresource.
    patch = {"spec": {"ephemeralContainers": [debugger]}}
    return kubectl(
        "patch",
        "-n",
        namespace,
        "pod/served",
        "--subresource=ephemeralcontainers",
        "--type=strategic",
        "-p",
        json.dumps(patch),
        check=False,
    )


def _names(kubectl: Kubectl, namespace: str) -> list[str]:
    return kubectl(
        "get", "-n", namespace, "pod/served", "-o", "jsonpath={.spec.ephemeralContainers[*].name}"
    ).stdout.split()


def test_kubectl_debug_may_not_mount_the_verified_model_writable(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    pod = _verified_pod(kubectl, namespace, images)

    refused = _put(kubectl, namespace, pod, _debugger("writer", images.signed, None))
    assert refused.returncode != 0
    assert DENIED in refused.stderr
    assert "spec.ephemeralContainers[0].volumeMounts[0].readOnly" in refused.stderr
    assert "ephemeral container 'writer' mounts the model volume 'model' writable" in (
        refused.stderr
    )
    refused = _patch(kubectl, namespace, _debugger("patched-writer", images.signed, False))
    assert refused.returncode != 0
    assert "ephemeral container 'patched-writer' mounts the model volume" in refused.stderr
    assert _names(kubectl, namespace) == []

    unsigned = _patch(kubectl, namespace, _debugger("unsigned", images.unsigned, True))
    assert unsigned.returncode != 0
    assert f"container 'unsigned' image '{images.unsigned}' has no signature" in unsigned.stderr

    _patch_ok = _patch(kubectl, namespace, _debugger("reader", images.signed, True))
    assert _patch_ok.returncode == 0, _patch_ok.stderr
    assert _names(kubectl, namespace) == ["reader"]
    # The admitted debugger is not judged again when another one is added.
    current = json.loads(kubectl("get", "-n", namespace, "pod/served", "-o", "json").stdout)
    added = _put(kubectl, namespace, current, _debugger("reader-2", images.signed, True))
    assert added.returncode == 0, added.stderr
    assert _names(kubectl, namespace) == ["reader", "reader-2"]


def test_the_api_server_refuses_ephemeral_containers_on_create(
    kubectl: Kubectl, namespace: str
) -> None:
    # Why only the subresource UPDATE can bring them: the API server's own validation.
    body = yaml.safe_load(workload("Pod", "created-debugged", "registry.invalid/x:1"))
    body["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "registry.invalid/x:1"}]

    result = kubectl(
        "create", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(body), check=False
    )

    assert result.returncode != 0
    assert "spec.ephemeralContainers: Forbidden: cannot be set on create" in result.stderr
