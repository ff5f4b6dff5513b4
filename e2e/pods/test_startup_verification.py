"""The startup re-verification (models.verifyAtStartup, issue 21 part 3) in real pods.

The operator pod of the installed chart verifies a signed scikit-learn model in the model
store (moto's S3 on the node's address); a model server's own init container downloads it
from there into an emptyDir, the mutating webhook appends modelshield's init container
after it and makes the server's mount read-only. A pod of a verified model starts; a pod
made after the model was swapped in the store (the artifact's verdict still fresh, so
admission lets it in) stops in the init container, which names the file that changed.
"""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from e2e.pods.harness import NodeCluster, Release
from e2e.pods.modelstore import ModelStore
from e2e.pods.verifiedmodels import (
    ARTIFACT,
    SIGNER,
    VERIFIED_WITHIN_SECONDS,
    _artifact,
    _artifact_ready,
    _describe,
    _failed_check,
    _init_status,
    _operator_log,
    _policy,
    _published_keys,
    _swapped_model,
    _wait,
)
from e2e.pods.workloads import HARDENED, POD_TIMEOUT_SECONDS, apply, get_json
from modelshield.engine import startup
from modelshield.modelartifacts import signing
from tests.support import modelfiles as models
from tests.support import signingkeys as keys

MODEL_PATH = "/models"
SERVER_PORT = 8080
# Fetches with modelshield's own fetcher (the image's), as a storage initializer would.
DOWNLOAD_SCRIPT = """
import pathlib, sys
from modelshield.modelartifacts import fetching
fetched = fetching.fetch(sys.argv[1], pathlib.Path(sys.argv[2]), fetching.Settings.from_environment())
print(f"downloaded {fetched.bytes} bytes from {sys.argv[1]}")
"""


@pytest.fixture
def model_namespace(node_cluster: NodeCluster, model_store: ModelStore) -> Iterator[str]:
    name = "e2e-startup-" + uuid.uuid4().hex[:6]
    node_cluster.kubectl("create", "namespace", name)
    apply(node_cluster.kubectl, name, model_store.credentials_secret())
    yield name
    node_cluster.kubectl("delete", "namespace", name, "--wait=false")


def _resources() -> dict[str, Any]:
    return {"limits": {"cpu": "500m", "memory": "256Mi"}}


def _model_server(name: str, image: str, uri: str, store: ModelStore) -> dict[str, Any]:
    """A Deployment whose pod downloads the model, then serves its files over HTTP; the
    server's model mount is writable as written (the webhook must make it read-only)."""
    mount = {"name": "model", "mountPath": MODEL_PATH}
    download = {
        "name": "download",
        "image": image,
        "command": ["python", "-c", DOWNLOAD_SCRIPT, uri, MODEL_PATH],
        "env": store.environment(),
        "securityContext": HARDENED,
        "resources": _resources(),
        "volumeMounts": [mount],
    }
    server = {
        "name": "server",
        "image": image,
        "command": ["python", "-m", "http.server", str(SERVER_PORT), "--directory", MODEL_PATH],
        "securityContext": HARDENED,
        "resources": _resources(),
        "volumeMounts": [dict(mount)],
        "ports": [{"containerPort": SERVER_PORT, "name": "http"}],
        # Ready only once it serves the model file it read from the volume.
        "readinessProbe": {
            "httpGet": {"path": "/model.joblib", "port": SERVER_PORT},
            "periodSeconds": 1,
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name, "serves": "fraud"},
                    "annotations": {"modelshield.dev/model-artifact": ARTIFACT},
                },
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "initContainers": [download],
                    "containers": [server],
                    "volumes": [{"name": "model", "emptyDir": {}}],
                },
            },
        },
    }


def _admitted(
    node_cluster: NodeCluster, namespace: str, workload: dict[str, Any], explain: bool = False
) -> bool | str:
    tried = node_cluster.kubectl(
        "-n", namespace, "create", "--dry-run=server", "-f", "-",
        input_text=yaml.safe_dump(workload), check=False,
    )  # fmt: skip
    return tried.stderr if explain else tried.returncode == 0


def _pod_of(node_cluster: NodeCluster, namespace: str, app: str) -> dict[str, Any] | None:
    pods = get_json(node_cluster.kubectl, "-n", namespace, "pods", "-l", f"app={app}")["items"]
    return pods[0] if pods else None


