"""KServe v0.17.0's payload logger feeds the drift monitor modelshield's operator deploys,
on the node (issue 13: the KServe logger path to the drift monitor).

A ModelSecurityPolicy with ``monitoring.drift`` governs an InferenceService that KServe's
real manager serves (the setup of test_kserve_storage_initializer: the verified model from
the store, KServe's storage initializer and sklearnserver built from the release). The
operator deploys the monitor and points the predictor's ``spec.predictor.logger`` at its
Service; KServe's pod mutator then injects its agent sidecar (`go build` of the release's
cmd/agent, images/kserve-agent-image.sh, set in ``inferenceservice-config``'s ``agent``),
which forwards predictions to the server and posts each request and response as a
CloudEvent to the monitor. The monitor counts them (its /metrics through the API server's
pod proxy), a window like the reference raises nothing, a shifted one raises the
DriftDetected Event on the InferenceService.

The node runs no cluster DNS: the predictor's ``hostAliases`` map the Service name the
operator wrote into the logger URL to the Service's cluster IP (a stand-in for DNS only;
the URL, the Service and the routing to the monitor's pod are the real ones).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
from typing import Any
from urllib.parse import urlsplit

import numpy
import pytest

from e2e import kserve
from e2e.kserve import KServe
from e2e.pods.driftmonitoring import _drift_events, reference_profile
from e2e.pods.harness import IMAGES_DIR, NodeCluster, Release, push
from e2e.pods.kservenode import KServeImages, kserve_images, kserve_on_node
from e2e.pods.kservepredictors import (
    PREDICTOR_TIMEOUT_SECONDS,
    SERVICE,
    _credentials,
    _diagnose,
    _inference_service,
    _predictor_pods,
    _runtime,
    kserve_namespace,
)
from e2e.pods.modelstore import ModelStore
from e2e.pods.verifiedmodels import (
    ARTIFACT,
    VERIFIED_WITHIN_SECONDS,
    _artifact,
    _artifact_ready,
    _operator_log,
    _policy,
    _published_keys,
    _wait,
)
from e2e.pods.workloads import apply, get_json
from modelshield.controllers.builders import driftmonitors
from modelshield.modelartifacts import signing
from tests.support import modelfiles as models
from tests.support import signingkeys as keys

__all__ = ["kserve_images", "kserve_namespace", "kserve_on_node"]  # fixtures, by name

#: The monitor the operator names for InferenceService "fraud" (ownership.child_name).
MONITOR = f"ms-drift-isvc-{SERVICE}"
#: KServe's agent port (constants.InferenceServiceDefaultAgentPort): it takes the
#: prediction, forwards it to the server on 8080 and logs request and response.
AGENT_PORT = 9081
WINDOW = 200
BATCH = 50
FEATURES = ("x0", "x1")


@pytest.fixture(scope="module")
def kserve_agent_image(node_cluster: NodeCluster) -> str:
    build = subprocess.run(
        [str(IMAGES_DIR / "kserve-agent-image.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if build.returncode != 0:
        pytest.fail(f"images/kserve-agent-image.sh failed:\n{build.stderr[-4000:]}", pytrace=False)
    return push(node_cluster, build.stdout.split()[-1])


def _rows(generator: numpy.random.Generator, shift: float, count: int) -> list[list[float]]:
    first = generator.normal(0.5 + shift * 0.2, 0.2, count)
    second = generator.normal(0.5, 0.2, count)
    return [[round(float(a), 4), round(float(b), 4)] for a, b in zip(first, second, strict=True)]


def _metrics(node_cluster: NodeCluster, namespace: str) -> dict[str, float]:
    pods = get_json(node_cluster.kubectl, "-n", namespace, "pods", "-l",
                    f"modelshield.dev/drift-monitor={MONITOR}")["items"]  # fmt: skip
    if not pods:
        return {}
    text = node_cluster.kubectl(
        "get", "--raw",
        f"/api/v1/namespaces/{namespace}/pods/{pods[0]['metadata']['name']}:8080/proxy/metrics",
        check=False,
    ).stdout  # fmt: skip
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def _predict_through_agent(
    node_cluster: NodeCluster, namespace: str, pod: str, rows: list[list[float]], path: pathlib.Path
) -> None:
    for start in range(0, len(rows), BATCH):
        path.write_text(json.dumps({"instances": rows[start : start + BATCH]}))
        answered = node_cluster.kubectl(
            "create", "--raw",
            f"/api/v1/namespaces/{namespace}/pods/{pod}:{AGENT_PORT}/proxy"
            f"/v1/models/{SERVICE}:predict",
            "-f", str(path),
        )  # fmt: skip
        predictions = json.loads(answered.stdout)["predictions"]
        assert len(predictions) == len(rows[start : start + BATCH]), predictions


def _logging_predictor(node_cluster: NodeCluster, namespace: str) -> dict[str, Any] | None:
    """A Ready predictor pod with KServe's agent sidecar and the monitor's host alias."""
    for pod in _predictor_pods(node_cluster, namespace):
        spec, status = pod["spec"], pod.get("status", {})
        names = [c["name"] for c in spec["containers"]]
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
        )
        if ready and "agent" in names and spec.get("hostAliases"):
            return pod
    return None


def test_kserve_s_agent_logs_predictions_to_the_operator_s_drift_monitor(
    node_cluster: NodeCluster,
    installed_chart: Release,
    model_store: ModelStore,
    kserve_images: KServeImages,
    kserve_agent_image: str,
    kserve_on_node: KServe,
    kserve_namespace: str,
    tmp_path: pathlib.Path,
) -> None:
    kubectl = node_cluster.kubectl
    namespace = kserve_namespace
    kserve.set_images(
        kubectl, kserve_on_node.release, kserve_images.storage_initializer, kserve_agent_image
    )
    generator = numpy.random.default_rng(13)
    profile = reference_profile(tmp_path, FEATURES, _rows(generator, 0.0, 2000))
    pair = keys.key_pair(tmp_path / "keys", "release")
    model = models.sklearn_model(tmp_path / "model")
    signing.sign_with_key(model, pair.private_path)
    uri = model_store.put_model(f"{namespace}/{ARTIFACT}", model)
    policy = _policy(pair.public_pem)
    policy["spec"]["monitoring"] = {
        "drift": {
            "referenceProfile": {"name": "fraud-reference", "key": "profile.json"},
            "features": list(FEATURES),
            "statistic": "PSI",
            "threshold": 0.25,
            "window": WINDOW,
        }
    }
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "fraud-reference"},
        "data": {"profile.json": profile},
    }
    apply(kubectl, namespace, reference, policy, _artifact(uri), *_credentials(model_store))
    apply(kubectl, namespace, _runtime(kserve_images.sklearn_server))
    _wait(
        f"ModelArtifact {ARTIFACT} Ready",
        lambda: _artifact_ready(node_cluster, namespace),
        VERIFIED_WITHIN_SECONDS,
        lambda: _operator_log(node_cluster, installed_chart),
    )
    _wait(
        "the operator's published signer keys",
        lambda: _published_keys(node_cluster, namespace),
        VERIFIED_WITHIN_SECONDS,
        lambda: _operator_log(node_cluster, installed_chart),
    )
    apply(kubectl, namespace, _inference_service(uri))

    def diagnose() -> str:
        return _diagnose(node_cluster, namespace, kserve_on_node) + _operator_log(
            node_cluster, installed_chart
        )

    # The operator's monitor, and its URL in the predictor's logger.
    logger = _wait(
        "the operator's logger on the InferenceService",
        lambda: get_json(kubectl, "-n", namespace, "inferenceservice", SERVICE)["spec"][
            "predictor"
        ].get("logger"),
        VERIFIED_WITHIN_SECONDS,
        diagnose,
    )
    assert logger == {"mode": "all", "url": driftmonitors.service_url(MONITOR, namespace)}
    _wait(
        f"the operator's drift monitor {MONITOR} Ready",
        lambda: _ready_replicas(node_cluster, namespace, MONITOR),
        VERIFIED_WITHIN_SECONDS,
        diagnose,
    )
    cluster_ip = get_json(kubectl, "-n", namespace, "service", MONITOR)["spec"]["clusterIP"]
    host = urlsplit(logger["url"]).hostname
    kubectl(
        "-n", namespace, "patch", "inferenceservice", SERVICE, "--type=merge", "-p",
        json.dumps({"spec": {"predictor": {
            "hostAliases": [{"ip": cluster_ip, "hostnames": [host]}]}}}),
    )  # fmt: skip
    pod = _wait(
        "a Ready predictor pod with KServe's agent",
        lambda: _logging_predictor(node_cluster, namespace),
        PREDICTOR_TIMEOUT_SECONDS,
        diagnose,
    )
    agent = next(c for c in pod["spec"]["containers"] if c["name"] == "agent")
    assert agent["image"] == kserve_agent_image, agent
    assert logger["url"] in agent["args"], agent["args"]
    name = pod["metadata"]["name"]

    def agent_log() -> str:
        found = kubectl("-n", namespace, "logs", name, "-c", "agent", check=False)
        return diagnose() + "\n--- agent ---\n" + (found.stdout + found.stderr)[-3000:]

    # A window like the reference: every request reaches the monitor, no alarm.
    _predict_through_agent(node_cluster, namespace, name, _rows(generator, 0.0, WINDOW),
                           tmp_path / "request.json")  # fmt: skip
    calm = _wait(
        "the monitor's first window from KServe's logger",
        lambda: (
            (m := _metrics(node_cluster, namespace)).get(
                'modelshield_drift_windows_total{stream="request"}', 0
            )
            >= 1
            and m
        ),
        VERIFIED_WITHIN_SECONDS,
        agent_log,
    )
    assert calm['modelshield_drift_rows_total{stream="request"}'] == WINDOW, calm
    assert calm['modelshield_drift_events_total{stream="request"}'] == WINDOW // BATCH, calm
    assert calm['modelshield_drift_detected{feature="x0"}'] == 0, calm
    assert _drift_events(node_cluster, namespace) == []

    _predict_through_agent(node_cluster, namespace, name, _rows(generator, 1.5, WINDOW),
                           tmp_path / "request.json")  # fmt: skip
    shifted = _wait(
        "the shifted window from KServe's logger",
        lambda: (
            (m := _metrics(node_cluster, namespace)).get(
                'modelshield_drift_windows_total{stream="request"}', 0
            )
            >= 2
            and m
        ),
        VERIFIED_WITHIN_SECONDS,
        agent_log,
    )
    assert shifted['modelshield_drift_detected{feature="x0"}'] == 1, shifted
    assert shifted['modelshield_drift_detected{feature="x1"}'] == 0, shifted
    # The responses came too (mode: all); no outputs are watched, so they are counted
    # as ignored.
    responses = _wait(
        "the responses KServe's logger posted",
        lambda: (
            _metrics(node_cluster, namespace).get(
                'modelshield_drift_events_total{stream="ignored"}', 0
            )
            >= 2 * WINDOW // BATCH
        ),
        VERIFIED_WITHIN_SECONDS,
        agent_log,
    )
    assert responses
    events = _wait(
        "the monitor's DriftDetected Event on the InferenceService",
        lambda: _drift_events(node_cluster, namespace),
        VERIFIED_WITHIN_SECONDS,
        agent_log,
    )
    assert [e["reason"] for e in events] == ["DriftDetected"], events
    assert events[0]["involvedObject"]["kind"] == "InferenceService", events
    assert events[0]["involvedObject"]["name"] == SERVICE, events
    assert events[0]["message"].startswith("Drift detected on request feature 'x0'"), events
    requests = 'modelshield_drift_events_total{stream="request"}'
    score = 'modelshield_drift_score{feature="x0",statistic="PSI"}'
    print(
        f"\nKServe's agent posted {shifted[requests]:.0f} request events to the monitor; "
        f"PSI of x0: {calm[score]:.3f} calm, {shifted[score]:.3f} shifted"
    )


def _ready_replicas(node_cluster: NodeCluster, namespace: str, name: str) -> int:
    found = node_cluster.kubectl(
        "-n", namespace, "get", "deployment", name, "-o", "json", check=False
    )
    if found.returncode != 0:
        return 0
    return int(json.loads(found.stdout).get("status", {}).get("readyReplicas") or 0)
