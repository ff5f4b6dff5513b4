"""The inference guard cannot be bypassed, shown on a real node with the installed chart:
a client pod reaches the model server directly before the policy exists (the control);
once a policy with an ``api`` block is applied, the operator's NetworkPolicy stops that
client's direct calls (to the pod and to the upstream Service), while the same client,
through the guard's Service with its projected ServiceAccount token, gets the model's
answer; without a credential it gets 401, and past its rate limit 429 with Retry-After.

The guard runs as the ServiceAccount the operator made and bound for TokenReviews (no
binding made by hand). The model server is a stand-in (a fixed answer from Python's
http.server in modelshield's image): what is tested is the path to it, not the model.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.clients import Kubectl
from e2e.pods.harness import NodeCluster, Release
from e2e.pods.workloads import (
    HARDENED,
    POD_TIMEOUT_SECONDS,
    SERVER_PORT,
    apply,
    get_json,
    reaches,
    ready_pod_ip,
)

# Passed on the local node once (183 s, after the guard stopped needing cluster DNS:
# 6e3af1a, 087ae18); opt-in until it has run green in CI, so that a test this young cannot
# keep everything else from landing.
pytestmark = pytest.mark.skipif(
    os.environ.get("MODELSHIELD_E2E_NODE_GUARD") != "1",
    reason="opt-in until green in CI: MODELSHIELD_E2E_NODE_GUARD=1 (passed once on the node)",
)

AUDIENCE = "modelshield-guard"
GUARD = "ms-guard-deploy-fraud"
UPSTREAM = "ms-guard-up-deploy-fraud"
#: The operator's pods come up, the guard's pods pull the image and start, the binding's
#: pass runs, kube-router applies the NetworkPolicy: a minute or two on a loaded machine.
CONVERGED_WITHIN_SECONDS = 240.0
ANSWER = {"predictions": [0, 1]}

STAND_IN_MODEL_SERVER = """
import http.server, json, sys
ANSWER_DOCUMENT, PORT = json.loads(sys.argv[1]), int(sys.argv[2])
ANSWER = json.dumps(ANSWER_DOCUMENT).encode()
class Handler(http.server.BaseHTTPRequestHandler):
    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(200 if self.path == "/v1/models/fraud:predict" else 404, ANSWER)
    def do_GET(self):
        self._send(200, b'{"name": "fraud", "ready": true}')
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", PORT), Handler).serve_forever()
"""

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


def _container(name: str, image: str, command: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "command": command,
        "securityContext": HARDENED,
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
    }


def _model_server(image: str) -> dict[str, Any]:
    container = _container(
        "server",
        image,
        ["python", "-c", STAND_IN_MODEL_SERVER, json.dumps(ANSWER), str(SERVER_PORT)],
    )
    container["ports"] = [{"containerPort": SERVER_PORT, "name": "http"}]
    container["readinessProbe"] = {"tcpSocket": {"port": SERVER_PORT}, "periodSeconds": 1}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "fraud"}},
            "template": {
                "metadata": {"labels": {"app": "fraud", "governed": "yes"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
            },
        },
    }


def _client_pod(image: str, model_ip: str, upstream_ip: str, guard_ip: str) -> dict[str, Any]:
    """The node runs no cluster DNS: Services are called by their ClusterIPs."""
    container = _container(
        "client",
        image,
        [
            "python",
            "-c",
            CLIENT_SCRIPT,
            model_ip,
            upstream_ip,
            f"http://{guard_ip}",
            "/var/run/guard-token/token",
            str(SERVER_PORT),
        ],
    )
    container["volumeMounts"] = [
        {"name": "guard-token", "mountPath": "/var/run/guard-token", "readOnly": True}
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client-" + uuid.uuid4().hex[:8]},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": "scorer",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
            "volumes": [
                {
                    "name": "guard-token",
                    "projected": {
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "audience": AUDIENCE,
                                    "expirationSeconds": 3600,
                                    "path": "token",
                                }
                            }
                        ]
                    },
                }
            ],
        },
    }


def _run_client(kubectl: Kubectl, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
    name = pod["metadata"]["name"]
    apply(kubectl, namespace, pod)
    deadline = time.monotonic() + POD_TIMEOUT_SECONDS + 120
    while time.monotonic() < deadline:
        phase = get_json(kubectl, "-n", namespace, "pod", name)["status"].get("phase")
        if phase in {"Succeeded", "Failed"}:
            logs = kubectl("-n", namespace, "logs", name, check=False).stdout
            if phase == "Failed":
                pytest.fail(f"client pod failed:\n{logs}", pytrace=False)
            document: dict[str, Any] = json.loads(logs.strip().splitlines()[-1])
            return document
        time.sleep(1)
    described = kubectl("-n", namespace, "describe", "pod", name, check=False).stdout
    pytest.fail(f"client pod {namespace}/{name} did not finish:\n{described}", pytrace=False)


def _wait_for(what: str, probe: Any, release: Release, kubectl: Kubectl) -> Any:
    deadline = time.monotonic() + CONVERGED_WITHIN_SECONDS
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            logs = kubectl(
                "-n", release.namespace, "logs", f"deployment/{release.name}-operator", check=False
            )
            pytest.fail(
                f"{what}: not within {CONVERGED_WITHIN_SECONDS:.0f} s; operator log:\n"
                f"{logs.stdout[-3000:]}{logs.stderr}",
                pytrace=False,
            )
        time.sleep(2)


def _guard_ready(kubectl: Kubectl, namespace: str) -> bool:
    found = kubectl("-n", namespace, "get", "deployment", GUARD, "-o", "json", check=False)
    if found.returncode != 0:
        return False
    status = json.loads(found.stdout).get("status") or {}
    return int(status.get("readyReplicas") or 0) >= 1


def _network_policy_written(kubectl: Kubectl, namespace: str) -> bool:
    found = kubectl("-n", namespace, "get", "networkpolicy", "ms-netpol-deploy-fraud", check=False)
    return found.returncode == 0


@pytest.fixture
def namespaces(node_cluster: NodeCluster) -> Iterator[tuple[str, str]]:
    """(the model server's, the client's) namespaces."""
    suffix = uuid.uuid4().hex[:6]
    names = (f"e2e-model-{suffix}", f"e2e-clients-{suffix}")
    for name in names:
        node_cluster.kubectl("create", "namespace", name)
    node_cluster.kubectl("-n", names[1], "create", "serviceaccount", "scorer")
    yield names
    for name in names:
        node_cluster.kubectl("delete", "namespace", name, "--wait=false")


def test_the_model_is_reachable_only_through_the_guard(
    node_cluster: NodeCluster,
    installed_chart: Release,
    namespaces: tuple[str, str],
    modelshield_image: str,
) -> None:
    kubectl = node_cluster.kubectl
    model, clients = namespaces
    apply(kubectl, model, _model_server(modelshield_image))
    address = ready_pod_ip(kubectl, model, "fraud")
    # The control: before any policy the client reaches the model server directly.
    assert reaches(kubectl, clients, modelshield_image, address)

    apply(kubectl, model, _policy(clients))
    _wait_for(
        "the guard Ready and the NetworkPolicy written",
        lambda: _guard_ready(kubectl, model) and _network_policy_written(kubectl, model),
        installed_chart,
        kubectl,
    )
    upstream_ip, guard_ip = (
        get_json(kubectl, "-n", model, "service", name)["spec"]["clusterIP"]
        for name in (UPSTREAM, GUARD)
    )
    seen = _run_client(
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
