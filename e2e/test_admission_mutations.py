"""The admission webhook registered with a real API server: mutations and model facts.

Digest pinning of verified tags, the mutating webhook's matchCondition for pods (which
creates and updates the API server's CEL sends, counted on the webhook's /metrics), and
ModelArtifact facts (status written here as the operator would) with the startup
re-verification init container.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import yaml

from e2e import modelkeys
from e2e.clients import Cluster, Kubectl
from e2e.modelartifactbodies import _model_artifact
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
from modelshield.controllers.builders import modelkeys as modelkeys_builders
from modelshield.engine import startup, workloads

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
    return mutations(metrics, "Pod")


def mutations(metrics: str, kind: str) -> float:
    """How many mutating reviews of this kind the webhook has answered."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("modelshield_admission_mutations_total{") and f'kind="{kind}"' in line
    )


@dataclasses.dataclass(frozen=True)
class Probe:
    """An object no policy governs (no labels a policy selects), created as a server-side
    dry run: the API server evaluates the matchCondition all the same, and an evaluation
    error would deny the create (failurePolicy: Fail)."""

    sent: bool
    kind: str = "Pod"
    #: The image of the one container: "pinned" (by digest), "tagged", or None (no field).
    image: str | None = "pinned"
    init_image: str | None = None
    annotations: dict[str, str] | None = None


PROBES = {
    # No labels, annotations or initContainers: the optional fields the CEL guards.
    "bare-pinned-pod": Probe(sent=False),
    "tagged-pod": Probe(sent=True, image="tagged"),
    "pinned-pod-other-annotation": Probe(sent=False, annotations={"example.org/team": "fraud"}),
    "pinned-pod-naming-a-model": Probe(
        sent=True, annotations={workloads.MODEL_ANNOTATION: "fraud-v7"}
    ),
    "pinned-pod-pinned-init-container": Probe(sent=False, init_image="pinned"),
    "pinned-pod-tagged-init-container": Probe(sent=True, init_image="tagged"),
    # Schema validation (after mutating admission) refuses it; the CEL must not error first.
    "pod-without-an-image": Probe(sent=True, image=None),
    # Other kinds are always sent: a template is patched once, not once per replica.
    "pinned-deployment": Probe(sent=True, kind="Deployment"),
}


def _probe_body(name: str, probe: Probe, images: Images) -> dict[str, Any]:
    by_role = {"pinned": images.signed, "tagged": images.signed_tag}
    container: dict[str, Any] = {"name": "server"}
    if probe.image is not None:
        container["image"] = by_role[probe.image]
    spec: dict[str, Any] = {"containers": [container]}
    if probe.init_image is not None:
        spec["initContainers"] = [{"name": "fetch", "image": by_role[probe.init_image]}]
    metadata: dict[str, Any] = {"name": name}
    if probe.annotations is not None:
        metadata["annotations"] = probe.annotations
    if probe.kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
    labels = {"app": "condition-probe"}
    return {
        "apiVersion": "apps/v1",
        "kind": probe.kind,
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {**metadata, "labels": labels}, "spec": spec},
        },
    }


@pytest.mark.parametrize("name", sorted(PROBES))
def test_api_server_sends_pods_to_the_mutating_webhook_only_when_they_may_need_a_patch(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images, name: str
) -> None:
    probe = PROBES[name]
    before = mutations(webhook.metrics(), probe.kind)
    result = kubectl(
        "create",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input_text=yaml.safe_dump(_probe_body(name, probe, images)),
        check=False,
    )
    if probe.image is None:
        assert result.returncode != 0
        assert "spec.containers[0].image: Required value" in result.stderr, result.stderr
    else:
        assert result.returncode == 0, result.stderr
    after = mutations(webhook.metrics(), probe.kind)
    assert after - before == (1 if probe.sent else 0), webhook.log_path.read_text()[-3000:]


