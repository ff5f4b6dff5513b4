"""Objects and probes of the KServe e2e tests: the policy, ModelArtifacts as the operator
writes them, a ServingRuntime, InferenceServices, and what the ReplicaSet controller
reports when a pod create is refused."""

from __future__ import annotations

import datetime
import json
from typing import Any

import yaml

from e2e.clients import Kubectl
from e2e.webhooks import Images, WebhookProcess, wait_for
from modelshield.engine import keyids

#: KServe writes its own `app` label on what it creates (isvc.<name>-predictor), so the
#: policy selects on a label of our own, which KServe copies from the InferenceService.
SELECTED = {"modelshield-e2e": "kserve"}
POLICY = "kserve-models"
RUNTIME = "fraud-runtime"
STORAGE_INITIALIZER = "storage-initializer"
#: KServe's pod mutator reads the model source of a pod from this annotation, which the
#: controller writes on the Deployment's pod template.
SOURCE_ANNOTATION = "internal.serving.kserve.io/storage-initializer-sourceuri"


def policy(namespace: str, images: Images) -> str:
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


def apply_policy(kubectl: Kubectl, namespace: str, images: Images) -> None:
    """The policy, once the webhook judges by it (a dry-run probe names it)."""
    kubectl("apply", "-n", namespace, "-f", "-", input_text=policy(namespace, images))
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


def model_artifact(
    kubectl: Kubectl, namespace: str, name: str, key_pem: str, *, verified: bool
) -> str:
    """A ModelArtifact for the directory s3://models/NAME/ (KServe's storage initializer
    downloads by key prefix) with the status the operator would write."""
    uri = f"s3://models/{name}/"
    apply_artifact(kubectl, namespace, name, uri, key_pem, verified=verified)
    return uri


def apply_artifact(
    kubectl: Kubectl, namespace: str, name: str, uri: str, key_pem: str, *, verified: bool = True
) -> None:
    """A ModelArtifact for uri with the status the operator writes once it checked the model.

    key_pem is the model-release signer's key: the status records its fingerprint, as the
    operator does, and admission trusts the key, not the name.
    """
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
        # The webhook judges the verdict's age on the wall clock: checked just now.
        "lastChecked": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "verifiedDigest": digest,
        "signer": "model-release",
        "signerKey": keyids.fingerprint(key_pem.encode()),
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


def serving_runtime(images: Images) -> str:
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


def inference_service(name: str, storage_uri: str, artifact: str | None = None) -> dict[str, Any]:
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


def apply(kubectl: Kubectl, namespace: str, body: dict[str, Any], *, check: bool = True) -> Any:
    return kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(body), check=check
    )


def wait_until_admitted(kubectl: Kubectl, namespace: str, body: dict[str, Any]) -> None:
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


def pod_reviews(webhook: WebhookProcess) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in webhook.metrics().splitlines()
        if line.startswith("modelshield_admission_requests_total{")
        and 'kind="Pod"' in line
        and 'endpoint="validate"' in line
    )


def pods_of(kubectl: Kubectl, namespace: str, service: str) -> list[dict[str, Any]]:
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


def failed_creates(kubectl: Kubectl, namespace: str, replica_set: str) -> list[str]:
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


def wait_for_owned(
    kubectl: Kubectl, namespace: str, kind: str, owner_kind: str, owner: str
) -> dict[str, Any]:
    """The first KIND in NAMESPACE whose controller owner is OWNER_KIND/OWNER."""

    def owned() -> dict[str, Any] | None:
        listed = json.loads(kubectl("get", kind, "-n", namespace, "-o", "json").stdout)
        for item in listed["items"]:
            for reference in item["metadata"].get("ownerReferences", []):
                if (
                    reference.get("controller")
                    and reference["kind"] == owner_kind
                    and reference["name"] == owner
                ):
                    found: dict[str, Any] = item
                    return found
        return None

    return wait_for(f"a {kind} owned by {owner_kind}/{owner} in {namespace}", owned)
