"""An attacker pod's one-feature sweep through the guard raises a probing Event, on the node:
the chart's operator places the guard next to a model server for a policy with ``api``
(ServiceAccount tokens, probing with Alert) and ``monitoring.drift`` (a reference profile
from ``modelshield drift profile``, which carries the outlier model the probing detectors
read their standard units from). Two client pods in another namespace, each with its own
ServiceAccount's projected token, call the guard's Service: the benign one replays held-out
real rows, the attacker sweeps one feature of a real row over its training range. The
model's Deployment gets exactly one Warning Event ``ModelProbingDetected``, naming the
attacker; the benign client raised no alarm on either guard replica (their metrics).

The data is scikit-learn's bundled breast cancer (rows 0-399 profiled, the rest held out),
as in e2e/test_guard_probing_events.py, which shows the same on the control plane with the
guard as a local process. Both clients keep one connection open, so each one's stream goes
to one guard replica: probing state is per replica (docs/runtime-defences.md).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

from e2e.clients import Kubectl
from e2e.pods.guarding import (
    AUDIENCE,
    GUARD,
    PREDICT_PATH,
    TOKEN_PATH,
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
from e2e.pods.workloads import apply, get_json

DATA = load_breast_cancer().data
PROFILED = 400
FEATURES = [f"f{i}" for i in range(DATA.shape[1])]
#: The Sweep detector judges a client's last 50 queries: 60 reach it with room to spare.
QUERIES = 60
ATTACKER, BENIGN = "sweeper", "scorer"
EVENT_REASON = "ModelProbingDetected"
SENT_EVENTS = 'modelshield_guard_probing_events_total{outcome="sent"}'

#: Run in a client pod: the rows one by one over one kept-alive connection to the guard;
#: prints one JSON document of what it saw.
CLIENT_SCRIPT = """
import http.client, json, sys, time
host, path, token_path, rows = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
headers = {"Content-Type": "application/json",
           "Authorization": "Bearer " + open(token_path).read().strip()}
seen = {"connections": 0, "statuses": [], "errors": []}
connection = None

def call(row):
    global connection
    for attempt in range(2):
        if connection is None:
            connection = http.client.HTTPConnection(host, timeout=10)
            seen["connections"] += 1
        try:
            connection.request("POST", path, body=json.dumps({"instances": [row]}),
                               headers=headers)
            response = connection.getresponse()
            return response.status, response.read().decode()
        except (OSError, http.client.HTTPException) as error:
            seen["errors"].append(repr(error))
            connection.close()
            connection = None
    return 0, "no answer"

# The guard may answer before the operator's binding pass has run: 503 until then (the
# request is refused before the probing detectors see it).
deadline = time.monotonic() + 90
status, body = call(rows[0])
while status == 503 and time.monotonic() < deadline:
    time.sleep(2)
    status, body = call(rows[0])
seen["first"] = [status, body]
seen["statuses"] = [status] + [call(row)[0] for row in rows[1:]]
print(json.dumps(seen))
"""


def _sweep() -> list[list[float]]:
    """A held-out row with feature 2 swept over its training range, one query per step."""
    seed = DATA[450]
    rows = []
    for value in np.linspace(DATA[:PROFILED, 2].min(), DATA[:PROFILED, 2].max(), QUERIES):
        row = [float(v) for v in seed]
        row[2] = float(value)
        rows.append(row)
    return rows


def _benign() -> list[list[float]]:
    """Held-out real rows in random order."""
    order = np.random.default_rng(3).permutation(np.arange(PROFILED, len(DATA)))[:QUERIES]
    return [[float(v) for v in DATA[i]] for i in order]


def _reference(tmp_path: pathlib.Path) -> dict[str, Any]:
    """The ConfigMap of the profile `modelshield drift profile` writes (with its outlier
    model) from the profiled rows."""
    data = tmp_path / "reference.csv"
    lines = [",".join(repr(float(v)) for v in row) for row in DATA[:PROFILED]]
    data.write_text(",".join(FEATURES) + "\n" + "\n".join(lines) + "\n")
    out = tmp_path / "profile.json"
    built = subprocess.run(
        [sys.executable, "-m", "modelshield.cli.main", "drift", "profile", str(data),
         "--out", str(out), "--no-calibration"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "outliers" in json.loads(out.read_text())
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "fraud-reference"},
        "data": {"profile.json": out.read_text()},
    }


def _policy(client_namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "fraud-probing"},
        "spec": {
            "selector": {"matchLabels": {"governed": "yes"}},
            "api": {
                "authentication": {"serviceAccountTokens": {"audiences": [AUDIENCE]}},
                "authorization": {
                    "allow": [
                        {
                            "serviceAccounts": [
                                f"{client_namespace}/{ATTACKER}",
                                f"{client_namespace}/{BENIGN}",
                            ],
                            "models": ["fraud"],
                        }
                    ]
                },
                # One detector, so one sweep is one alarm (each detector alarms once per
                # client per coolDown).
                "probing": {"action": "Alert", "detectors": ["Sweep"]},
            },
            "monitoring": {
                "drift": {
                    "referenceProfile": {"name": "fraud-reference", "key": "profile.json"},
                    # Larger than what the clients send: no drift window completes.
                    "window": 1000,
                }
            },
        },
    }


def _probing_events(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    events = get_json(kubectl, "-n", namespace, "events")["items"]
    return [event for event in events if event.get("reason") == EVENT_REASON]


def _alarm_samples(kubectl: Kubectl, namespace: str) -> dict[str, list[str]]:
    """Each guard pod's probing alarm and Event samples (its /metrics on the management
    port, through the API server's pod proxy)."""
    pods = get_json(kubectl, "-n", namespace, "pods", "-l",
                    f"modelshield.dev/inference-guard={GUARD}")["items"]  # fmt: skip
    samples = {}
    for pod in pods:
        name = pod["metadata"]["name"]
        text = kubectl(
            "get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{name}:9090/proxy/metrics"
        ).stdout
        samples[name] = [
            line
            for line in text.splitlines()
            if line.startswith(
                (
                    "modelshield_guard_probing_alarms_total{",
                    "modelshield_guard_probing_events_total{",
                )
            )
        ]
    return samples