def test_ephemeral_containers_are_sent_only_when_not_pinned(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    # kubectl debug writes the pods/ephemeralcontainers subresource (an UPDATE of the Pod).
    body = _probe_body("debugged", Probe(sent=False), images)
    before = pod_mutations(webhook.metrics())
    kubectl("create", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(body))
    assert pod_mutations(webhook.metrics()) == before

    def debug(container: str, image: str) -> None:
        kubectl(
            "debug", "-n", namespace, "pod/debugged", f"--image={image}", f"--container={container}"
        )

    debug("pinned-shell", images.signed)
    assert pod_mutations(webhook.metrics()) == before
    debug("tagged-shell", images.signed_tag)
    assert pod_mutations(webhook.metrics()) == before + 1
    names = kubectl(
        "get", "-n", namespace, "pod/debugged", "-o", "jsonpath={.spec.ephemeralContainers[*].name}"
    ).stdout.split()
    assert names == ["pinned-shell", "tagged-shell"]


def test_model_facts_come_from_model_artifacts_and_pods_get_the_startup_check(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images, cluster: Cluster
) -> None:
    document = yaml.safe_load(policy(namespace, images))
    document["spec"]["models"] = {
        "signers": [{"name": "model-release", "publicKey": images.public_key}],
        "requireScan": True,
        "verifyAtStartup": True,
    }
    kubectl("apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(document))
    _model_artifact(kubectl, namespace, "fraud-v7", images.public_key, verified=True)
    _model_artifact(kubectl, namespace, "tampered", images.public_key, verified=False)

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
    # Bound to what runs (issue 21): the server's writable model mount was made read-only.
    mount = json.loads(
        kubectl(
            "get",
            "-n",
            namespace,
            "pod/served",
            "-o",
            "jsonpath={.spec.containers[0].volumeMounts[0]}",
        ).stdout
    )
    assert (mount["name"], mount.get("readOnly")) == ("model", True)

    # The check runs after the pod's own init containers, and a subPathExpr mount of the
    # model volume cannot be verified: denied.
    later = yaml.safe_load(pod("downloads-first", "fraud-v7"))
    later["spec"]["initContainers"] = [
        {**later["spec"]["containers"][0], "name": "download", "volumeMounts": []}
    ]
    kubectl("apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(later))
    names = kubectl(
        "get",
        "-n",
        namespace,
        "pod/downloads-first",
        "-o",
        "jsonpath={.spec.initContainers[*].name}",
    ).stdout.split()
    assert names == ["download", "modelshield-verify-model"]
    expression = yaml.safe_load(pod("expression", "fraud-v7"))
    expression["spec"]["containers"][0]["volumeMounts"][0]["subPathExpr"] = "$(HOSTNAME)"
    refused = kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(expression), check=False
    )
    assert refused.returncode != 0
    assert "subPathExpr" in refused.stderr

    result = kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=pod("refused", "tampered"), check=False
    )
    assert result.returncode != 0
    assert DENIED in result.stderr
    assert "model 'tampered' (s3://models/tampered/) has no verified signature" in result.stderr

    # The ConfigMap the pod mounts, as the operator publishes it, holds the key the init
    # container reads: the policy's public key for the signer fraud-v7's status records.
    key_path = init["command"][init["command"].index("--key") + 1]
    file_name = key_path.removeprefix(startup.KEYS_MOUNT + "/")
    assert file_name == startup.key_file_name("fraud-v7", "model-release")
    mounted = json.loads(
        kubectl(
            "get",
            "-n",
            namespace,
            "pod/served",
            "-o",
            f"jsonpath={{.spec.volumes[?(@.name=='{modelkeys.NAME}')]}}",
        ).stdout
    )
    assert mounted["configMap"]["name"] == modelkeys.NAME
    with modelkeys.publishing_model_keys(cluster):
        published = wait_for(
            f"{modelkeys.NAME} in {namespace} with {file_name}",
            lambda: (modelkeys.data(cluster, namespace) or {}).get(file_name),
        )
    assert published == modelkeys_builders.canonical_public_key(images.public_key.encode())
    # The unverified artifact contributes nothing.
    assert set(modelkeys.data(cluster, namespace) or {}) == {file_name}

    # The injected container, as the API server stored it (its defaults filled in), stays
    # accepted when the pod is updated.
    kubectl("label", "-n", namespace, "pod/served", "tier=gold")

    # A pod bringing its own container under that name (hardened, the startup image, but
    # `true`) gets no injection and is denied: verifyAtStartup is enforced by validation.
    fake = yaml.safe_load(pod("fake", "fraud-v7"))
    fake["spec"]["initContainers"] = [
        {
            "name": startup.CONTAINER_NAME,
            "image": init["image"],
            "command": ["true"],
            "securityContext": init["securityContext"],
            "resources": init["resources"],
        }
    ]
    result = kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(fake), check=False
    )
    assert result.returncode != 0, "a pod with a fake startup container was admitted"
    assert DENIED in result.stderr
    assert "is not the one modelshield injects" in result.stderr
    # And a privileged one is judged like any container, runtime checks included.
    fake["spec"]["initContainers"][0]["securityContext"] = {"privileged": True, "runAsUser": 0}
    result = kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(fake), check=False
    )
    assert result.returncode != 0
    assert "is privileged" in result.stderr
