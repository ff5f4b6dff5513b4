"""The operator puts an inference guard next to a workload governed by an api block, on the
real API server, with the operator's own RBAC: the guard's ConfigMap, ServiceAccount,
Deployment, Service and upstream Service, and a NetworkPolicy that opens the model's
port to the guard's pods only; removing the api block removes them.

That the NetworkPolicy really stops packets from other pods needs a node (issue 13's node
suite), which this control plane does not have: not tested here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from e2e.clients import Kubectl
from e2e.operators import (
    OperatorProcess,
    apply,
    deployment,
    get_json,
    owned_names,
    policy,
    wait_for,
)

GUARD = "ms-guard-deploy-fraud"
UPSTREAM = "ms-guard-up-deploy-fraud"
API = {
    "authentication": {"apiKeys": {"secretRef": {"name": "fraud-keys"}}},
    "authorization": {"allow": [{"apiKeyClients": ["batch"], "models": ["fraud"]}]},
    "rateLimits": {"perClient": {"requestsPerSecond": 10, "burst": 20}},
}


def _served() -> dict[str, Any]:
    body = deployment("fraud", {"governed": "yes"})
    body["spec"]["template"]["spec"]["containers"][0]["ports"] = [
        {"name": "http", "containerPort": 8080}
    ]
    return body


def _upstream(kubectl: Kubectl, namespace: str) -> str:
    config_map = get_json(kubectl, namespace, "configmap", GUARD)
    return str(yaml.safe_load(config_map["data"]["guard.yaml"])["upstream"])


def test_the_operator_deploys_the_guard_and_closes_the_model_port(
    kubectl: Kubectl, namespace: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    operator = start_operator()
    apply(
        kubectl,
        namespace,
        policy("api", {"selector": {"matchLabels": {"governed": "yes"}}, "api": API}),
        _served(),
    )
    for kind, names in {
        "deployment": {GUARD},
        "service": {GUARD, UPSTREAM},
        "configmap": {GUARD},
        "serviceaccount": {GUARD},
        "networkpolicy": {"ms-netpol-deploy-fraud"},
    }.items():
        wait_for(
            f"{kind} {sorted(names)}; operator log:\n{operator.tail()}",
            lambda kind=kind, names=names: owned_names(kubectl, namespace, kind) == names or None,  # type: ignore[misc]
        )
    netpol = get_json(kubectl, namespace, "networkpolicy", "ms-netpol-deploy-fraud")
    assert netpol["spec"]["ingress"] == [
        {
            "from": [
                {
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/name": "modelshield-inference-guard",
                            "modelshield.dev/inference-guard": GUARD,
                        }
                    }
                }
            ],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        }
    ]
    # The guard calls the upstream Service by its ClusterIP once the operator has seen it.
    cluster_ip = get_json(kubectl, namespace, "service", UPSTREAM)["spec"]["clusterIP"]
    wait_for(
        f"the guard's upstream {cluster_ip}; operator log:\n{operator.tail()}",
        lambda: _upstream(kubectl, namespace) == f"http://{cluster_ip}:8080" or None,
    )
    config_map = get_json(kubectl, namespace, "configmap", GUARD)
    loaded = yaml.safe_load(config_map["data"]["guard.yaml"])
    assert loaded["policies"][0]["api"]["rateLimits"]["perClient"]["requestsPerSecond"] == 10
    guard = get_json(kubectl, namespace, "deployment", GUARD)
    volumes = guard["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "keys-0",
        "secret": {"secretName": "fraud-keys", "optional": True, "defaultMode": 420},
    } in volumes

    apply(kubectl, namespace, policy("api", {"selector": {"matchLabels": {"governed": "yes"}}}))
    # The operator deletes the guard's objects one by one: each goes, none is left behind.
    for kind in ("deployment", "service", "configmap", "serviceaccount"):
        wait_for(
            f"the guard's {kind} removed; operator log:\n{operator.tail()}",
            lambda kind=kind: not owned_names(kubectl, namespace, kind) or None,  # type: ignore[misc]
        )
