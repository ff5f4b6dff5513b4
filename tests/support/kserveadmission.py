"""KServe InferenceServices, their artifacts and the policy the webhook tests admit them by."""

from __future__ import annotations

from typing import Any

from tests.support import admissionscenarios as scenarios
from tests.support import kservecorpus as corpus

SERVICES = scenarios.KindInfo(
    "InferenceService", "serving.kserve.io", "v1beta1", "inferenceservices"
)


def _policy() -> dict[str, Any]:
    body = scenarios.policy(corpus.NAMESPACE)
    body["spec"]["selector"] = {"matchLabels": dict(corpus.LABELS)}
    body["spec"]["models"]["requireScan"] = False
    body["spec"].pop("runtime")
    return body


def _artifacts() -> list[dict[str, Any]]:
    found = []
    for name, uri in corpus.ARTIFACTS.items():
        artifact = scenarios.model_artifact(corpus.NAMESPACE, name)
        artifact["spec"]["uri"] = uri
        found.append(artifact)
    return found
