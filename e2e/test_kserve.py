"""InferenceServices served by KServe's real controller, judged by modelshield's webhook.

KServe's ``cmd/manager`` (e2e/kserve.py) turns each InferenceService into a Deployment in
Standard (RawDeployment) mode; kube-controller-manager makes its ReplicaSet, whose pod
creates pass KServe's pod mutator (which injects the storage initializer that downloads
the model) and then modelshield's webhooks. A pod that exists passed them; whether a node
then runs it is not these tests' question (the local control plane has none; on kind the
test registry on this machine's loopback is out of the node's reach).
ModelArtifact status is written here as the operator would write it (the operator's own
fetching and verifying is e2e/test_model_artifacts.py).
"""

from __future__ import annotations

import json

from e2e.clients import Kubectl
from e2e.kserve import KServe, kserve, set_storage_initializer_image
from e2e.kserve_objects import (
    POLICY,
    SOURCE_ANNOTATION,
    STORAGE_INITIALIZER,
    apply,
    apply_policy,
    failed_creates,
    inference_service,
    model_artifact,
    pod_reviews,
    pods_of,
    serving_runtime,
    wait_for_owned,
    wait_until_admitted,
)
from e2e.webhooks import DENIED, Images, WebhookProcess, images, wait_for, webhook

__all__ = ["images", "kserve", "webhook"]  # module-scoped fixtures, shared by name


