"""The drift monitor the operator deploys next to a governed model server, on the node: it
becomes Ready, takes request payloads a client pod posts to its Service (the plain-JSON
path docs/drift-monitoring.md gives for Deployments), and its scores move on shifted data:
a window like the reference raises no alarm, a shifted one does: its metric, and a Warning
Event on the model's Deployment that the monitor writes with its own ServiceAccount, which
may create Events in its namespace and do nothing else.
"""

from __future__ import annotations

import json
import pathlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy
import pytest

from e2e.pods.driftmonitoring import _drift_events, reference_profile
from e2e.pods.harness import NodeCluster, Release
from e2e.pods.workloads import HARDENED, POD_TIMEOUT_SECONDS, apply, get_json, server_deployment

MONITOR = "ms-drift-deploy-scoring"
WINDOW = 200
FEATURES = ("amount", "age")
DEPLOYED_WITHIN_SECONDS = 180.0
# Posts rows to the monitor in batches of 50 (a fresh pod: the monitor's Service as a
# client in the model's namespace reaches it), then exits.
CLIENT_SCRIPT = """
import json, sys, urllib.request
address, rows = sys.argv[1], json.loads(sys.argv[2])
for start in range(0, len(rows), 50):
    body = json.dumps({"instances": rows[start:start + 50]}).encode()
    request = urllib.request.Request(f"http://{address}/events", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 202, answer.status
print(f"posted {len(rows)} rows")
"""


@pytest.fixture
def scoring_namespace(node_cluster: NodeCluster) -> Iterator[str]:
    name = "e2e-drift-" + uuid.uuid4().hex[:6]
    node_cluster.kubectl("create", "namespace", name)
    yield name
    node_cluster.kubectl("delete", "namespace", name, "--wait=false")


def _rows(generator: numpy.random.Generator, shift: float, count: int) -> list[list[float]]:
    amount = generator.normal(100.0 + shift * 20.0, 20.0, count)
    age = generator.normal(40.0, 10.0, count)
    return [[round(float(a), 3), round(float(b), 3)] for a, b in zip(amount, age, strict=True)]


def _metrics(node_cluster: NodeCluster, namespace: str) -> dict[str, float]:
    """The monitor's Prometheus samples (name{labels} -> value), through the API server."""
    pods = get_json(node_cluster.kubectl, "-n", namespace, "pods", "-l",
                    f"modelshield.dev/drift-monitor={MONITOR}")["items"]  # fmt: skip
    if not pods:
        return {}
    name = pods[0]["metadata"]["name"]
    text = node_cluster.kubectl(
        "get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{name}:8080/proxy/metrics",
        check=False,
    ).stdout  # fmt: skip
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def _post(node_cluster: NodeCluster, namespace: str, image: str, address: str,
          rows: list[list[float]]) -> None:  # fmt: skip
    name = "client-" + uuid.uuid4().hex[:6]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "client",
                    "image": image,
                    "command": ["python", "-c", CLIENT_SCRIPT, address, json.dumps(rows)],
                    "securityContext": HARDENED,
                    "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                }
            ],
        },
    }
    apply(node_cluster.kubectl, namespace, pod)
    deadline = time.monotonic() + POD_TIMEOUT_SECONDS
    while (
        phase := get_json(node_cluster.kubectl, "-n", namespace, "pod", name)["status"].get("phase")
    ) not in {"Succeeded", "Failed"}:
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    logs = node_cluster.kubectl("-n", namespace, "logs", name, check=False)
    assert phase == "Succeeded", logs.stdout + logs.stderr


def _wait(what: str, probe: Any, diagnose: Any) -> Any:
    deadline = time.monotonic() + DEPLOYED_WITHIN_SECONDS
    while not (found := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {DEPLOYED_WITHIN_SECONDS:.0f} s\n{diagnose()}",
                        pytrace=False)  # fmt: skip
        time.sleep(2)
    return found


