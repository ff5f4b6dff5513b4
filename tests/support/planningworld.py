"""The world the operator's planning sees in the tests: settings, deployments, policies."""

from __future__ import annotations

from typing import Any

from modelshield.controllers import caches, planning
from modelshield.controllers.builders import driftmonitors

SETTINGS = planning.Settings(monitor=driftmonitors.MonitorSettings(image="modelshield:test"))


def _policy(
    name: str, spec: dict[str, Any], namespace: str = "ml", kind: str = "ModelSecurityPolicy"
) -> dict[str, Any]:
    metadata = {"name": name, "uid": f"uid-{name}", "generation": 1}
    if kind == "ModelSecurityPolicy":
        metadata["namespace"] = namespace
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    }


def _deployment(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "ml", "uid": f"uid-{name}"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "m", "image": "i"}]},
            },
        },
    }


def _world(*bodies: dict[str, Any]) -> caches.World:
    world = caches.World()
    world.put_namespace({"metadata": {"name": "ml", "labels": {"tier": "prod"}}})
    for body in bodies:
        if body["kind"].endswith("ModelSecurityPolicy"):
            world.put_policy(body)
        else:
            world.put_workload(body)
    return world
