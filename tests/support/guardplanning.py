"""A guarded deployment as the guard planning tests see it: the model, its selector, its guard."""

from __future__ import annotations

from typing import Any

from modelshield.controllers import planning
from modelshield.controllers.builders import driftmonitors
from tests.support.planningworld import _deployment

SETTINGS = planning.Settings(monitor=driftmonitors.MonitorSettings(image="modelshield:test"))

SELECTOR = {"matchLabels": {"app": "fraud"}}

API = {
    "authentication": {"apiKeys": {"secretRef": {"name": "fraud-keys"}}},
    "rateLimits": {"perClient": {"requestsPerSecond": 10}},
}

GUARD = "ms-guard-deploy-fraud"


def _served(port: int | None = 8080) -> dict[str, Any]:
    deployment = _deployment("fraud", {"app": "fraud"})
    if port is not None:
        deployment["spec"]["template"]["spec"]["containers"][0]["ports"] = [
            {"name": "http", "containerPort": port}
        ]
    return deployment
