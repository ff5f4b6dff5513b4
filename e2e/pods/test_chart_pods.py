"""The chart's pods on a real node: `helm install --wait` of this tree's image (built with
`make image`, pushed to the local registry, pulled by the node), its webhook answering the
API server through its Service with the chart's own certificates, its operator running."""

from __future__ import annotations

import base64
import time

import yaml
from cryptography import x509

from e2e.pods.harness import NodeCluster, Release, helm
from e2e.pods.workloads import get_json

ADMITTED_WITHIN_SECONDS = 30.0


def _ready_replicas(node_cluster: NodeCluster, release: Release, component: str) -> int:
    deployment = get_json(
        node_cluster.kubectl, "-n", release.namespace, "deployment", f"{release.name}-{component}"
    )
    return int(deployment.get("status", {}).get("readyReplicas") or 0)


def test_webhook_and_operator_pods_run_the_image_and_become_ready(
    node_cluster: NodeCluster, installed_chart: Release
) -> None:
    kubectl = node_cluster.kubectl
    assert _ready_replicas(node_cluster, installed_chart, "webhook") == 2
    assert _ready_replicas(node_cluster, installed_chart, "operator") == 1
    pods = get_json(kubectl, "-n", installed_chart.namespace, "pods")["items"]
    running = [pod for pod in pods if pod["status"].get("phase") == "Running"]
    assert len(running) >= 3, [pod["metadata"]["name"] for pod in pods]
    for pod in running:
        for status in pod["status"]["containerStatuses"]:
            # The image the node pulled from the local registry, not a published one.
            assert status["image"].endswith(installed_chart.image.rpartition("/")[2]), status
            assert status["imageID"].startswith(installed_chart.image.rpartition(":")[0]), status
            assert status["ready"], status


def test_the_webhook_service_answers_the_api_server_with_the_chart_s_certificate(
    node_cluster: NodeCluster, installed_chart: Release, pod_namespace: str
) -> None:
    kubectl = node_cluster.kubectl
    service_name = f"{installed_chart.name}-webhook"
    slices = get_json(
        kubectl,
        "-n",
        installed_chart.namespace,
        "endpointslices",
        "-l",
        f"kubernetes.io/service-name={service_name}",
    )["items"]
    ready = [
        endpoint
        for endpoint_slice in slices
        for endpoint in endpoint_slice.get("endpoints") or []
        if endpoint.get("conditions", {}).get("ready")
    ]
    assert len(ready) == 2, slices
    # The caBundle the API server trusts is the chart's CA, and the certificate the pods
    # serve was issued by it for the Service's name.
    secret = get_json(kubectl, "-n", installed_chart.namespace, "secret", f"{service_name}-tls")
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    served = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert served.issuer == ca.subject
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{service_name}.{installed_chart.namespace}.svc" in names.get_values_for_type(
        x509.DNSName
    )
    # The fail-closed webhook answers: a workload in a governed namespace is admitted (no
    # policy applies to it), where without an answering pod it is refused.
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "admitted"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "admitted"}},
            "template": {
                "metadata": {"labels": {"app": "admitted"}},
                "spec": {"containers": [{"name": "c", "image": "registry.invalid/m:1"}]},
            },
        },
    }
    deadline = time.monotonic() + ADMITTED_WITHIN_SECONDS
    while True:
        created = kubectl(
            "-n",
            pod_namespace,
            "create",
            "--dry-run=server",
            "-f",
            "-",
            input_text=yaml.safe_dump(deployment),
            check=False,
        )
        if created.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert created.returncode == 0, created.stderr
    metrics = kubectl(
        "get",
        "--raw",
        f"/api/v1/namespaces/{installed_chart.namespace}/services/https:{service_name}:443/proxy/metrics",
        check=False,
    )
    assert "modelshield_admission_requests_total" in metrics.stdout, metrics.stderr


def test_helm_test_reaches_the_webhook_through_its_service(
    node_cluster: NodeCluster, installed_chart: Release
) -> None:
    """`helm test`'s pod reaches the webhook at its Service's cluster IP and verifies the
    certificate for the Service's DNS name: the node runs no cluster DNS, so it passes only
    through the address kubelet hands it (its output, kept when it fails, says which;
    test_webhook_disruption reads it)."""
    output = helm(
        node_cluster,
        installed_chart.helm_home,
        "test",
        installed_chart.name,
        "--namespace",
        installed_chart.namespace,
        "--timeout",
        "120s",
    )
    assert "TEST SUITE:     modelshield-test-webhook" in output, output
    assert "Phase:          Succeeded" in output, output