@pytest.fixture
def namespaces(node_cluster: NodeCluster) -> Iterator[tuple[str, str]]:
    """(the model server's, the clients') namespaces."""
    with model_and_client_namespaces(node_cluster, (ATTACKER, BENIGN)) as names:
        yield names


def test_an_attacker_pod_s_sweep_raises_one_probing_event_naming_it(
    node_cluster: NodeCluster,
    installed_chart: Release,
    namespaces: tuple[str, str],
    modelshield_image: str,
    tmp_path: pathlib.Path,
) -> None:
    kubectl = node_cluster.kubectl
    model, clients = namespaces
    apply(kubectl, model, _reference(tmp_path), _policy(clients), model_server(modelshield_image))
    wait_for(
        "the guard Ready and the NetworkPolicy written",
        lambda: guard_ready(kubectl, model) and network_policy_written(kubectl, model),
        installed_chart,
        kubectl,
    )
    guard = cluster_ip(kubectl, model, GUARD)

    def client(account: str, rows: list[list[float]]) -> dict[str, Any]:
        arguments = [f"{guard}:80", PREDICT_PATH, TOKEN_PATH, json.dumps(rows)]
        return token_client_pod(modelshield_image, account, CLIENT_SCRIPT, arguments)

    benign, attacker = run_clients(
        kubectl, clients, client(BENIGN, _benign()), client(ATTACKER, _sweep())
    )
    # Alert only: both are served every answer, each over the one connection it opened.
    for seen in (benign, attacker):
        assert seen["statuses"] == [200] * QUERIES, seen
        assert seen["connections"] == 1, seen

    attacker_identity = f"serviceaccount:{clients}/{ATTACKER}"
    found = wait_for(
        f"a {EVENT_REASON} Event in {model}",
        lambda: _probing_events(kubectl, model),
        installed_chart,
        kubectl,
        timeout=60,
    )
    # Both clients have finished and the Event is posted as the alarm is raised: a few
    # seconds more for a second one (there must be none).
    time.sleep(5)
    found = _probing_events(kubectl, model)
    assert len(found) == 1, [event["message"] for event in found]
    (event,) = found
    assert event["type"] == "Warning", event
    assert event["involvedObject"]["kind"] == "Deployment", event
    assert event["involvedObject"]["name"] == "fraud", event
    deployment = get_json(kubectl, "-n", model, "deployment", "fraud")
    assert event["involvedObject"]["uid"] == deployment["metadata"]["uid"], event
    assert event["source"]["component"] == "modelshield-inference-guard", event
    assert f"client {attacker_identity} " in event["message"], event
    assert "(Sweep, ModelSecurityPolicy" in event["message"], event

    # The guard's own counts: one alarm for the attacker on one replica, none for the benign
    # client on any.
    samples = _alarm_samples(kubectl, model)
    lines = [line for pod_lines in samples.values() for line in pod_lines]
    alarms = [line for line in lines if line.startswith("modelshield_guard_probing_alarms_total")]
    assert len(alarms) == 1, samples
    assert f'client="{attacker_identity}"' in alarms[0], samples
    assert alarms[0].endswith(" 1.0"), samples
    assert not any(f"/{BENIGN}" in line for line in lines), samples
    sent = [line for line in lines if line.startswith(SENT_EVENTS)]
    assert sum(float(line.rpartition(" ")[2]) for line in sent) == 1, samples
