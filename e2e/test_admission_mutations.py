"""The admission webhook registered with a real API server: mutations and model facts.

Digest pinning of verified tags, the mutating webhook's matchCondition for pods, and
ModelArtifact facts (status written here as the operator would) with the startup
re-verification init container.
"""

from __future__ import annotations

import json

import yaml

from e2e.clients import Kubectl
from e2e.webhooks import (
    DENIED,
    Images,
    WebhookProcess,
    apply_policy,
    images,
    policy,
    wait_for,
    webhook,
    workload,
)

__all__ = ["images", "webhook"]  # module-scoped fixtures, shared by name


def test_mutating_webhook_pins_verified_tags_to_their_digest(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    apply_policy(kubectl, namespace, images, mutate_to_digest=True)
    digest = images.signed.split("@", 1)[1]
    pinned = f"{images.signed_tag}@{digest}"
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_text=workload("Deployment", "tagged", images.signed_tag),
    )
    template_image = kubectl(
        "get",
        "-n",
        namespace,
        "deployment/tagged",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ).stdout
    assert template_image == pinned, webhook.log_path.read_text()[-3000:]
    # A pod made with the tag directly is pinned too (the pod matchCondition lets it through).
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_text=workload("Pod", "tagged-pod", images.signed_tag),
    )
    pod_image = kubectl(
        "get", "-n", namespace, "pod/tagged-pod", "-o", "jsonpath={.spec.containers[0].image}"
    ).stdout
    assert pod_image == pinned


def test_pinned_pods_without_a_model_are_not_sent_to_the_mutating_webhook(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    apply_policy(kubectl, namespace, images, mutate_to_digest=True)
    before = pod_mutations(webhook.metrics())
    kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=workload("Pod", "pinned", images.signed)
    )
    assert pod_mutations(webhook.metrics()) == before
    kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=workload("Pod", "by-tag", images.signed_tag)
    )
    assert pod_mutations(webhook.metrics()) == before + 1


def pod_mutations(metrics: str) -> float:
    """How many mutating reviews of Pods the webhook has answered."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("modelshield_admission_mutations_total{") and 'kind="Pod"' in line
    )


def _model_artifact(kubectl: Kubectl, namespace: str, name: str, *, verified: bool) -> None:
    """A ModelArtifact whose status (written here as the operator would) says what it proves."""
    digest = "sha256:" + "b" * 64
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_text=yaml.safe_dump(
            {
                "apiVersion": "modelshield.dev/v1alpha1",
                "kind": "ModelArtifact",
                "metadata": {"name": name},
                "spec": {"uri": f"s3://models/{name}", "digest": digest},
            }
        ),
    )
    when = "2026-11-26T08:00:00Z"
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


def test_model_facts_come_from_model_artifacts_and_pods_get_the_startup_check(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    document = yaml.safe_load(policy(namespace, images))
    document["spec"]["models"] = {
        "signers": [{"name": "model-release", "publicKey": images.public_key}],
        "requireScan": True,
        "verifyAtStartup": True,
    }
    kubectl("apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(document))
    _model_artifact(kubectl, namespace, "fraud-v7", verified=True)
    _model_artifact(kubectl, namespace, "tampered", verified=False)

    def pod(name: str, model: str) -> str:
        body = yaml.safe_load(workload("Pod", name, images.signed))
        body["metadata"]["annotations"] = {"modelshield.dev/model-artifact": model}
        body["spec"]["volumes"] = [{"name": "model", "emptyDir": {}}]
        body["spec"]["containers"][0]["volumeMounts"] = [{"name": "model", "mountPath": "/models"}]
        return yaml.safe_dump(body)

    def admitted() -> bool:
        result = kubectl(
            "create",
            "--dry-run=server",
            "-n",
            namespace,
            "-f",
            "-",
            input_text=pod("probe", "fraud-v7"),
            check=False,
        )
        return result.returncode == 0

    wait_for("the webhook to see the verified ModelArtifact", admitted)
    kubectl("apply", "-n", namespace, "-f", "-", input_text=pod("served", "fraud-v7"))
    init = json.loads(
        kubectl(
            "get", "-n", namespace, "pod/served", "-o", "jsonpath={.spec.initContainers[0]}"
        ).stdout
    )
    assert init["name"] == "modelshield-verify-model"
    assert init["command"][:4] == ["modelshield", "model", "verify", "/models"]
    volumes = kubectl(
        "get", "-n", namespace, "pod/served", "-o", "jsonpath={.spec.volumes[*].name}"
    ).stdout
    assert "modelshield-model-keys" in volumes.split()

    result = kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=pod("refused", "tampered"), check=False
    )
    assert result.returncode != 0
    assert DENIED in result.stderr
    assert "model 'tampered' (s3://models/tampered) has no verified signature" in result.stderr