def test_kserve_creates_the_deployment_and_its_pod_passes_modelshield_with_the_storage_initializer(
    webhook: WebhookProcess, kserve: KServe, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    apply_policy(kubectl, namespace, images)
    uri = model_artifact(kubectl, namespace, "fraud-v7", images.public_key, verified=True)
    kubectl("apply", "-n", namespace, "-f", "-", input_text=serving_runtime(images))
    service = inference_service("fraud", uri, artifact="fraud-v7")
    wait_until_admitted(kubectl, namespace, service)
    reviews_before = pod_reviews(webhook)

    apply(kubectl, namespace, service)

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
    assert pod_reviews(webhook) > reviews_before


def test_an_unsigned_storage_initializer_is_denied_at_the_pod(
    webhook: WebhookProcess, kserve: KServe, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    """The storage initializer's image comes from KServe's cluster-wide ConfigMap, not from
    the InferenceService: only the pod shows it."""
    apply_policy(kubectl, namespace, images)
    uri = model_artifact(kubectl, namespace, "fraud-v7", images.public_key, verified=True)
    kubectl("apply", "-n", namespace, "-f", "-", input_text=serving_runtime(images))
    service = inference_service("swapped-initializer", uri, artifact="fraud-v7")
    wait_until_admitted(kubectl, namespace, service)
    set_storage_initializer_image(kubectl, kserve.release, images.unsigned)
    try:
        apply(kubectl, namespace, service)
        deployment = wait_for_owned(
            kubectl, namespace, "deployments", "InferenceService", "swapped-initializer"
        )
        replica_set = wait_for_owned(
            kubectl, namespace, "replicasets", "Deployment", deployment["metadata"]["name"]
        )
        messages = wait_for(
            "the ReplicaSet's pod create to be refused",
            lambda: failed_creates(kubectl, namespace, replica_set["metadata"]["name"]),
        )
        assert pods_of(kubectl, namespace, "swapped-initializer") == []
    finally:
        # The ReplicaSet retries: its next pod gets the signed image and is admitted.
        set_storage_initializer_image(kubectl, kserve.release, images.signed)
    assert DENIED in messages[0]
    assert f"ModelSecurityPolicy {namespace}/{POLICY}" in messages[0]
    assert "spec.initContainers[0].image" in messages[0]
    assert f"container '{STORAGE_INITIALIZER}' image '{images.unsigned}'" in messages[0]
    wait_for(
        "the ReplicaSet's next pod, with the signed storage initializer, to be admitted",
        lambda: pods_of(kubectl, namespace, "swapped-initializer"),
    )


def test_an_unknown_or_unverified_model_source_is_denied_at_the_inference_service(
    webhook: WebhookProcess, kserve: KServe, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    apply_policy(kubectl, namespace, images)
    verified = model_artifact(kubectl, namespace, "fraud-v7", images.public_key, verified=True)
    tampered = model_artifact(kubectl, namespace, "tampered", images.public_key, verified=False)
    kubectl("apply", "-n", namespace, "-f", "-", input_text=serving_runtime(images))
    wait_until_admitted(kubectl, namespace, inference_service("probe", verified))

    cases = {
        "unknown": inference_service("unknown", "s3://models/nobody-checked/"),
        # The annotation names a verified artifact; the model served is another one.
        "annotated": inference_service("annotated", "s3://models/nobody-checked/", "fraud-v7"),
        "tampered": inference_service("tampered", tampered),
    }
    for name, body in cases.items():
        result = apply(kubectl, namespace, body, check=False)
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
    model_artifact(kubectl, namespace, "fraud-v7", images.public_key, verified=True)
    kubectl("apply", "-n", namespace, "-f", "-", input_text=serving_runtime(images))
    unchecked = "s3://models/nobody-checked/"
    apply(kubectl, namespace, inference_service("before-policy", unchecked, "fraud-v7"))
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

    apply_policy(kubectl, namespace, images)
    kubectl("delete", "-n", namespace, f"pod/{first['metadata']['name']}", "--wait=false")

    messages = wait_for(
        "the ReplicaSet's replacement pod to be refused",
        lambda: failed_creates(kubectl, namespace, replica_set["metadata"]["name"]),
    )
    assert DENIED in messages[0]
    # The violation sits where the storage initializer is told what to download.
    at_the_initializer = [
        line for line in messages[0].splitlines() if "spec.initContainers[0].args[0]: " in line
    ]
    assert at_the_initializer, messages[0]
    assert f"'{unchecked}'" in at_the_initializer[0]
    remaining = [p["metadata"]["name"] for p in pods_of(kubectl, namespace, "before-policy")]
    assert remaining in ([], [first["metadata"]["name"]])  # the first may still be terminating


def test_updates_that_change_what_kserve_runs_are_judged(
    webhook: WebhookProcess, kserve: KServe, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    """An UPDATE is judged on everything KServe turns into the pod, not only on the fields
    an older picture of KServe read (after KServe's own defaulting webhook ran)."""
    apply_policy(kubectl, namespace, images)
    uri = model_artifact(kubectl, namespace, "fraud-v7", images.public_key, verified=True)
    kubectl("apply", "-n", namespace, "-f", "-", input_text=serving_runtime(images))
    service = inference_service("updated", uri, artifact="fraud-v7")
    wait_until_admitted(kubectl, namespace, service)
    apply(kubectl, namespace, service)
    wait_for_owned(kubectl, namespace, "deployments", "InferenceService", "updated")

    tricks = {
        "spec.predictor.model.image": {"model": {"image": images.unsigned}},
        "spec.predictor.model.storageUri": {"model": {"storageUri": "s3://models/other/"}},
        # KServe refuses storageUri and storageUris together: the model moves over.
        "spec.predictor.storageUris[0].uri": {
            "model": {"storageUri": None},
            "storageUris": [{"uri": "s3://models/other/", "mountPath": "/mnt/models"}],
        },
    }
    for path, predictor in tricks.items():
        result = kubectl(
            "patch",
            "-n",
            namespace,
            "inferenceservice/updated",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"predictor": predictor}}),
            check=False,
        )
        assert result.returncode != 0, f"an update of {path} was admitted"
        assert DENIED in result.stderr, result.stderr
        assert f"] {path}: " in result.stderr, result.stderr
    # What does not change the pod passes.
    kubectl("label", "-n", namespace, "inferenceservice/updated", "tier=gold")
