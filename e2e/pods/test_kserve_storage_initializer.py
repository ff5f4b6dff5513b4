"""KServe v0.17.0 on the node: its storage initializer downloads the model modelshield
verified, and its scikit-learn server answers with it (issue 19 part 5, issue 13).

KServe's real controller manager (a host process, e2e/kserve.py) makes the predictor
Deployment of an InferenceService that names a Ready ModelArtifact and the store's s3://
URI; its pod mutator injects the storage initializer built from KServe's own sources
(images/kserve-image.sh), which downloads from the model store (moto's S3 on the node's
address) with the credentials of the predictor's ServiceAccount, as KServe hands them over.
The chart's webhook (modelStore.s3Endpoint: the store) admits that pod and appends its
startup re-verification after KServe's initializer; KServe's sklearnserver loads the model
and answers a v1 prediction through the API server's pod proxy. Then the model is swapped
in the store: the next pod KServe's ReplicaSet makes downloads the swapped file and stops
in modelshield's init container, which names it.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

from e2e.kserve import KServe
from e2e.pods.harness import NodeCluster, Release
from e2e.pods.kservenode import KServeImages, kserve_images, kserve_on_node
from e2e.pods.kservepredictors import (
    MODEL_DIR,
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
    SIGNER,
    VERIFIED_WITHIN_SECONDS,
    _artifact,
    _artifact_ready,
    _failed_check,
    _init_status,
    _operator_log,
    _policy,
    _published_keys,
    _swapped_model,
    _wait,
)
from e2e.pods.workloads import POD_TIMEOUT_SECONDS, apply
from modelshield.engine import startup
from modelshield.modelartifacts import signing
from tests.support import modelfiles as models
from tests.support import signingkeys as keys

__all__ = ["kserve_images", "kserve_namespace", "kserve_on_node"]  # fixtures, shared by name

INITIALIZER = "storage-initializer"
#: Inputs whose classes the model's training data fixes (tests/modelartifacts/models.py).
INSTANCES = [[0.0, 1.0], [1.0, 0.0]]


def _ready_predictor(node_cluster: NodeCluster, namespace: str) -> dict[str, Any] | None:
    for pod in _predictor_pods(node_cluster, namespace):
        conditions = pod.get("status", {}).get("conditions") or []
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return pod
    return None


def _failed_predictor(
    node_cluster: NodeCluster, namespace: str, other_than: str
) -> dict[str, Any] | None:
    """The failed run of modelshield's check in a predictor pod other than the first."""
    for pod in _predictor_pods(node_cluster, namespace):
        if pod["metadata"]["name"] != other_than:
            failed = _failed_check(pod)
            if failed is not None:
                return {"pod": pod, "terminated": failed}
    return None


def _predict(node_cluster: NodeCluster, namespace: str, pod: str, path: pathlib.Path) -> Any:
    """A v1 prediction from the server, through the API server's pod proxy (a POST)."""
    path.write_text(json.dumps({"instances": INSTANCES}))
    answered = node_cluster.kubectl(
        "create", "--raw",
        f"/api/v1/namespaces/{namespace}/pods/{pod}:8080/proxy/v1/models/{SERVICE}:predict",
        "-f", str(path),
    )  # fmt: skip
    return json.loads(answered.stdout)


