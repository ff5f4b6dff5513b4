"""A verified model on the node: its policy, ModelArtifact and published keys, and the
startup check's init container read back.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import pytest

from e2e.pods.harness import NodeCluster, Release
from e2e.pods.workloads import get_json
from modelshield.engine import startup
from tests.support import modelfiles as models

ARTIFACT = "fraud-v1"

SIGNER = "release"

VERIFIED_WITHIN_SECONDS = 180.0


def _policy(public_pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "verify-at-start"},
        "spec": {
            "selector": {"matchLabels": {"serves": "fraud"}},
            "models": {
                "signers": [{"name": SIGNER, "publicKey": public_pem.decode()}],
                "verifyAtStartup": True,
            },
        },
    }


def _artifact(uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelArtifact",
        "metadata": {"name": ARTIFACT},
        "spec": {"uri": uri, "recheckInterval": "24h"},
    }


def _artifact_ready(node_cluster: NodeCluster, namespace: str) -> dict[str, Any] | None:
    status = get_json(node_cluster.kubectl, "-n", namespace, "modelartifact", ARTIFACT).get(
        "status"
    )
    conditions = (status or {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return status if ready else None


def _wait(what: str, probe: Any, timeout: float, diagnose: Any) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout:.0f} s:\n{diagnose()}", pytrace=False)
        time.sleep(1)


def _operator_log(node_cluster: NodeCluster, release: Release) -> str:
    logs = node_cluster.kubectl(
        "-n", release.namespace, "logs", f"deployment/{release.name}-operator", check=False
    )
    return logs.stdout[-4000:] + logs.stderr


def _published_keys(node_cluster: NodeCluster, namespace: str) -> dict[str, str]:
    found = node_cluster.kubectl(
        "-n", namespace, "get", "configmap", startup.KEYS_CONFIG_MAP, "-o", "json", check=False
    )
    if found.returncode != 0:
        return {}
    return dict(json.loads(found.stdout).get("data") or {})


def _init_status(pod: dict[str, Any], name: str) -> dict[str, Any]:
    statuses = pod.get("status", {}).get("initContainerStatuses") or []
    return next((s for s in statuses if s["name"] == name), {})


def _failed_check(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    """The terminated state of a failed run of modelshield's init container, if any."""
    if pod is None:
        return None
    status = _init_status(pod, startup.CONTAINER_NAME)
    for state in (status.get("state", {}), status.get("lastState", {})):
        terminated = state.get("terminated")
        if terminated and terminated.get("exitCode") != 0:
            return dict(terminated)
    return None


def _describe(node_cluster: NodeCluster, namespace: str) -> str:
    return node_cluster.kubectl("-n", namespace, "describe", "pods", check=False).stdout[-6000:]


def _swapped_model(directory: pathlib.Path) -> bytes:
    """Another fitted model, saved the same way: what an attacker with write access to the
    bucket would put in place of the verified one."""
    swapped = models.sklearn_model(directory)
    import joblib  # type: ignore[import-untyped]
    import numpy
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    features = numpy.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.9, 0.2]])
    joblib.dump(LogisticRegression().fit(features, [1, 0, 1, 0]), swapped / "model.joblib")
    return (swapped / "model.joblib").read_bytes()
