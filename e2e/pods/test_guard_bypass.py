"""The inference guard cannot be bypassed, shown on a real node with the installed chart:
a client pod reaches the model server directly before the policy exists (the control);
once a policy with an ``api`` block is applied, the operator's NetworkPolicy stops that
client's direct calls (to the pod and to the upstream Service), while the same client,
through the guard's Service with its projected ServiceAccount token, gets the model's
answer; without a credential it gets 401, and past its rate limit 429 with Retry-After.

The guard runs as the ServiceAccount the operator made and bound for TokenReviews (no
binding made by hand). The model server is a stand-in (e2e/pods/guarding.py): what is
tested is the path to it, not the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.pods.guarding import (
    ANSWER,
    AUDIENCE,
    GUARD,
    TOKEN_PATH,
    UPSTREAM,
    cluster_ip,
    guard_ready,
    model_and_client_namespaces,
    model_server,
    network_policy_written,
    run_clients,
    token_client_pod,
    wait_for,
)
from e2e.pods.harness import NodeCluster, Release
from e2e.pods.workloads import SERVER_PORT, apply, reaches, ready_pod_ip

#: Run in the client pod; prints one JSON document of what it saw.
CLIENT_SCRIPT = """
import json, socket, sys, time, urllib.error, urllib.request
model_ip, upstream, guard, token_path, port = sys.argv[1:6]
port = int(port)
BODY = json.dumps({"instances": [[1.0, 2.0]]}).encode()
seen = {}

def connects(host, window):
    deadline = time.monotonic() + window
    while True:
        try:
            socket.create_connection((host, port), timeout=2).close()
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)

def call(headers):
    request = urllib.request.Request(
        guard + "/v1/models/fraud:predict", data=BODY, method="POST",
        headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)
    except OSError as error:  # no answer at all: say so instead of dying
        return 0, repr(error), {}

token = open(token_path).read().strip()
bearer = {"Authorization": "Bearer " + token}
# The guard may answer before the operator's binding pass has run: 503 until then.
deadline = time.monotonic() + 90
status, body, _ = call(bearer)
while status == 503 and time.monotonic() < deadline:
    time.sleep(2)
    status, body, _ = call(bearer)
seen["allowed"] = [status, body]
status, body, headers = call({})
seen["anonymous"] = [status, body, headers.get("WWW-Authenticate")]
burst = [call(bearer) for _ in range(30)]
seen["burst"] = [[s, h.get("Retry-After")] for s, _, h in burst]
seen["direct_pod"] = connects(model_ip, 10)
seen["direct_service"] = connects(upstream, 10)
print(json.dumps(seen))
"""


def _api(client_namespace: str) -> dict[str, Any]:
    return {
        "authentication": {"serviceAccountTokens": {"audiences": [AUDIENCE]}},
        "authorization": {
            "allow": [{"serviceAccounts": [f"{client_namespace}/scorer"], "models": ["fraud"]}]
        },
        # Shared by the guard's 2 replicas: 1/s and a burst of 4 between them.
        "rateLimits": {"perClient": {"requestsPerSecond": 1, "burst": 4}},
    }


def _policy(client_namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "fraud-api"},
        "spec": {"selector": {"matchLabels": {"governed": "yes"}}, "api": _api(client_namespace)},
    }


@pytest.fixture
def namespaces(node_cluster: NodeCluster) -> Iterator[tuple[str, str]]:
    """(the model server's, the client's) namespaces."""
    with model_and_client_namespaces(node_cluster, ("scorer",)) as names:
        yield names


def _client_pod(image: str, model_ip: str, upstream_ip: str, guard_ip: str) -> dict[str, Any]:
    return token_client_pod(
        image,
        "scorer",
        CLIENT_SCRIPT,
        [model_ip, upstream_ip, f"http://{guard_ip}", TOKEN_PATH, str(SERVER_PORT)],
    )


def test_the_model_is_reachable_only_through_the_guard(
    node_cluster: NodeCluster,
    installed_chart: Release,
    namespaces: tuple[str, str],
    modelshield_image: str,
) -> None:
    kubectl = node_cluster.kubectl
    model, clients = namespaces
    apply(kubectl, model, model_server(modelshield_image))
    address = ready_pod_ip(kubectl, model, "fraud")
    # The control: before any policy the client reaches the model server directly.
    assert reaches(kubectl, clients, modelshield_image, address)

    apply(kubectl, model, _policy(clients))
    wait_for(
        "the guard Ready and the NetworkPolicy written",
        lambda: guard_ready(kubectl, model) and network_policy_written(kubectl, model),
        installed_chart,
        kubectl,
    )
    upstream_ip, guard_ip = (cluster_ip(kubectl, model, name) for name in (UPSTREAM, GUARD))
    (seen,) = run_clients(
        kubectl, clients, _client_pod(modelshield_image, address, upstream_ip, guard_ip)
    )

    status, body = seen["allowed"]
    assert status == 200, body
    assert json.loads(body) == ANSWER
    status, body, challenge = seen["anonymous"]
    assert status == 401, body
    assert challenge is not None
    assert challenge.startswith("Bearer")
    statuses = [status for status, _ in seen["burst"]]
    assert 429 in statuses, statuses
    assert set(statuses) <= {200, 429}, statuses
    assert all(retry is not None for status, retry in seen["burst"] if status == 429)
    assert seen["direct_pod"] is False
    assert seen["direct_service"] is False
