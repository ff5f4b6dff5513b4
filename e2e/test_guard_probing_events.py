"""A sweeping client raises a probing Event on the guarded workload in the real API server.

The guard posts with a ServiceAccount that may only create Events in the namespace (the
Role the operator gives a guard whose policy has api.probing); the workload is a real
Deployment object. The model server is the real scikit-learn one of tests/guard.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import time

import aiohttp
import numpy as np
from kubernetes import client
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

from e2e.clients import Cluster
from e2e.guardtokens import request_token
from modelshield.controllers.builders import guards
from modelshield.guard import config, outliermodel, server
from tests.support import modelserver

DATA = load_breast_cancer().data
KEY = "sweeper-key-0123456789"


def _deployment(apps: client.AppsV1Api, namespace: str) -> client.V1Deployment:
    labels = {"app": "fraud"}
    return apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="fraud"),
            spec=client.V1DeploymentSpec(
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[client.V1Container(name="server", image="model:1")]
                    ),
                ),
            ),
        ),
    )


async def test_a_sweep_raises_a_probing_event_on_the_workload(
    cluster: Cluster, namespace: str, tmp_path: pathlib.Path
) -> None:
    core = client.CoreV1Api(cluster.api_client)
    rbac = client.RbacAuthorizationV1Api(cluster.api_client)
    apps = client.AppsV1Api(cluster.api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="guard"))
    )
    role = guards.build_events_role(name="guard", namespace=namespace)
    rbac.create_namespaced_role(namespace, role)  # type: ignore[arg-type]
    binding = guards.build_events_role_binding(name="guard", namespace=namespace)
    rbac.create_namespaced_role_binding(namespace, binding)  # type: ignore[arg-type]
    deployment = _deployment(apps, namespace)
    assert deployment.metadata is not None
    uid = deployment.metadata.uid
    url, ca_path = cluster.api_server(tmp_path / "api-server")
    ca_file = str(ca_path)
    token_file = tmp_path / "guard-token"
    token_file.write_text(request_token(core, namespace, "guard", None))
    keys = tmp_path / "keys" / "fraud-keys"
    keys.mkdir(parents=True)
    (keys / "sweeper").write_text(hashlib.sha256(KEY.encode()).hexdigest())
    names = [f"f{i}" for i in range(DATA.shape[1])]
    outliers = outliermodel.to_document(
        outliermodel.build({n: DATA[:400, i].tolist() for i, n in enumerate(names)}, names)
    )
    api = {
        "authentication": {"apiKeys": {"secretRef": {"name": "fraud-keys"}}},
        "probing": {"action": "Alert", "detectors": ["Sweep"]},
    }
    model = modelserver.ModelServer(modelserver.train())
    async with modelserver.serving(model.app()) as upstream:
        settings = config.GuardConfig.model_validate(
            {
                "upstream": upstream,
                "apiKeysDir": str(tmp_path / "keys"),
                "apiServer": {"url": url, "caFile": ca_file, "tokenFile": str(token_file)},
                "outlierModel": outliers,
                "workload": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "namespace": namespace,
                    "name": "fraud",
                    "uid": uid,
                },
                "policies": [
                    {
                        "kind": "ModelSecurityPolicy",
                        "namespace": namespace,
                        "name": "probing",
                        "enforcement": "Enforce",
                        "api": api,
                    }
                ],
            }
        )
        pipeline = server.pipeline_from_config(settings)
        async with (
            modelserver.serving(server.build_app(pipeline)) as guard,
            aiohttp.ClientSession() as session,
        ):
            seed = DATA[450]
            for value in np.linspace(DATA[:400, 2].min(), DATA[:400, 2].max(), 60):
                row = [float(v) for v in seed]
                row[2] = float(value)
                async with session.post(
                    f"{guard}/v1/models/fraud:predict",
                    data=json.dumps({"instances": [row]}),
                    headers={"Content-Type": "application/json", "X-Api-Key": KEY},
                ) as response:
                    assert response.status == 200  # Alert only: the client is served
            assert pipeline.events is not None
            await pipeline.events.drain()
    deadline = time.monotonic() + 30
    found: list[client.CoreV1Event] = []
    while time.monotonic() < deadline and not found:
        found = [
            e
            for e in core.list_namespaced_event(namespace).items
            if e.reason == "ModelProbingDetected"
        ]
        time.sleep(0.5)
    assert len(found) == 1, [e.message for e in found]
    (event,) = found
    assert event.type == "Warning"
    assert event.involved_object.kind == "Deployment"
    assert event.involved_object.name == "fraud"
    assert event.involved_object.uid == uid
    message = event.message or ""
    assert "client apikey:sweeper" in message
    assert "Sweep" in message
    sent = pipeline.metrics.registry.get_sample_value(
        "modelshield_guard_probing_events_total", {"outcome": "sent"}
    )
    assert sent == 1
