"""KServe predictors on the node: the runtime, the InferenceService, the storage
credentials, and the predictor pods read back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.kserve import KServe
from e2e.pods.harness import NodeCluster
from e2e.pods.modelstore import ModelStore
from e2e.pods.verifiedmodels import (
    ARTIFACT,
    _describe,
)
from e2e.pods.workloads import get_json

SERVICE = "fraud"

RUNTIME = "sklearn-v0-17"

ACCOUNT = "model-store-reader"

#: Where KServe's storage initializer writes and its server reads (constants.go).
MODEL_DIR = "/mnt/models"

#: The predictor pod pulls two images of ~400 MB from the node's registry the first time.
PREDICTOR_TIMEOUT_SECONDS = 300.0


@pytest.fixture
def kserve_namespace(node_cluster: NodeCluster) -> Iterator[str]:
    name = "e2e-kserve-" + uuid.uuid4().hex[:6]
    node_cluster.kubectl("create", "namespace", name)
    yield name
    # KServe's finalizer: the InferenceService goes while its manager still runs.
    node_cluster.kubectl("-n", name, "delete", "inferenceservices", "--all", check=False)
    node_cluster.kubectl("delete", "namespace", name, "--wait=false")


def _credentials(store: ModelStore) -> list[dict[str, Any]]:
    """The predictor's ServiceAccount with KServe's S3 Secret: KServe writes its keys and
    ``http://<s3-endpoint>`` into the storage initializer's environment."""
    secret = store.credentials_secret()
    secret["metadata"] = {
        "name": f"{ACCOUNT}-s3",
        "annotations": {
            "serving.kserve.io/s3-endpoint": store.server.endpoint.removeprefix("http://"),
            "serving.kserve.io/s3-usehttps": "0",
        },
    }
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": ACCOUNT},
        "secrets": [{"name": f"{ACCOUNT}-s3"}],
    }
    return [secret, account]


def _runtime(image: str) -> dict[str, Any]:
    """KServe's kserve-sklearnserver runtime (config/runtimes), namespaced, with the server
    built from the same release and smaller resources."""
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": RUNTIME},
        "spec": {
            "supportedModelFormats": [
                {"name": "sklearn", "version": "1", "autoSelect": True, "priority": 1}
            ],
            "protocolVersions": ["v1", "v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": image,
                    "args": [
                        "--model_name={{.Name}}",
                        f"--model_dir={MODEL_DIR}",
                        "--http_port=8080",
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "privileged": False,
                        "runAsNonRoot": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "256Mi"},
                        "limits": {"cpu": "1", "memory": "1Gi"},
                    },
                }
            ],
        },
    }


def _inference_service(uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": SERVICE,
            # The policy's selector: KServe copies the label onto the predictor's pods.
            "labels": {"serves": "fraud"},
            "annotations": {"modelshield.dev/model-artifact": ARTIFACT},
        },
        "spec": {
            "predictor": {
                "serviceAccountName": ACCOUNT,
                "minReplicas": 1,
                "maxReplicas": 1,
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "runtime": RUNTIME,
                    "storageUri": uri,
                },
            }
        },
    }


def _predictor_pods(node_cluster: NodeCluster, namespace: str) -> list[dict[str, Any]]:
    selector = f"serving.kserve.io/inferenceservice={SERVICE}"
    pods: list[dict[str, Any]] = get_json(
        node_cluster.kubectl, "-n", namespace, "pods", "-l", selector
    )["items"]
    return pods


def _diagnose(node_cluster: NodeCluster, namespace: str, kserve: KServe) -> str:
    return (
        f"{_describe(node_cluster, namespace)}\n--- kserve-manager ---\n{kserve.manager.tail(2000)}"
    )
