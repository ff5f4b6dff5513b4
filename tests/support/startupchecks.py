"""Pods with the startup check injected, and the engine's decision on them at admission."""

from __future__ import annotations

from typing import Any

from modelshield.engine import (
    compiling,
    decisions,
    evaluating,
    facts,
    modelchecks,
    startup,
    workloads,
)
from tests.support import workloadbuilders as builders

IMAGE = "ghcr.io/example/modelshield:1.0"

ADMISSION = modelchecks.StartupCheck(image=IMAGE)

DIGEST = "sha256:" + "b" * 64

MOUNT = {"name": "model", "mountPath": "/models", "readOnly": True}

SOURCE = facts.StaticFacts(
    images={builders.SIGNED_IMAGE: builders.verified_image()},
    artifacts={(builders.NAMESPACE, builders.MODEL): builders.artifact()},
)


def _policy(enforcement: str = "Enforce", *, signers: bool = True) -> compiling.PolicySet:
    return compiling.compile_policies(
        [
            builders.policy(
                enforcement,
                images={
                    "allowedRegistries": ["registry.example.com/ml/"],
                    "signers": builders.SIGNERS,
                },
                models={
                    "signers": builders.SIGNERS if signers else [],
                    "requireScan": True,
                    "verifyAtStartup": True,
                },
                runtime={},
            )
        ]
    )


def _pod_spec() -> dict[str, Any]:
    server = builders.hardened_container()
    server["volumeMounts"] = [dict(MOUNT)]
    return {
        "containers": [server],
        "volumes": [{"name": "model", "emptyDir": {}}, startup.keys_volume()],
    }


def _injected(pod_spec: dict[str, Any], digest: str = DIGEST) -> dict[str, Any]:
    built = startup.for_pod(
        pod_spec, image=IMAGE, digest=digest, artifact=builders.MODEL, signer="release"
    )
    assert built is not None
    return built


def _decide(
    obj: dict[str, Any],
    check: modelchecks.StartupCheck | None = ADMISSION,
    policy_set: compiling.PolicySet | None = None,
    source: facts.FactSource = SOURCE,
) -> decisions.Decision:
    workload = workloads.parse(obj)
    governing = evaluating.governing_policies(workload, policy_set or _policy(), {})
    assert governing
    return evaluating.decide(workload, governing, source, builders.NOW, startup=check)
