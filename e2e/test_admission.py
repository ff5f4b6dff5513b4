"""The admission webhook registered with a real API server: the validating cases.

``modelshield webhook`` runs as a local process over HTTPS (a CA and serving certificate
made here), registered by URL + caBundle with the configurations that ``modelshield
webhook configuration`` prints. Images live in a real OCI registry and are signed by the
real cosign; the webhook verifies them with the real image verifier.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import yaml
from kubernetes import client

from e2e.clients import Cluster, Kubectl
from e2e.webhooks import (
    DENIED,
    Images,
    WebhookProcess,
    apply_policy,
    container,
    deployment_reviews,
    images,
    policy,
    wait_for,
    webhook,
    workload,
)

__all__ = ["images", "webhook"]  # module-scoped fixtures, shared by name


def test_compliant_deployment_is_admitted_and_its_replicaset_creates_pods(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    apply_policy(kubectl, namespace, images)
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_text=workload("Deployment", "good", images.signed, 2),
    )

    def pods() -> list[str]:
        listed = kubectl("get", "pods", "-n", namespace, "-l", "instance=good", "-o", "name").stdout
        names = listed.split()
        return names if len(names) == 2 else []

    wait_for("the Deployment's ReplicaSet to create 2 pods through the webhook", pods)


def test_noncompliant_deployment_is_denied_with_the_message(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    apply_policy(kubectl, namespace, images)
    for dry_run in (["--dry-run=server"], []):
        result = kubectl(
            "apply",
            *dry_run,
            "-n",
            namespace,
            "-f",
            "-",
            input_text=workload("Deployment", "bad", images.unsigned),
            check=False,
        )
        assert result.returncode != 0
        assert DENIED in result.stderr
        assert f"ModelSecurityPolicy {namespace}/fraud-model" in result.stderr
        assert f"container 'server' image '{images.unsigned}' has no signature" in result.stderr
        assert "sign it with the key of one of: release" in result.stderr
    assert "bad" not in kubectl("get", "deployments", "-n", namespace, "-o", "name").stdout


def test_audit_admits_and_kubectl_shows_the_warning(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    apply_policy(kubectl, namespace, images, "Audit")
    result = kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_text=workload("Deployment", "audited", images.unsigned),
    )
    assert (
        f"Warning: modelshield (Audit) [ModelSecurityPolicy {namespace}/fraud-model]"
        in result.stderr
    )
    assert "has no signature" in result.stderr
    kubectl("get", "deployment/audited", "-n", namespace)


def test_replicaset_whose_pods_violate_shows_it_in_its_conditions(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    # Made before the policy existed, with no replicas; scaled once the policy applies.
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_text=workload("ReplicaSet", "legacy", images.unsigned, 0),
    )
    apply_policy(kubectl, namespace, images)
    kubectl("scale", "-n", namespace, "replicaset/legacy", "--replicas=1")

    def failure() -> str:
        conditions = kubectl(
            "get",
            "-n",
            namespace,
            "replicaset/legacy",
            "-o",
            'jsonpath={.status.conditions[?(@.type=="ReplicaFailure")].message}',
        ).stdout
        return conditions

    message = wait_for("the ReplicaSet to report ReplicaFailure", failure)
    assert DENIED in message
    assert "has no signature" in message
    assert kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_update_to_an_unsigned_image_is_denied(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    apply_policy(kubectl, namespace, images)
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_text=workload("Deployment", "rolling", images.signed),
    )
    result = kubectl(
        "set",
        "image",
        "-n",
        namespace,
        "deployment/rolling",
        f"server={images.unsigned}",
        check=False,
    )
    assert result.returncode != 0
    assert DENIED in result.stderr
    assert "has no signature" in result.stderr
    image = kubectl(
        "get",
        "-n",
        namespace,
        "deployment/rolling",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ).stdout
    assert image == images.signed


def test_ephemeral_container_with_an_unsigned_image_is_denied(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    apply_policy(kubectl, namespace, images)
    kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=workload("Pod", "serving", images.signed)
    )
    result = kubectl(
        "debug",
        "-n",
        namespace,
        "pod/serving",
        f"--image={images.unsigned}",
        "--container=debugger",
        "--attach=false",
        check=False,
    )
    assert result.returncode != 0
    assert DENIED in result.stderr
    assert f"container 'debugger' image '{images.unsigned}' has no signature" in result.stderr
    assert (
        "debugger"
        not in kubectl(
            "get",
            "-n",
            namespace,
            "pod/serving",
            "-o",
            "jsonpath={.spec.ephemeralContainers[*].name}",
        ).stdout
    )


def test_namespaces_outside_the_selector_are_untouched(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    kubectl("label", "namespace", namespace, "modelshield.dev/ignore=true")
    # The policy is there, but the API server never asks the webhook about this namespace.
    kubectl("apply", "-n", namespace, "-f", "-", input_text=policy(namespace, images))
    before = deployment_reviews(webhook.metrics())
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_text=workload("Deployment", "ignored", images.unsigned),
    )
    kubectl("get", "deployment/ignored", "-n", namespace)
    assert deployment_reviews(webhook.metrics()) == before


_MODEL_ARTIFACT = """
apiVersion: modelshield.dev/v1alpha1
kind: ModelArtifact
metadata: {name: fraud-v7}
spec:
  uri: oci://registry.example.com/ml/models/fraud:v7
  digest: sha256:5f0c3a0c2f0d6e8b9a1c2d3e4f5061728394a5b6c7d8e9f00112233445566778
  recheckInterval: 12h
