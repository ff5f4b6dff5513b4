"""Where every model version runs: the real operator keeps status.servedBy current on a real
API server while workloads are created, re-pointed, scaled to zero, deleted, and while the
operator is down; ``modelshield lineage --model`` answers from it without listing workloads.

The operator runs as a process under exactly its RBAC (``start_operator``). The models are
never fetched here (their checks fail closed, which the index does not depend on).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from e2e.clients import Cluster, Kubectl
from e2e.operators import OperatorProcess, apply, get_json, inference_service, wait_for

GROUP, VERSION = "modelshield.dev", "v1alpha1"


def _artifact(name: str, uri: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelArtifact",
        "metadata": {"name": name},
        "spec": {"uri": uri},
    }


def _deployment(
    name: str, model: str, *, env_uri: str | None = None, replicas: int = 1
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "server", "image": "registry.example.com/server:1"}
    if env_uri is not None:
        container["env"] = [{"name": "STORAGE_URI", "value": env_uri}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {"modelshield.dev/model-artifact": model},
                },
                "spec": {"containers": [container]},
            },
        },
    }


def _served_by(kubectl: Kubectl, namespace: str, name: str) -> list[tuple[Any, ...]] | None:
    status = get_json(kubectl, namespace, "modelartifact", name).get("status") or {}
    index = status.get("servedBy")
    if index is None:
        return None
    listed = [(w["kind"], w["name"], w.get("replicas")) for w in index["workloads"]]
    assert index["total"] == len(listed)
    return sorted(listed)


def _conditions(kubectl: Kubectl, namespace: str, name: str) -> dict[str, str]:
    status = get_json(kubectl, namespace, "modelartifact", name).get("status") or {}
    return {c["type"]: c["status"] for c in status.get("conditions") or []}


def _wait_served(
    kubectl: Kubectl, namespace: str, name: str, expected: list[tuple[Any, ...]]
) -> None:
    wait_for(
        f"{name}.status.servedBy == {expected}",
        lambda: _served_by(kubectl, namespace, name) == sorted(expected),
    )


def test_served_by_follows_workloads_and_survives_a_restart(
    cluster: Cluster,
    kubectl: Kubectl,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    apply(
        kubectl,
        namespace,
        _artifact("bad", "s3://models/bad/"),
        _artifact("innocent", "s3://models/innocent/"),
        _artifact("iris", "s3://models/iris/"),
        # The annotation names the innocent model, STORAGE_URI downloads the bad one.
        _deployment("sneaky", "innocent", env_uri="s3://models/bad/"),
        _deployment("fraud", "bad", replicas=2),
        inference_service("iris", {}),
    )
    operator = start_operator()
    _wait_served(
        kubectl, namespace, "bad", [("Deployment", "fraud", 2), ("Deployment", "sneaky", 1)]
    )
    _wait_served(kubectl, namespace, "innocent", [("Deployment", "sneaky", 1)])
    _wait_served(kubectl, namespace, "iris", [("InferenceService", "iris", None)])
    shown = kubectl("get", "modelartifact", "bad", "-n", namespace).stdout
    assert "SERVING" in shown.splitlines()[0]

    # Scaled to zero: still deployed, shown as such.
    kubectl("-n", namespace, "scale", "deployment/fraud", "--replicas=0")
    _wait_served(
        kubectl, namespace, "bad", [("Deployment", "fraud", 0), ("Deployment", "sneaky", 1)]
    )
    # An UPDATE that stops downloading the bad model takes the entry off it.
    apply(kubectl, namespace, _deployment("sneaky", "innocent"))
    _wait_served(kubectl, namespace, "bad", [("Deployment", "fraud", 0)])
    kubectl("-n", namespace, "delete", "deployment", "fraud", "--wait=true")
    _wait_served(kubectl, namespace, "bad", [])

    # The model's own check (it fails: nothing serves s3:// here) leaves servedBy alone, and
    # once converged nothing is rewritten.
    wait_for(
        "bad's first check",
        lambda: _conditions(kubectl, namespace, "bad").get("Verified"),
        timeout=180,
    )
    _wait_served(kubectl, namespace, "bad", [])
    before = get_json(kubectl, namespace, "modelartifact", "bad")["metadata"]["resourceVersion"]
    time.sleep(3)
    after = get_json(kubectl, namespace, "modelartifact", "bad")["metadata"]["resourceVersion"]
    assert before == after

    # While the operator is down, one workload comes and another goes.
    operator.stop()
    apply(kubectl, namespace, _deployment("late", "bad"))
    kubectl("-n", namespace, "delete", "deployment", "sneaky", "--wait=true")
    start_operator()
    _wait_served(kubectl, namespace, "bad", [("Deployment", "late", 1)])
    _wait_served(kubectl, namespace, "innocent", [])

    # lineage reads the index: the one workload it names, not a listing of every workload.
    command = [sys.executable, "-m", "modelshield.cli.main", "lineage"]
    command += ["--kubeconfig", str(cluster.kubeconfig_path), "-n", namespace, "--model", "bad"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "no status.servedBy" not in done.stderr
    assert [line for line in done.stdout.splitlines() if not line.startswith(" ")] == [
        f"Deployment {namespace}/late"
    ]


def test_daemon_sets_and_cron_jobs_are_indexed_under_the_operators_rbac(
    kubectl: Kubectl, namespace: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    daemon = {**_deployment("node-agent", "fraud"), "kind": "DaemonSet"}
    del daemon["spec"]["replicas"]
    pod_template = _deployment("nightly", "fraud")["spec"]["template"]
    pod_template["spec"]["restartPolicy"] = "Never"
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": pod_template}}},
    }
    apply(kubectl, namespace, _artifact("fraud", "s3://models/fraud/"), daemon, cron)
    start_operator()
    _wait_served(
        kubectl,
        namespace,
        "fraud",
        [("CronJob", "nightly", None), ("DaemonSet", "node-agent", None)],
    )
    kubectl("-n", namespace, "delete", "daemonset", "node-agent", "--wait=true")
    _wait_served(kubectl, namespace, "fraud", [("CronJob", "nightly", None)])