def test_kserve_downloads_the_verified_model_and_serves_it_and_a_swapped_one_stops(
    node_cluster: NodeCluster,
    installed_chart: Release,
    model_store: ModelStore,
    kserve_images: KServeImages,
    kserve_on_node: KServe,
    kserve_namespace: str,
    tmp_path: pathlib.Path,
) -> None:
    started = time.monotonic()
    kubectl = node_cluster.kubectl
    namespace = kserve_namespace
    pair = keys.key_pair(tmp_path / "keys", SIGNER)
    model = models.sklearn_model(tmp_path / "model")
    signed = signing.sign_with_key(model, pair.private_path)
    uri = model_store.put_model(f"{namespace}/{ARTIFACT}", model)
    apply(kubectl, namespace, _policy(pair.public_pem), _artifact(uri), *_credentials(model_store))
    apply(kubectl, namespace, _runtime(kserve_images.sklearn_server))
    status = _wait(
        f"ModelArtifact {ARTIFACT} Ready",
        lambda: _artifact_ready(node_cluster, namespace),
        VERIFIED_WITHIN_SECONDS,
        lambda: _operator_log(node_cluster, installed_chart),
    )
    assert status["verifiedDigest"] == signed.digest
    key_file = startup.key_file_name(ARTIFACT, SIGNER)
    _wait(
        f"the operator's {startup.KEYS_CONFIG_MAP} with {key_file}",
        lambda: key_file in _published_keys(node_cluster, namespace),
        VERIFIED_WITHIN_SECONDS,
        lambda: _operator_log(node_cluster, installed_chart),
    )

    apply(kubectl, namespace, _inference_service(uri))
    pod = _wait(
        "a Ready predictor pod made by KServe",
        lambda: _ready_predictor(node_cluster, namespace),
        PREDICTOR_TIMEOUT_SECONDS,
        lambda: _diagnose(node_cluster, namespace, kserve_on_node),
    )
    pod_name = pod["metadata"]["name"]
    init = pod["spec"]["initContainers"]
    # KServe's initializer (its image, the args its mutator writes), then modelshield's.
    assert [c["name"] for c in init] == [INITIALIZER, startup.CONTAINER_NAME], init
    assert init[0]["image"] == kserve_images.storage_initializer
    assert init[0]["args"] == [uri, MODEL_DIR]
    environment = {e["name"]: e.get("value") for e in init[0]["env"]}
    assert environment["AWS_ENDPOINT_URL"] == model_store.server.endpoint, environment
    check = init[1]
    assert check["command"][:4] == ["modelshield", "model", "verify", MODEL_DIR], check
    assert check["command"][check["command"].index("--digest") + 1] == signed.digest
    for name in (INITIALIZER, startup.CONTAINER_NAME):
        terminated = _init_status(pod, name).get("state", {}).get("terminated") or {}
        assert terminated.get("exitCode") == 0, (name, _init_status(pod, name))
    # The initializer really fetched the files from the store (KServe's own log lines).
    downloaded = kubectl("-n", namespace, "logs", pod_name, "-c", INITIALIZER)
    log = downloaded.stdout + downloaded.stderr
    assert f"Found S3 object: {namespace}/{ARTIFACT}/model.joblib" in log, log
    verified = kubectl("-n", namespace, "logs", pod_name, "-c", startup.CONTAINER_NAME)
    assert f"verified {MODEL_DIR}: {signed.digest}" in verified.stdout, verified.stdout
    # KServe's sklearnserver loaded what was verified and answers with it.
    answer = _predict(node_cluster, namespace, pod_name, tmp_path / "request.json")
    assert answer == {"predictions": [0, 1]}, answer
    served_at = time.monotonic() - started

    # Swapped in the store after it was verified (the verdict stays fresh for 24 h, so
    # admission lets the next pod in): KServe's initializer downloads the swapped file and
    # modelshield's check stops the pod before the server reads it.
    model_store.put(f"{namespace}/{ARTIFACT}/model.joblib", _swapped_model(tmp_path / "evil"))
    kubectl("-n", namespace, "delete", "pod", pod_name, "--wait=false")
    found = _wait(
        f"a failed {startup.CONTAINER_NAME} in the predictor pod made after the swap",
        lambda: _failed_predictor(node_cluster, namespace, other_than=pod_name),
        POD_TIMEOUT_SECONDS,
        lambda: _diagnose(node_cluster, namespace, kserve_on_node),
    )
    failed, later = found["terminated"], found["pod"]
    message = failed.get("message") or ""
    assert failed["exitCode"] == 1, failed
    assert "verification FAILED (ContentMismatch)" in message, failed
    assert "model.joblib: content differs from the signed manifest" in message, failed
    fetched = _init_status(later, INITIALIZER)
    assert (fetched.get("state", {}).get("terminated") or {}).get("exitCode") == 0, fetched
    server = later["status"]["containerStatuses"][0]
    assert not server["ready"], server
    assert "running" not in server["state"], server
    print(
        f"\nKServe images ready in {kserve_images.build_seconds:.0f} s; served a verified "
        f"prediction {served_at:.0f} s into the test, stopped the swap "
        f"{time.monotonic() - started:.0f} s in"
    )
