"""InferenceServices served by KServe's real controller, judged by modelshield's webhook.

KServe's ``cmd/manager`` (e2e/kserve.py) turns each InferenceService into a Deployment in
Standard (RawDeployment) mode; kube-controller-manager makes its ReplicaSet, whose pod
creates pass KServe's pod mutator (which injects the storage initializer that downloads
the model) and then modelshield's webhooks. There is no node: the pods stay Pending.
ModelArtifact status is written here as the operator would write it (the operator's own
fetching and verifying is e2e/test_model_artifacts.py).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from e2e.clients import Kubectl
from e2e.kserve import KServe, kserve, set_storage_initializer_image, wait_for_owned
from e2e.webhooks import DENIED, Images, WebhookProcess, images, wait_for, webhook

__all__ = ["images", "kserve", "webhook"]  # module-scoped fixtures, shared by name

#: KServe writes its own `app` label on what it creates (isvc.<name>-predictor), so the
#: policy selects on a label of our own, which KServe copies from the InferenceService.
SELECTED = {"modelshield-e2e": "kserve"}
POLICY = "kserve-models"
RUNTIME = "fraud-runtime"
STORAGE_INITIALIZER = "storage-initializer"
#: KServe's pod mutator reads the model source of a pod from this annotation, which the
#: controller writes on the Deployment's pod template.
SOURCE_ANNOTATION = "internal.serving.kserve.io/storage-initializer-sourceuri"


def _policy(namespace: str, images: Images) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "modelshield.dev/v1alpha1",
            "kind": "ModelSecurityPolicy",
            "metadata": {"name": POLICY, "namespace": namespace},
            "spec": {
                "enforcement": "Enforce",
                "selector": {"matchLabels": SELECTED},
                "images": {
                    "allowedRegistries": [f"{images.registry}/"],
                    "signers": [{"name": "release", "publicKey": images.public_key}],
                },
                "models": {"signers": [{"name": "model-release", "publicKey": images.public_key}]},
            },
        }
    )


def _apply_policy(kubectl: Kubectl, namespace: str, images: Images) -> None:
    """The policy, once the webhook judges by it (a dry-run probe names it)."""
    kubectl("apply", "-n", namespace, "-f", "-", input_text=_policy(namespace, images))
    probe = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "probe", "labels": SELECTED},
            "spec": {"containers": [{"name": "probe", "image": images.unsigned}]},
        }
    )

    def judged() -> bool:
        result = kubectl(
            "create", "--dry-run=server", "-n", namespace, "-f", "-", input_text=probe, check=False
        )
        return f"ModelSecurityPolicy {namespace}/{POLICY}" in result.stderr

    wait_for("the webhook to see the policy", judged)


def _model_artifact(kubectl: Kubectl, namespace: str, name: str, *, verified: bool) -> str:
    """A ModelArtifact for the directory s3://models/NAME/ (KServe's storage initializer
    downloads by key prefix) with the status the operator would write."""
    uri = f"s3://models/{name}/"
    digest = "sha256:" + "c" * 64
    manifest = {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelArtifact",
        "metadata": {"name": name},
        "spec": {"uri": uri, "digest": digest},
    }
    kubectl("apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(manifest))
    when = "2026-12-03T08:00:00Z"
    status = {
        "observedGeneration": 1,
        "verifiedDigest": digest,
        "signer": "model-release",
        "conditions": [
            {
                "type": "Verified",
                "status": "True" if verified else "False",
                "reason": "Signed" if verified else "SignatureMismatch",
                "lastTransitionTime": when,
            },
            {"type": "Scanned", "status": "True", "reason": "Clean", "lastTransitionTime": when},
        ],
    }
    kubectl(
        "patch",
        "-n",
        namespace,
        f"modelartifact/{name}",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    return uri


def _serving_runtime(images: Images) -> str:
    """A namespaced runtime for the sklearn format whose server is the signed image."""
    return yaml.safe_dump(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ServingRuntime",
            "metadata": {"name": RUNTIME},
            "spec": {
                "supportedModelFormats": [{"name": "sklearn", "version": "1", "autoSelect": True}],
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": images.signed,
                        "args": ["--model_dir=/mnt/models"],
                        "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                    }
                ],
            },
        }
    )


def _inference_service(name: str, storage_uri: str, artifact: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": dict(SELECTED)}
    if artifact is not None:
        metadata["annotations"] = {"modelshield.dev/model-artifact": artifact}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "runtime": RUNTIME,
                    "storageUri": storage_uri,
                    "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                }
            }
        },
    }


def _apply(kubectl: Kubectl, namespace: str, body: dict[str, Any], *, check: bool = True) -> Any:
    return kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(body), check=check
    )


def _wait_until_admitted(kubectl: Kubectl, namespace: str, body: dict[str, Any]) -> None:
    """The webhook's cache sees ModelArtifacts by watch: wait until a dry run passes."""

    def admitted() -> bool:
        result = kubectl(
            "create",
            "--dry-run=server",
            "-n",
            namespace,
            "-f",
            "-",
            input_text=yaml.safe_dump(body),
            check=False,
        )
        return result.returncode == 0

    wait_for(f"a dry run of {body['kind']} {body['metadata']['name']} to be admitted", admitted)