def test_the_operator_s_drift_monitor_takes_payloads_and_alarms_on_shifted_data(
    node_cluster: NodeCluster,
    installed_chart: Release,
    scoring_namespace: str,
    modelshield_image: str,
    tmp_path: pathlib.Path,
) -> None:
    kubectl = node_cluster.kubectl
    namespace = scoring_namespace
    generator = numpy.random.default_rng(7)
    profile = reference_profile(tmp_path, FEATURES, _rows(generator, 0.0, 2000))
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "scoring-reference"},
        "data": {"profile.json": profile},
    }
    policy = {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "watch-drift"},
        "spec": {
            "selector": {"matchLabels": {"serves": "scoring"}},
            "monitoring": {
                "drift": {
                    "referenceProfile": {"name": "scoring-reference", "key": "profile.json"},
                    "features": list(FEATURES),
                    "statistic": "PSI",
                    "threshold": 0.25,
                    "window": WINDOW,
                }
            },
        },
    }
    apply(kubectl, namespace, reference, policy)
    apply(
        kubectl, namespace, server_deployment("scoring", modelshield_image, {"serves": "scoring"})
    )

    def logs() -> str:
        found = kubectl("-n", installed_chart.namespace, "logs",
                        f"deployment/{installed_chart.name}-operator", check=False)  # fmt: skip
        described = kubectl("-n", namespace, "describe", "pods", check=False).stdout
        return found.stdout[-3000:] + described[-3000:]

    _wait(
        f"the operator's drift monitor {MONITOR} Ready",
        lambda: (
            get_json(kubectl, "-n", namespace, "deployment", MONITOR)
            .get("status", {})
            .get("readyReplicas")
            if kubectl("-n", namespace, "get", "deployment", MONITOR, check=False).returncode == 0
            else None
        ),
        logs,
    )
    service = get_json(kubectl, "-n", namespace, "service", MONITOR)
    address = f"{service['spec']['clusterIP']}:8080"

    # A window like the reference: scored, no alarm.
    _post(node_cluster, namespace, modelshield_image, address, _rows(generator, 0.0, WINDOW))
    calm = _wait(
        "the first window scored",
        lambda: (
            (m := _metrics(node_cluster, namespace)).get(
                'modelshield_drift_windows_total{stream="request"}', 0
            )
            >= 1
            and m
        ),
        logs,
    )
    calm_score = calm['modelshield_drift_score{feature="amount",statistic="PSI"}']
    assert calm['modelshield_drift_detected{feature="amount"}'] == 0, calm
    assert calm_score < 0.25, calm
    assert _drift_events(node_cluster, namespace) == []

    # A window whose amounts moved by 1.5 standard deviations: the score moves, the alarm
    # is raised.
    _post(node_cluster, namespace, modelshield_image, address, _rows(generator, 1.5, WINDOW))
    shifted = _wait(
        "the shifted window scored",
        lambda: (
            (m := _metrics(node_cluster, namespace)).get(
                'modelshield_drift_windows_total{stream="request"}', 0
            )
            >= 2
            and m
        ),
        logs,
    )
    assert shifted['modelshield_drift_score{feature="amount",statistic="PSI"}'] > 0.25, shifted
    assert shifted['modelshield_drift_detected{feature="amount"}'] == 1, shifted
    assert shifted['modelshield_drift_detected{feature="age"}'] == 0, shifted
    assert shifted['modelshield_drift_rows_total{stream="request"}'] == 2 * WINDOW, shifted

    # The alarm's Event, on the model's Deployment, written by the monitor itself.
    drift_events = _wait(
        "the monitor's DriftDetected Event on deployment/scoring",
        lambda: _drift_events(node_cluster, namespace),
        lambda: logs() + _monitor_logs(node_cluster, namespace),
    )
    assert [event["reason"] for event in drift_events] == ["DriftDetected"], drift_events
    (event,) = drift_events
    assert event["type"] == "Warning", event
    assert event["involvedObject"]["kind"] == "Deployment", event
    assert event["involvedObject"]["name"] == "scoring", event
    assert event["message"].startswith("Drift detected on request feature 'amount': PSI"), event
    _assert_monitor_may_create_events_only(node_cluster, namespace)


def _monitor_logs(node_cluster: NodeCluster, namespace: str) -> str:
    found = node_cluster.kubectl("-n", namespace, "logs", f"deployment/{MONITOR}", check=False)
    return found.stdout[-3000:] + found.stderr[-1000:]


def _assert_monitor_may_create_events_only(node_cluster: NodeCluster, namespace: str) -> None:
    """The monitor's pod runs as its own ServiceAccount, which the API server lets create
    Events in the workload's namespace and nothing else."""
    (pod,) = get_json(node_cluster.kubectl, "-n", namespace, "pods", "-l",
                      f"modelshield.dev/drift-monitor={MONITOR}")["items"]  # fmt: skip
    assert pod["spec"]["serviceAccountName"] == MONITOR, pod["spec"]
    identity = f"system:serviceaccount:{namespace}:{MONITOR}"

    def allowed(*request: str) -> bool:
        answer = node_cluster.kubectl("auth", "can-i", "--as", identity, *request, check=False)
        assert answer.stdout.strip() in {"yes", "no"}, answer.stdout + answer.stderr
        return answer.stdout.strip() == "yes"

    assert allowed("create", "events", "-n", namespace)
    for request in (
        ("create", "events", "-n", "default"),
        ("get", "events", "-n", namespace),
        ("patch", "events", "-n", namespace),
        ("get", "pods", "-n", namespace),
        ("get", "configmaps", "-n", namespace),
        ("get", "secrets", "-n", namespace),
        ("create", "pods", "-n", namespace),
        ("create", "events.events.k8s.io", "-n", namespace),
    ):
        assert not allowed(*request), request
