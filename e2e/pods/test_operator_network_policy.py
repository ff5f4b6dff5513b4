"""The NetworkPolicy the operator (a pod of the installed chart) writes next to a governed
model server stops packets: a client outside the policy's allowed peers cannot connect,
one inside can. The same client connects before the policy exists, so the test fails when
the operator's NetworkPolicy is missing or not enforced."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from e2e.clients import Kubectl
from e2e.pods.harness import NodeCluster, Release
from e2e.pods.workloads import (
    apply,
    eventually_reaches,
    get_json,
    reaches,
    ready_pod_ip,
    server_deployment,
)

ENFORCED_WITHIN_SECONDS = 60.0
#: The operator is a new pod after a kill: image cached, Python start and cache sync.
CONVERGED_WITHIN_SECONDS = 120.0
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
NETWORK_POLICY = "ms-netpol-deploy-fraud"
T = TypeVar("T")


def _policy(allowed_namespace: str) -> dict[str, Any]:
    """Only `allowed_namespace` may reach the governed server's port, and it may reach nothing."""
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "isolate"},
        "spec": {
            "selector": {"matchLabels": {"governed": "yes"}},
            "network": {
                "ingress": [
                    {
                        "peers": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {NAMESPACE_NAME_LABEL: allowed_namespace}
                                }
                            }
                        ],
                        "ports": [{"port": 8080}],
                    }
                ],
                "egress": [],
            },
        },
    }


def _wait_for(what: str, probe: Callable[[], T | None], release: Release, kubectl: Kubectl) -> T:
    deadline = time.monotonic() + CONVERGED_WITHIN_SECONDS
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            logs = kubectl(
                "-n", release.namespace, "logs", f"deployment/{release.name}-operator", check=False
            )
            pytest.fail(f"{what}: not within {CONVERGED_WITHIN_SECONDS:.0f} s; operator log:\n"
                        f"{logs.stdout[-3000:]}{logs.stderr}", pytrace=False)  # fmt: skip
        time.sleep(1)


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

    apply(kubectl, model, _policy(gateway))
    _wait_for(
        "the operator's NetworkPolicy",
        lambda: _network_policy(kubectl, model),
        installed_chart,
        kubectl,
    )

    eventually_reaches(
        kubectl, outsider, modelshield_image, address, False, ENFORCED_WITHIN_SECONDS
    )
    assert reaches(kubectl, gateway, modelshield_image, address)
    assert not reaches(kubectl, outsider, modelshield_image, address)
    # The model server's own namespace is no allowed peer either.
    assert not reaches(kubectl, model, modelshield_image, address)


def _network_policy(kubectl: Kubectl, namespace: str) -> dict[str, Any] | None:
    found = kubectl("-n", namespace, "get", "networkpolicy", NETWORK_POLICY, "-o", "json",
                    check=False)  # fmt: skip
    return json.loads(found.stdout) if found.returncode == 0 else None


def _allowed_namespaces(network_policy: dict[str, Any]) -> set[str]:
    return {
        peer["namespaceSelector"]["matchLabels"].get(NAMESPACE_NAME_LABEL, "")
        for rule in network_policy["spec"].get("ingress") or []
        for peer in rule.get("from") or []
        if "namespaceSelector" in peer
    }


def _operator_pods(kubectl: Kubectl, release: Release) -> list[dict[str, Any]]:
    pods = get_json(
        kubectl, "-n", release.namespace, "pods", "-l", "app.kubernetes.io/component=operator"
    )["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def test_a_killed_operator_pod_comes_back_and_reconverges_its_network_policy(
    node_cluster: NodeCluster,
    installed_chart: Release,
    namespaces: tuple[str, str, str],
    modelshield_image: str,
) -> None:
    kubectl = node_cluster.kubectl
    model, gateway, outsider = namespaces
    apply(kubectl, model, server_deployment("fraud", modelshield_image, {"governed": "yes"}))
    address = ready_pod_ip(kubectl, model, "fraud")
    apply(kubectl, model, _policy(gateway))
    _wait_for(
        "the operator's NetworkPolicy",
        lambda: _network_policy(kubectl, model),
        installed_chart,
        kubectl,
    )
    eventually_reaches(
        kubectl, outsider, modelshield_image, address, False, ENFORCED_WITHIN_SECONDS
    )
    killed = [p["metadata"]["name"] for p in _operator_pods(kubectl, installed_chart)]
    assert len(killed) == 1, killed

    # Killed (no grace) and, while it is gone, its NetworkPolicy deleted and the policy
    # changed to let the other namespace in instead.
    kubectl("-n", installed_chart.namespace, "delete", "pod", killed[0], "--grace-period=0",
            "--force", "--wait=false")  # fmt: skip
    kubectl("-n", model, "delete", "networkpolicy", NETWORK_POLICY, "--wait=false")
    apply(kubectl, model, _policy(outsider))

    restarted = _wait_for(
        "a new operator pod Ready",
        lambda: next(
            (
                p
                for p in _operator_pods(kubectl, installed_chart)
                if p["metadata"]["name"] not in killed
                and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in p["status"].get("conditions") or []
                )
            ),
            None,
        ),
        installed_chart,
        kubectl,
    )
    assert restarted["metadata"]["name"] not in killed
    converged = _wait_for(
        "the NetworkPolicy rewritten for the changed policy",
        lambda: next(
            (
                found
                for found in [_network_policy(kubectl, model)]
                if found is not None and _allowed_namespaces(found) == {outsider}
            ),
            None,
        ),
        installed_chart,
        kubectl,
    )
    assert converged["metadata"]["ownerReferences"], converged["metadata"]
    eventually_reaches(kubectl, outsider, modelshield_image, address, True, ENFORCED_WITHIN_SECONDS)
    assert not reaches(kubectl, gateway, modelshield_image, address)
    # One NetworkPolicy for the one governed workload: nothing left from before the kill.
    owned = get_json(
        kubectl, "-n", model, "networkpolicies", "-l", "app.kubernetes.io/managed-by=modelshield"
    )["items"]
    assert [n["metadata"]["name"] for n in owned] == [NETWORK_POLICY]
