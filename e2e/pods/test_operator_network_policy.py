"""The NetworkPolicy the operator (a pod of the installed chart) writes next to a governed
model server stops packets: a client outside the policy's allowed peers cannot connect,
one inside can. The same client connects before the policy exists, so the test fails when
the operator's NetworkPolicy is missing or not enforced."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from e2e.pods.harness import NodeCluster, Release
from e2e.pods.workloads import apply, eventually_reaches, reaches, ready_pod_ip, server_deployment

ENFORCED_WITHIN_SECONDS = 60.0
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@pytest.fixture
def namespaces(node_cluster: NodeCluster) -> Iterator[tuple[str, str, str]]:
    """(model server's, allowed gateway's, an outsider's) namespaces."""
    suffix = uuid.uuid4().hex[:6]
    names = (f"e2e-model-{suffix}", f"e2e-gateway-{suffix}", f"e2e-outsider-{suffix}")
    for name in names:
        node_cluster.kubectl("create", "namespace", name)
    yield names
    for name in names:
        node_cluster.kubectl("delete", "namespace", name, "--wait=false")


def test_only_the_allowed_peers_reach_a_governed_model_server(
    node_cluster: NodeCluster,
    installed_chart: Release,
    namespaces: tuple[str, str, str],
    modelshield_image: str,
) -> None:
    kubectl = node_cluster.kubectl
    model, gateway, outsider = namespaces
    apply(kubectl, model, server_deployment("fraud", modelshield_image, {"governed": "yes"}))
    address = ready_pod_ip(kubectl, model, "fraud")
    # Before any policy: everyone reaches it.
    assert reaches(kubectl, outsider, modelshield_image, address)
    assert reaches(kubectl, gateway, modelshield_image, address)

    policy = {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "isolate"},
        "spec": {
            "selector": {"matchLabels": {"governed": "yes"}},
            "network": {
                "ingress": [
                    {
                        "peers": [
                            {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: gateway}}}
                        ],
                        "ports": [{"port": 8080}],
                    }
                ],
                "egress": [],
            },
        },
    }
    apply(kubectl, model, policy)
    deadline = time.monotonic() + ENFORCED_WITHIN_SECONDS
    while kubectl(
        "-n", model, "get", "networkpolicy", "ms-netpol-deploy-fraud", check=False
    ).returncode:
        if time.monotonic() > deadline:
            logs = kubectl(
                "-n",
                installed_chart.namespace,
                "logs",
                f"deployment/{installed_chart.name}-operator",
                check=False,
            )
            pytest.fail(f"the operator wrote no NetworkPolicy:\n{logs.stdout[-3000:]}{logs.stderr}")
        time.sleep(1)

    eventually_reaches(
        kubectl, outsider, modelshield_image, address, False, ENFORCED_WITHIN_SECONDS
    )
    assert reaches(kubectl, gateway, modelshield_image, address)
    assert not reaches(kubectl, outsider, modelshield_image, address)
    # The model server's own namespace is no allowed peer either.
    assert not reaches(kubectl, model, modelshield_image, address)
