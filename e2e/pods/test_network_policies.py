"""NetworkPolicies stop packets on the local node (kube-router's firewall enforces them).

Every test first shows the traffic flowing without the policy, then blocked with it, then
(where the policy can be removed) flowing again: a test whose policy is missing or ignored
fails at the second step.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from e2e.pods.harness import NodeCluster
from e2e.pods.workloads import apply, eventually_reaches, reaches, ready_pod_ip, server_deployment

# kube-router applies a policy within its sync (5 s here) after the watch event.
ENFORCED_WITHIN_SECONDS = 45.0


@pytest.fixture
def client_namespace(node_cluster: NodeCluster) -> Iterator[str]:
    name = "e2e-client-" + uuid.uuid4().hex[:8]
    node_cluster.kubectl("create", "namespace", name)
    yield name
    node_cluster.kubectl("delete", "namespace", name, "--wait=false")


def test_a_deny_all_policy_blocks_and_its_removal_reopens(
    node_cluster: NodeCluster, pod_namespace: str, client_namespace: str, modelshield_image: str
) -> None:
    kubectl = node_cluster.kubectl
    apply(kubectl, pod_namespace, server_deployment("model", modelshield_image, {}))
    address = ready_pod_ip(kubectl, pod_namespace, "model")
    # Without a policy: reachable from its own namespace and from another.
    assert reaches(kubectl, client_namespace, modelshield_image, address)
    assert reaches(kubectl, pod_namespace, modelshield_image, address)

    deny_all = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny-all"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    apply(kubectl, pod_namespace, deny_all)
    eventually_reaches(
        kubectl, client_namespace, modelshield_image, address, False, ENFORCED_WITHIN_SECONDS
    )
    # Blocked from every side, its own namespace included, and it stays blocked.
    assert not reaches(kubectl, pod_namespace, modelshield_image, address)
    assert not reaches(kubectl, client_namespace, modelshield_image, address)

    kubectl("-n", pod_namespace, "delete", "networkpolicy", "deny-all")
    eventually_reaches(
        kubectl, client_namespace, modelshield_image, address, True, ENFORCED_WITHIN_SECONDS
    )
