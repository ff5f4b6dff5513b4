"""Pods for the node tests: a TCP server and one-shot probes that try to reach it.

Both run modelshield's own image (its Python; no other image is needed on a machine without
Docker Hub). A probe is a pod that exits 0 when its connection was accepted and 1 when it
was refused or timed out, so what it shows is what the pod network let through.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import yaml

from e2e.clients import Kubectl

SERVER_PORT = 8080
PROBE_TIMEOUT_SECONDS = 2
POD_TIMEOUT_SECONDS = 120.0
HARDENED = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
# The probe keeps trying for PROBE_WINDOW_SECONDS: the policy implementation learns a new
# pod's address from a watch, so a pod's first packets may precede the rules that let an
# allowed peer in. "Blocked" thus means: no connection in the whole window.
PROBE_WINDOW_SECONDS = 10
PROBE_SCRIPT = """
import socket, sys, time
host, port, timeout, window = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
deadline = time.monotonic() + window
while True:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        print("connected")
        sys.exit(0)
    except OSError as error:
        if time.monotonic() > deadline:
            print(f"blocked: {error!r}")
            sys.exit(1)
        time.sleep(0.5)
"""


def _container(name: str, image: str, command: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "command": command,
        "securityContext": HARDENED,
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
    }


def server_deployment(name: str, image: str, labels: dict[str, str]) -> dict[str, Any]:
    """A Deployment whose pod accepts TCP on SERVER_PORT (Python's http.server)."""
    container = _container(
        "server", image, ["python", "-m", "http.server", str(SERVER_PORT), "--directory", "/tmp"]
    )
    container["ports"] = [{"containerPort": SERVER_PORT, "name": "http"}]
    container["readinessProbe"] = {"tcpSocket": {"port": SERVER_PORT}, "periodSeconds": 1}
    pod_labels = {"app": name, **labels}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
            },
        },
    }


def apply(kubectl: Kubectl, namespace: str, *documents: dict[str, Any]) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", input_text=yaml.safe_dump_all(documents))


def get_json(kubectl: Kubectl, *arguments: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(kubectl("get", "-o", "json", *arguments).stdout)
    return document


def ready_pod_ip(kubectl: Kubectl, namespace: str, app: str) -> str:
    """The IP of the Ready pod of the Deployment `app`, once there is one."""
    deadline = time.monotonic() + POD_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for pod in get_json(kubectl, "-n", namespace, "pods", "-l", f"app={app}")["items"]:
            conditions = pod.get("status", {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                return str(pod["status"]["podIP"])
        time.sleep(0.5)
    pods = kubectl("-n", namespace, "describe", "pods", "-l", f"app={app}", check=False).stdout
    pytest.fail(f"no Ready pod of {namespace}/{app} in {POD_TIMEOUT_SECONDS:.0f} s:\n{pods}")


def reaches(kubectl: Kubectl, namespace: str, image: str, address: str) -> bool:
    """Whether a new pod in `namespace` opens a TCP connection to address:SERVER_PORT within
    PROBE_WINDOW_SECONDS."""
    name = "probe-" + uuid.uuid4().hex[:8]
    container = _container(
        "probe",
        image,
        [
            "python",
            "-c",
            PROBE_SCRIPT,
            address,
            str(SERVER_PORT),
            str(PROBE_TIMEOUT_SECONDS),
            str(PROBE_WINDOW_SECONDS),
        ],
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"role": "probe"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
        },
    }
    apply(kubectl, namespace, pod)
    try:
        deadline = time.monotonic() + POD_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            phase = str(get_json(kubectl, "-n", namespace, "pod", name)["status"].get("phase"))
            if phase in {"Succeeded", "Failed"}:
                return phase == "Succeeded"
            time.sleep(0.5)
        described = kubectl("-n", namespace, "describe", "pod", name, check=False).stdout
        pytest.fail(f"probe pod {namespace}/{name} did not finish:\n{described}")
    finally:
        kubectl("-n", namespace, "delete", "pod", name, "--wait=false", check=False)


def eventually_reaches(
    kubectl: Kubectl, namespace: str, image: str, address: str, expected: bool, timeout: float
) -> None:
    """Probes until the answer is `expected` (policies are applied by kube-router within
    seconds, not synchronously); fails when it never is."""
    deadline = time.monotonic() + timeout
    while reaches(kubectl, namespace, image, address) != expected:
        if time.monotonic() > deadline:
            state = "reachable" if expected else "blocked"
            pytest.fail(f"{address}:{SERVER_PORT} never became {state} from {namespace}")
        time.sleep(1)
