"""What the inference guard's node tests share: a stand-in model server behind the guard the
operator places, client pods that call the guard with a projected ServiceAccount token, and
waiting for the operator to converge.

The model server is a stand-in (a fixed answer from Python's http.server in modelshield's
image): what these tests show is the path to it through the guard, not the model.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from e2e.clients import Kubectl
from e2e.pods.harness import NodeCluster, Release
from e2e.pods.workloads import HARDENED, POD_TIMEOUT_SECONDS, SERVER_PORT, apply, get_json

#: The audience client pods' projected tokens are issued for, and the policies ask for.
AUDIENCE = "modelshield-guard"
#: The objects the operator makes for the Deployment `fraud`.
GUARD = "ms-guard-deploy-fraud"
UPSTREAM = "ms-guard-up-deploy-fraud"
NETWORK_POLICY = "ms-netpol-deploy-fraud"
#: The operator's pods come up, the guard's pods pull the image and start, the binding's
#: pass runs, kube-router applies the NetworkPolicy: a minute or two on a loaded machine.
CONVERGED_WITHIN_SECONDS = 240.0
ANSWER = {"predictions": [0, 1]}
PREDICT_PATH = "/v1/models/fraud:predict"
#: Where a client pod finds its projected token for AUDIENCE.
TOKEN_PATH = "/var/run/guard-token/token"

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

_T = TypeVar("_T")


def container(name: str, image: str, command: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "command": command,
        "securityContext": HARDENED,
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
    }


def model_server(image: str) -> dict[str, Any]:
    """The Deployment `fraud` (label governed=yes) answering ANSWER on PREDICT_PATH."""
    server = container(
        "server",
        image,
        ["python", "-c", STAND_IN_MODEL_SERVER, json.dumps(ANSWER), str(SERVER_PORT)],
    )
    server["ports"] = [{"containerPort": SERVER_PORT, "name": "http"}]
    server["readinessProbe"] = {"tcpSocket": {"port": SERVER_PORT}, "periodSeconds": 1}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "fraud"}},
            "template": {
                "metadata": {"labels": {"app": "fraud", "governed": "yes"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [server]},
            },
        },
    }


def token_client_pod(
    image: str, service_account: str, script: str, arguments: list[str]
) -> dict[str, Any]:
    """A one-shot pod running `script` as `service_account`, with a token for AUDIENCE at
    TOKEN_PATH (and no API server token). The node runs no cluster DNS: pass Services by
    their ClusterIPs."""
    client = container("client", image, ["python", "-c", script, *arguments])
    client["volumeMounts"] = [
        {"name": "guard-token", "mountPath": TOKEN_PATH.rpartition("/")[0], "readOnly": True}
    ]
    token = {"audience": AUDIENCE, "expirationSeconds": 3600, "path": "token"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{service_account}-{uuid.uuid4().hex[:8]}"},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": service_account,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [client],
            "volumes": [
                {"name": "guard-token", "projected": {"sources": [{"serviceAccountToken": token}]}}
            ],
        },
    }


def wait_for_clients(
    kubectl: Kubectl, namespace: str, *pods: dict[str, Any]
) -> list[dict[str, Any]]:
    """Waits for client pods that print one JSON document on their last line and exit 0;
    their documents, in order. Fails the test when one fails or does not finish."""
    names = [pod["metadata"]["name"] for pod in pods]
    documents: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + POD_TIMEOUT_SECONDS + 120
    while len(documents) < len(names) and time.monotonic() < deadline:
        for name in names:
            if name in documents:
                continue
            phase = get_json(kubectl, "-n", namespace, "pod", name)["status"].get("phase")
            if phase in {"Succeeded", "Failed"}:
                logs = kubectl("-n", namespace, "logs", name, check=False).stdout
                if phase == "Failed":
                    pytest.fail(f"client pod {name} failed:\n{logs}", pytrace=False)
                documents[name] = json.loads(logs.strip().splitlines()[-1])
        time.sleep(1)
    for name in names:
        if name not in documents:
            described = kubectl("-n", namespace, "describe", "pod", name, check=False).stdout
            pytest.fail(
                f"client pod {namespace}/{name} did not finish:\n{described}", pytrace=False
            )
    return [documents[name] for name in names]


def run_clients(kubectl: Kubectl, namespace: str, *pods: dict[str, Any]) -> list[dict[str, Any]]:
    """Starts the client pods together; what each printed (wait_for_clients)."""
    apply(kubectl, namespace, *pods)
    return wait_for_clients(kubectl, namespace, *pods)


def wait_for(
    what: str,
    probe: Callable[[], _T],
    release: Release,
    kubectl: Kubectl,
    timeout: float = CONVERGED_WITHIN_SECONDS,
) -> _T:
    """probe() until it is truthy; fails with the operator's log when it never is."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            logs = kubectl(
                "-n", release.namespace, "logs", f"deployment/{release.name}-operator", check=False
            )
            pytest.fail(
                f"{what}: not within {timeout:.0f} s; operator log:\n"
                f"{logs.stdout[-3000:]}{logs.stderr}",
                pytrace=False,
            )
        time.sleep(2)


def guard_ready(kubectl: Kubectl, namespace: str) -> bool:
    found = kubectl("-n", namespace, "get", "deployment", GUARD, "-o", "json", check=False)
    if found.returncode != 0:
        return False
    status = json.loads(found.stdout).get("status") or {}
    return int(status.get("readyReplicas") or 0) >= 1


def network_policy_written(kubectl: Kubectl, namespace: str) -> bool:
    found = kubectl("-n", namespace, "get", "networkpolicy", NETWORK_POLICY, check=False)
    return found.returncode == 0


def cluster_ip(kubectl: Kubectl, namespace: str, service: str) -> str:
    return str(get_json(kubectl, "-n", namespace, "service", service)["spec"]["clusterIP"])


@contextlib.contextmanager
def model_and_client_namespaces(
    node_cluster: NodeCluster, service_accounts: tuple[str, ...]
) -> Iterator[tuple[str, str]]:
    """(the model server's, the clients') fresh namespaces; the clients' with these
    ServiceAccounts."""
    suffix = uuid.uuid4().hex[:6]
    names = (f"e2e-model-{suffix}", f"e2e-clients-{suffix}")
    for name in names:
        node_cluster.kubectl("create", "namespace", name)
    for account in service_accounts:
        node_cluster.kubectl("-n", names[1], "create", "serviceaccount", account)
    try:
        yield names
    finally:
        for name in names:
            node_cluster.kubectl("delete", "namespace", name, "--wait=false")