def _pod_reviews(webhook: WebhookProcess) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in webhook.metrics().splitlines()
        if line.startswith("modelshield_admission_requests_total{")
        and 'kind="Pod"' in line
        and 'endpoint="validate"' in line
    )


def _pods_of(kubectl: Kubectl, namespace: str, service: str) -> list[dict[str, Any]]:
    listed = json.loads(
        kubectl(
            "get",
            "pods",
            "-n",
            namespace,
            "-l",
            f"serving.kserve.io/inferenceservice={service}",
            "-o",
            "json",
        ).stdout
    )
    pods: list[dict[str, Any]] = listed["items"]
    return pods


def _failed_creates(kubectl: Kubectl, namespace: str, replica_set: str) -> list[str]:
    listed = json.loads(
        kubectl(
            "get",
            "events",
            "-n",
            namespace,
            f"--field-selector=involvedObject.name={replica_set},reason=FailedCreate",
            "-o",
            "json",
        ).stdout
    )
    return [str(event["message"]) for event in listed["items"]]


def test_kserve_creates_the_deployment_and_its_pod_passes_modelshield_with_the_storage_initializer(
    webhook: WebhookProcess, kserve: KServe, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    _apply_policy(kubectl, namespace, images)
    uri = _model_artifact(kubectl, namespace, "fraud-v7", verified=True)
    kubectl("apply", "-n", namespace, "-f", "-", input_text=_serving_runtime(images))
    service = _inference_service("fraud", uri, artifact="fraud-v7")
    _wait_until_admitted(kubectl, namespace, service)
    reviews_before = _pod_reviews(webhook)

    _apply(kubectl, namespace, service)

    deployment = wait_for_owned(kubectl, namespace, "deployments", "InferenceService", "fraud")
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"][SOURCE_ANNOTATION] == uri
    assert template["metadata"]["labels"]["modelshield-e2e"] == "kserve"
    assert [c["image"] for c in template["spec"]["containers"]] == [images.signed]
    replica_set = wait_for_owned(
        kubectl, namespace, "replicasets", "Deployment", deployment["metadata"]["name"]
    )
    pod = wait_for_owned(kubectl, namespace, "pods", "ReplicaSet", replica_set["metadata"]["name"])
    # KServe's pod mutator ran before modelshield judged the pod: the storage initializer
    # it injects downloads exactly the InferenceService's storageUri.
    initializer = next(
        c for c in pod["spec"].get("initContainers", []) if c["name"] == STORAGE_INITIALIZER
    )
    assert initializer["image"] == images.signed
    assert initializer["args"] == [uri, "/mnt/models"]
    assert pod["status"]["phase"] == "Pending"
    assert "nodeName" not in pod["spec"]
    assert _pod_reviews(webhook) > reviews_before


def test_an_unsigned_storage_initializer_is_denied_at_the_pod(
    webhook: WebhookProcess, kserve: KServe, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    """The storage initializer's image comes from KServe's cluster-wide ConfigMap, not from
    the InferenceService: only the pod shows it."""
    _apply_policy(kubectl, namespace, images)
    uri = _model_artifact(kubectl, namespace, "fraud-v7", verified=True)
    kubectl("apply", "-n", namespace, "-f", "-", input_text=_serving_runtime(images))
    service = _inference_service("swapped-initializer", uri, artifact="fraud-v7")
    _wait_until_admitted(kubectl, namespace, service)
    set_storage_initializer_image(kubectl, kserve.release, images.unsigned)
    try:
        _apply(kubectl, namespace, service)
        deployment = wait_for_owned(
            kubectl, namespace, "deployments", "InferenceService", "swapped-initializer"
        )
        replica_set = wait_for_owned(
            kubectl, namespace, "replicasets", "Deployment", deployment["metadata"]["name"]
        )
        messages = wait_for(
            "the ReplicaSet's pod create to be refused",
            lambda: _failed_creates(kubectl, namespace, replica_set["metadata"]["name"]),
        )
    finally:
        set_storage_initializer_image(kubectl, kserve.release, images.signed)
    assert DENIED in messages[0]
    assert f"ModelSecurityPolicy {namespace}/{POLICY}" in messages[0]
    assert "spec.initContainers[0].image" in messages[0]
    assert f"container '{STORAGE_INITIALIZER}' image '{images.unsigned}'" in messages[0]
    assert _pods_of(kubectl, namespace, "swapped-initializer") == []


def test_an_unknown_or_unverified_model_source_is_denied_at_the_inference_service(
    webhook: WebhookProcess, kserve: KServe, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    _apply_policy(kubectl, namespace, images)
    verified = _model_artifact(kubectl, namespace, "fraud-v7", verified=True)
    tampered = _model_artifact(kubectl, namespace, "tampered", verified=False)
    kubectl("apply", "-n", namespace, "-f", "-", input_text=_serving_runtime(images))
    _wait_until_admitted(kubectl, namespace, _inference_service("probe", verified))

    cases = {
        "unknown": _inference_service("unknown", "s3://models/nobody-checked/"),
        # The annotation names a verified artifact; the model served is another one.
        "annotated": _inference_service("annotated", "s3://models/nobody-checked/", "fraud-v7"),
        "tampered": _inference_service("tampered", tampered),
    }
    for name, body in cases.items():
        result = _apply(kubectl, namespace, body, check=False)
        assert result.returncode != 0, f"{name} was admitted"
        assert DENIED in result.stderr, result.stderr
        assert f"InferenceService {namespace}/{name}" in result.stderr
        assert "spec.predictor.model.storageUri" in result.stderr
    created = kubectl("get", "inferenceservices,deployments", "-n", namespace, "-o", "name")
    assert created.stdout.strip() == ""


def test_a_model_source_nobody_checked_is_denied_at_the_pod(
    webhook: WebhookProcess, kserve: KServe, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    """The pod check stands on its own. An InferenceService admitted before any policy
    governed it keeps its Deployment; every pod its ReplicaSet makes afterwards is judged
    by what KServe's storage initializer will download, whatever the annotation claims."""
    _model_artifact(kubectl, namespace, "fraud-v7", verified=True)
    kubectl("apply", "-n", namespace, "-f", "-", input_text=_serving_runtime(images))
    unchecked = "s3://models/nobody-checked/"
    _apply(kubectl, namespace, _inference_service("before-policy", unchecked, "fraud-v7"))
    deployment = wait_for_owned(
        kubectl, namespace, "deployments", "InferenceService", "before-policy"
    )
    replica_set = wait_for_owned(
        kubectl, namespace, "replicasets", "Deployment", deployment["metadata"]["name"]
    )
    first = wait_for_owned(
        kubectl, namespace, "pods", "ReplicaSet", replica_set["metadata"]["name"]
    )
    initializer = first["spec"]["initContainers"][0]
    assert (initializer["name"], initializer["args"][0]) == (STORAGE_INITIALIZER, unchecked)

    _apply_policy(kubectl, namespace, images)
    kubectl("delete", "-n", namespace, f"pod/{first['metadata']['name']}", "--wait=false")

    messages = wait_for(
        "the ReplicaSet's replacement pod to be refused",
        lambda: _failed_creates(kubectl, namespace, replica_set["metadata"]["name"]),
    )
    assert DENIED in messages[0]
    # The violation sits where the storage initializer is told what to download.
    at_the_initializer = [
        line for line in messages[0].splitlines() if "spec.initContainers[0].args[0]: " in line
    ]
    assert at_the_initializer, messages[0]
    assert f"'{unchecked}'" in at_the_initializer[0]
    remaining = [p["metadata"]["name"] for p in _pods_of(kubectl, namespace, "before-policy")]
    assert remaining in ([], [first["metadata"]["name"]])  # the first may still be terminating
