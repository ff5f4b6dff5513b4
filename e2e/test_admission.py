"""The admission webhook registered with a real API server.

``modelshield webhook`` runs as a local process over HTTPS (a CA and serving certificate
made here), registered by URL + caBundle with the configurations that ``modelshield
webhook configuration`` prints. Images live in a real OCI registry and are signed by the
real cosign; the webhook verifies them with the real image verifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.clients import Cluster, Kubectl
from e2e.webhooks import (
    Images,
    WebhookProcess,
    apply_policy,
    container,
    deployment_reviews,
    policy,
    wait_for,
    workload,
)
from modelshield.supplychain.images import registries
from tests.supplychain import localtools
from tests.webhooks import pki

OWN_NAMESPACE = "modelshield-e2e-system"
CONFIGURATION_NAME = "modelshield-admission-e2e-" + uuid.uuid4().hex[:6]
DENIED = 'admission webhook "workloads.validate.modelshield.dev" denied the request'


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    """A real registry with two pushed images; cosign signs one of them."""
    registry = localtools.LocalRegistry(
        localtools.require_tool("MODELSHIELD_REGISTRY"), tmp_path_factory.mktemp("registry")
    ).start()
    cosign = localtools.Cosign(
        localtools.require_tool("MODELSHIELD_COSIGN"), tmp_path_factory.mktemp("cosign")
    )
    key, public_key = cosign.generate_key_pair("release")

    async def push() -> tuple[str, str]:
        client = registries.RegistryClient(registry.options())
        try:
            signed = await localtools.push_image(
                client, registry.host, "ml/fraud-server", "v7", "fraud v7"
            )
            unsigned = await localtools.push_image(
                client, registry.host, "ml/fraud-server", "unsigned", "tampered"
            )
            return signed, unsigned
        finally:
            await client.close()

    signed_digest, _unsigned_digest = asyncio.run(push())
    signed = f"{registry.host}/ml/fraud-server@{signed_digest}"
    cosign.sign(signed, key)
    try:
        yield Images(
            registry.host,
            signed,
            f"{registry.host}/ml/fraud-server:v7",
            f"{registry.host}/ml/fraud-server:unsigned",
            public_key,
        )
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def webhook(
    cluster: Cluster,
    kubectl: Kubectl,
    modelshield_crds: list[dict[str, Any]],
    images: Images,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebhookProcess]:
    """The server running and registered; unregistered and stopped afterwards."""
    directory = tmp_path_factory.mktemp("webhook")
    authority = pki.Authority.create("modelshield-e2e-webhook-ca")
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(authority.pem)
    cert_file, key_file = pki.write_serving_pair(authority, directory, "modelshield-webhook")
    port = localtools.free_port()
    modelshield = [sys.executable, "-m", "modelshield.cli.main", "webhook"]
    process = WebhookProcess(
        [
            *modelshield,
            f"--cert={cert_file}",
            f"--key={key_file}",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--kubeconfig={cluster.kubeconfig_path}",
            f"--insecure-registry={images.registry}",
            "--log-level=debug",
        ],
        directory / "webhook.log",
        port,
        ca_file,
    )
    try:
        process.start()
    except BaseException:
        process.stop()
        raise
    configuration = subprocess.run(
        [
            *modelshield,
            "configuration",
            f"--url=https://127.0.0.1:{port}",
            f"--ca-bundle={ca_file}",
            f"--name={CONFIGURATION_NAME}",
            f"--namespace={OWN_NAMESPACE}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kubectl("apply", "-f", "-", input_text=configuration)
    try:
        yield process
    finally:
        kubectl(
            "delete",
            "--ignore-not-found",
            f"mutatingwebhookconfiguration/{CONFIGURATION_NAME}",
            f"validatingwebhookconfiguration/{CONFIGURATION_NAME}",
        )
        process.stop()


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


def test_killed_server_fails_closed_and_ignored_namespaces_keep_working(
    webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images, cluster: Cluster
) -> None:
    from kubernetes import client

    core = client.CoreV1Api(cluster.api_client)
    created = core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(
                generate_name="e2e-ignored-", labels={"modelshield.dev/ignore": "true"}
            )
        )
    )
    assert created.metadata is not None
    ignored = str(created.metadata.name)
    try:
        wait_for(
            "the ignored namespace's default ServiceAccount",
            lambda: (
                core.list_namespaced_service_account(
                    ignored, field_selector="metadata.name=default"
                ).items
            ),
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
            kubectl(
                "apply",
                "-n",
                ignored,
                "-f",
                "-",
                input_text=workload("Pod", "free", images.unsigned),
            )
            kubectl("get", "pod/free", "-n", ignored)
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
        with contextlib.suppress(Exception):
            core.delete_namespace(ignored)


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
