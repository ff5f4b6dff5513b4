"""Drift Events on the inference workload, written by the monitor process to a real API server.

A local control plane (etcd + kube-apiserver + controller manager from the binaries that
e2e/tools/build-tools.sh caches) stands in for the cluster; the monitor runs as a process
with a service-account directory and the KUBERNETES_SERVICE_* environment a pod would get,
and with a token issued by the API server for a ServiceAccount whose Role allows Events.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
from kubernetes import client

from e2e.clients import close_api_client, new_api_client
from e2e.cluster import LocalControlPlane
from e2e.toolcache import ControlPlaneBinaries
from modelshield.drift import datasets, notifying
from tests.support import driftprocesses as processes
from tests.support import driftsynthetic as synthetic

pytestmark = pytest.mark.e2e

NAMESPACE = "drift-e2e"
WINDOW = 500


@pytest.fixture(scope="module")
def cluster(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[LocalControlPlane, client.ApiClient]]:
    """A control plane with a namespace, a Deployment and two ServiceAccounts (one allowed Events)."""
    if request.config.getoption("--kubeconfig") or os.environ.get("MODELSHIELD_E2E_KUBECONFIG"):
        pytest.skip(
            "starts a control plane of its own (the cached binaries), not for a given cluster"
        )
    # Absent binaries raise MissingToolsError, which says to run e2e/tools/build-tools.sh.
    control_plane = LocalControlPlane(ControlPlaneBinaries.locate())
    control_plane.start()
    api = new_api_client(control_plane.kubeconfig_path)
    try:
        core, apps, rbac = (
            client.CoreV1Api(api),
            client.AppsV1Api(api),
            client.RbacAuthorizationV1Api(api),
        )
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        labels = {"app": "iris"}
        apps.create_namespaced_deployment(
            NAMESPACE,
            client.V1Deployment(
                metadata=client.V1ObjectMeta(name="iris"),
                spec=client.V1DeploymentSpec(
                    selector=client.V1LabelSelector(match_labels=labels),
                    template=client.V1PodTemplateSpec(
                        metadata=client.V1ObjectMeta(labels=labels),
                        spec=client.V1PodSpec(
                            containers=[client.V1Container(name="model", image="model:1")]
                        ),
                    ),
                ),
            ),
        )
        for name in ("drift-monitor", "no-events"):
            core.create_namespaced_service_account(
                NAMESPACE, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
            )
        rbac.create_namespaced_role(
            NAMESPACE,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="drift-events"),
                rules=[
                    client.V1PolicyRule(api_groups=[""], resources=["events"], verbs=["create"])
                ],
            ),
        )
        rbac.create_namespaced_role_binding(
            NAMESPACE,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="drift-events"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="drift-events"
                ),
                subjects=[
                    client.RbacV1Subject(
                        kind="ServiceAccount", name="drift-monitor", namespace=NAMESPACE
                    )
                ],
            ),
        )
        yield control_plane, api
    finally:
        close_api_client(api)
        control_plane.stop()
        control_plane.remove_work_dir()


def _account_dir(
    control_plane: LocalControlPlane, api: client.ApiClient, account: str, directory: pathlib.Path
) -> dict[str, str]:
    """A service-account directory like a pod's, and the environment that goes with it."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=["https://kubernetes.default.svc.cluster.local"], expiration_seconds=3600
        )
    )
    token = client.CoreV1Api(api).create_namespaced_service_account_token(
        account, NAMESPACE, request
    )
    directory.mkdir()
    assert token.status is not None
    (directory / "token").write_text(str(token.status.token))
    (directory / "namespace").write_text(NAMESPACE)
    shutil.copy(control_plane.certificates_dir / "ca.crt", directory / "ca.crt")
    server = urlparse(control_plane.api_server_url)
    return {
        "KUBERNETES_SERVICE_HOST": str(server.hostname),
        "KUBERNETES_SERVICE_PORT": str(server.port),
        notifying.SERVICE_ACCOUNT_DIR_ENV: str(directory),
        "MODELSHIELD_DRIFT_WORKLOAD": "apps/v1/Deployment/iris",
    }


def _profile_dir(directory: pathlib.Path) -> pathlib.Path:
    directory.mkdir()
    datasets.write_profile(synthetic.profile(), directory / "profile.json")
    return processes.write_config(directory, window=WINDOW)


def _send(monitor: processes.MonitorProcess, rng: np.random.Generator, **shift: Any) -> None:
    for _ in range(WINDOW // 100):
        status, _ = monitor.post(
            synthetic.body(synthetic.rows(100, rng, **shift)), synthetic.binary_headers("request")
        )
        assert status == 202


def _events(api: client.ApiClient, reason: str, timeout: float = 20.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = [
            event
            for event in client.CoreV1Api(api)
            .list_namespaced_event(NAMESPACE, field_selector="involvedObject.name=iris")
            .items
            if event.reason == reason
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_drift_raised_and_cleared_become_events_on_the_workload(
    cluster: tuple[LocalControlPlane, client.ApiClient], tmp_path: pathlib.Path
) -> None:
    control_plane, api = cluster
    environment = _account_dir(control_plane, api, "drift-monitor", tmp_path / "account")
    monitor = processes.start(
        _profile_dir(tmp_path / "monitor"), tmp_path / "monitor.log", environment
    )
    rng = np.random.default_rng(0)
    try:
        _send(monitor, rng)
        _send(monitor, rng, shift={"x3": 2.0})
        (detected,) = _events(api, "DriftDetected")
        _send(monitor, rng)
        (cleared,) = _events(api, "DriftCleared")
    finally:
        assert monitor.stop() == 0
    assert "kubernetes events: on Deployment/iris" in monitor.log.read_text()
    assert detected.type == "Warning"
    assert (detected.involved_object.kind, detected.involved_object.api_version) == (
        "Deployment",
        "apps/v1",
    )
    assert "request feature 'x3': PSI" in detected.message
    assert "(window 2)" in detected.message
    assert detected.source.component == notifying.COMPONENT
    assert cleared.type == "Normal"


def test_without_permission_the_alarm_still_reaches_log_and_metrics(
    cluster: tuple[LocalControlPlane, client.ApiClient], tmp_path: pathlib.Path
) -> None:
    control_plane, api = cluster
    environment = _account_dir(control_plane, api, "no-events", tmp_path / "account")
    environment["MODELSHIELD_DRIFT_WORKLOAD"] = "apps/v1/Deployment/other"
    monitor = processes.start(
        _profile_dir(tmp_path / "monitor"), tmp_path / "monitor.log", environment
    )
    rng = np.random.default_rng(1)
    try:
        _send(monitor, rng, shift={"x1": 2.0})
        monitor.wait_for('modelshield_drift_detected{feature="x1"}', 1)
        deadline = time.monotonic() + 10
        while "could not write the drift Event: HTTP 403" not in monitor.log.read_text():
            assert time.monotonic() < deadline, monitor.log.read_text()
            time.sleep(0.1)
        assert monitor.get("/readyz")[0] == 200
    finally:
        assert monitor.stop() == 0
    assert "drift detected: stream=request feature=x1" in monitor.log.read_text()
