"""A network block's sources hold in front of the inference guard too, shown on a real node.

A policy with an ``api`` block and a ``network`` block admitting one client namespace: both
client namespaces' ServiceAccounts are authorized by the api block, so only the network
can tell them apart. The allowed client gets the model's answer through the guard; the
other one, with an equally valid token, gets no connection to the guard at all (the
operator's NetworkPolicy on the guard's pods, enforced by kube-router), nor to the model.
Before the guard had a NetworkPolicy of its own, the second client got 200.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.pods.guarding import (
    ANSWER,
    AUDIENCE,
    GUARD,
    TOKEN_PATH,
    cluster_ip,
    guard_ready,
    model_server,
    network_policy_written,
    run_clients,
    token_client_pod,
    wait_for,
)
from e2e.pods.harness import NodeCluster, Release
from e2e.pods.workloads import SERVER_PORT, apply, ready_pod_ip

GUARD_NETWORK_POLICY = "ms-netpol-guard-deploy-fraud"

#: Run in each client pod: calls through the guard until an answer other than 503 (the
#: guard may answer before the operator's binding pass) or the window ends; then tries
#: the model pod directly. Prints one JSON document.
CLIENT_SCRIPT = """
import json, socket, sys, time, urllib.error, urllib.request
guard, token_path, model_ip, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
BODY = json.dumps({"instances": [[1.0, 2.0]]}).encode()
token = open(token_path).read().strip()

def call():
    request = urllib.request.Request(
        guard + "/v1/models/fraud:predict", data=BODY, method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:  # no connection or no answer
        return 0, repr(error)

attempts = []
deadline = time.monotonic() + 60
while True:
    status, body = call()
    attempts.append([status, body[:200]])
    if status not in (0, 503) or time.monotonic() > deadline:
        break
    time.sleep(2)
try:
    socket.create_connection((model_ip, port), timeout=3).close()
    direct = True
except OSError:
    direct = False
print(json.dumps({"attempts": attempts, "direct": direct}))
"""


def _policy(allowed: str, other: str) -> dict[str, Any]:
    clients = [f"{namespace}/scorer" for namespace in (allowed, other)]
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "fraud-api-network"},
        "spec": {
            "selector": {"matchLabels": {"governed": "yes"}},
            "api": {
                "authentication": {"serviceAccountTokens": {"audiences": [AUDIENCE]}},
                "authorization": {"allow": [{"serviceAccounts": clients, "models": ["fraud"]}]},
            },
            "network": {
                "ingress": [
                    {
                        "peers": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": allowed}
                                }
                            }
                        ],
                        "ports": [{"port": SERVER_PORT}],
                    }
                ],
                "egress": [],
            },
        },
    }


@pytest.fixture
def namespaces(node_cluster: NodeCluster) -> Iterator[tuple[str, str, str]]:
    """(the model server's, the allowed clients', the other clients') fresh namespaces."""
    suffix = uuid.uuid4().hex[:6]
    names = (f"e2e-model-{suffix}", f"e2e-allowed-{suffix}", f"e2e-other-{suffix}")
    for name in names:
        node_cluster.kubectl("create", "namespace", name)
    for name in names[1:]:
        node_cluster.kubectl("-n", name, "create", "serviceaccount", "scorer")
    try:
        yield names
    finally:
        for name in names:
            node_cluster.kubectl("delete", "namespace", name, "--wait=false")


def test_only_the_network_blocks_sources_reach_the_model_through_the_guard(
    node_cluster: NodeCluster,
    installed_chart: Release,
    namespaces: tuple[str, str, str],
    modelshield_image: str,
) -> None:
    kubectl = node_cluster.kubectl
    model, allowed, other = namespaces
    apply(kubectl, model, model_server(modelshield_image))
    address = ready_pod_ip(kubectl, model, "fraud")
    apply(kubectl, model, _policy(allowed, other))

    def converged() -> bool:
        written = kubectl("-n", model, "get", "networkpolicy", GUARD_NETWORK_POLICY, check=False)
        return (
            guard_ready(kubectl, model)
            and network_policy_written(kubectl, model)
            and written.returncode == 0
        )

    wait_for(
        "the guard Ready and both NetworkPolicies written", converged, installed_chart, kubectl
    )
    guard = f"http://{cluster_ip(kubectl, model, GUARD)}"
    arguments = [guard, TOKEN_PATH, address, str(SERVER_PORT)]
    (from_allowed,) = run_clients(
        kubectl, allowed, token_client_pod(modelshield_image, "scorer", CLIENT_SCRIPT, arguments)
    )
    (from_other,) = run_clients(
        kubectl, other, token_client_pod(modelshield_image, "scorer", CLIENT_SCRIPT, arguments)
    )

    status, body = from_allowed["attempts"][-1]
    assert status == 200, from_allowed
    assert json.loads(body) == ANSWER
    # Same kind of token, authorized alike: only the network refuses it, for a whole minute.
    assert {status for status, _ in from_other["attempts"]} == {0}, from_other
    assert len(from_other["attempts"]) > 1
    assert from_allowed["direct"] is False
    assert from_other["direct"] is False