"""


def test_killed_server_fails_closed_and_unselected_namespaces_keep_working(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images, cluster: Cluster
) -> None:
    # Two ways out of the workload webhooks' namespaceSelector: the opt-out label, and the
    # label the operator keeps on namespaces no policy could govern (set by hand here; the
    # operator setting it is e2e/test_ungoverned_namespaces.py).
    core = client.CoreV1Api(cluster.api_client)
    unselected: list[str] = []
    try:
        for prefix, label in (
            ("e2e-ignored-", "modelshield.dev/ignore"),
            ("e2e-ungoverned-", "modelshield.dev/ungoverned"),
        ):
            created = core.create_namespace(
                client.V1Namespace(
                    metadata=client.V1ObjectMeta(generate_name=prefix, labels={label: "true"})
                )
            )
            assert created.metadata is not None
            name = str(created.metadata.name)
            unselected.append(name)
            wait_for(
                f"{name}'s default ServiceAccount",
                lambda name=name: (  # type: ignore[misc]
                    core.list_namespaced_service_account(
                        name, field_selector="metadata.name=default"
                    ).items
                ),
            )
        kubectl("apply", "-n", namespace, "-f", "-", input_text=_MODEL_ARTIFACT)
        kubectl(
            "patch",
            "modelartifact/fraud-v7",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":["e2e.modelshield.dev/held"]}}',
        )
        webhook.kill()
        try:
            result = kubectl(
                "apply",
                "-n",
                namespace,
                "-f",
                "-",
                input_text=workload("Pod", "governed", images.signed),
                check=False,
            )
            assert result.returncode != 0
            assert "failed calling webhook" in result.stderr
            # modelshield's own resources: a spec change fails closed, while a finalizer
            # or label update (what a deletion needs) does not wait on the webhook.
            spec_change = kubectl(
                "patch",
                "modelartifact/fraud-v7",
                "-n",
                namespace,
                "--type=merge",
                "-p",
                '{"spec":{"recheckInterval":"6h"}}',
                check=False,
            )
            assert spec_change.returncode != 0
            assert "failed calling webhook" in spec_change.stderr
            kubectl(
                "patch",
                "modelartifact/fraud-v7",
                "-n",
                namespace,
                "--type=merge",
                "-p",
                '{"metadata":{"labels":{"e2e":"relabelled"},"finalizers":null}}',
            )
            kubectl("delete", "modelartifact/fraud-v7", "-n", namespace, "--timeout=30s")
            for name in unselected:
                kubectl(
                    "apply",
                    "-n",
                    name,
                    "-f",
                    "-",
                    input_text=workload("Pod", "free", images.unsigned),
                )
                kubectl("get", "pod/free", "-n", name)
        finally:
            webhook.start()
        kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input_text=workload("Pod", "governed", images.signed),
        )
    finally:
        for name in unselected:
            with contextlib.suppress(Exception):
                core.delete_namespace(name)


def test_inference_service_with_an_unsigned_predictor_is_denied(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    crd = Path(__file__).resolve().parent / "fixtures" / "inferenceservice-crd.yaml"
    kubectl("apply", "--server-side", "--field-manager=modelshield-e2e", f"--filename={crd}")
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/inferenceservices.serving.kserve.io",
    )
    apply_policy(kubectl, namespace, images)

    def service(name: str, image: str) -> str:
        return yaml.safe_dump(
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": name, "labels": {"app": "fraud-detector"}},
                "spec": {"predictor": {"containers": [container(image)]}},
            }
        )

    kubectl("apply", "-n", namespace, "-f", "-", input_text=service("signed", images.signed))
    result = kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_text=service("unsigned", images.unsigned),
        check=False,
    )
    assert result.returncode != 0
    assert DENIED in result.stderr
    assert "spec.predictor.containers[0].image" in result.stderr
    assert f"InferenceService {namespace}/unsigned" in result.stderr