def _ready(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    conditions = (pod or {}).get("status", {}).get("conditions") or []
    return pod if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None


def test_a_verified_model_starts_and_a_swapped_one_stops_in_the_init_container(
    node_cluster: NodeCluster,
    installed_chart: Release,
    model_store: ModelStore,
    model_namespace: str,
    modelshield_image: str,
    tmp_path: pathlib.Path,
) -> None:
    kubectl = node_cluster.kubectl
    namespace = model_namespace
    pair = keys.key_pair(tmp_path / "keys", SIGNER)
    model = models.sklearn_model(tmp_path / "model")
    signed = signing.sign_with_key(model, pair.private_path)
    uri = model_store.put_model(f"{namespace}/{ARTIFACT}", model)
    apply(kubectl, namespace, _policy(pair.public_pem), _artifact(uri))

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

    # The verified model: the download, then modelshield's check, then the server. The
    # webhook judges from its own watch of the artifact, which may lag the status read here.
    server = _model_server("fraud", modelshield_image, uri, model_store)
    _wait(
        "the webhook admitting the model server",
        lambda: _admitted(node_cluster, namespace, server),
        VERIFIED_WITHIN_SECONDS,
        lambda: _admitted(node_cluster, namespace, server, explain=True),
    )
    apply(kubectl, namespace, server)
    pod = _wait(
        "a Ready model server",
        lambda: _ready(_pod_of(node_cluster, namespace, "fraud")),
        POD_TIMEOUT_SECONDS,
        lambda: _describe(node_cluster, namespace),
    )
    spec = pod["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["download", startup.CONTAINER_NAME]
    check = spec["initContainers"][-1]
    assert check["command"][:4] == ["modelshield", "model", "verify", MODEL_PATH]
    assert check["command"][check["command"].index("--digest") + 1] == signed.digest
    model_mounts = [m for m in check["volumeMounts"] if m["name"] == "model"]
    assert model_mounts == [{"name": "model", "mountPath": MODEL_PATH, "readOnly": True}]
    served = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "model")
    assert served.get("readOnly") is True, served
    for name in ("download", startup.CONTAINER_NAME):
        terminated = _init_status(pod, name).get("state", {}).get("terminated") or {}
        assert terminated.get("exitCode") == 0, (name, _init_status(pod, name))
    pod_name = pod["metadata"]["name"]
    verified = kubectl("-n", namespace, "logs", pod_name, "-c", startup.CONTAINER_NAME)
    # The signer is named after the key file the check read: the artifact's, the signer's.
    assert f"verified {MODEL_PATH}: {signed.digest}, signed by {ARTIFACT}.{SIGNER}" in (
        verified.stdout
    )
    # What the server reads is what was verified, and it cannot change it.
    written = kubectl(
        "-n", namespace, "exec", pod_name, "-c", "server", "--",
        "python", "-c", f"open('{MODEL_PATH}/model.joblib', 'ab').write(b'x')",
        check=False,
    )  # fmt: skip
    assert written.returncode != 0
    assert "Read-only file system" in written.stderr, written.stderr

    # The model is swapped in the store after it was verified. Its verdict is still fresh
    # (re-checked every 24 h), so admission lets a new pod in: the init container stops it.
    model_store.put(f"{namespace}/{ARTIFACT}/model.joblib", _swapped_model(tmp_path / "evil"))
    apply(kubectl, namespace, _model_server("fraud-later", modelshield_image, uri, model_store))
    failed = _wait(
        f"a failed {startup.CONTAINER_NAME} in the pod made after the swap",
        lambda: _failed_check(_pod_of(node_cluster, namespace, "fraud-later")),
        POD_TIMEOUT_SECONDS,
        lambda: _describe(node_cluster, namespace),
    )
    message = failed.get("message") or ""
    assert failed["exitCode"] == 1, failed
    assert "verification FAILED (ContentMismatch)" in message, failed
    assert "model.joblib: content differs from the signed manifest" in message, failed
    later = _pod_of(node_cluster, namespace, "fraud-later")
    assert later is not None
    download = _init_status(later, "download")
    assert (download.get("state", {}).get("terminated") or {}).get("exitCode") == 0, download
    server = later["status"]["containerStatuses"][0]
    assert not server["ready"], server
    assert "running" not in server["state"], server
    # Admission did not stop it: the artifact is still Ready with the old digest.
    still = _artifact_ready(node_cluster, namespace)
    assert still is not None
    assert still["verifiedDigest"] == signed.digest
