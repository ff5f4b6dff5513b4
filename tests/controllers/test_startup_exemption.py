"""Status and audit judge modelshield's own startup init container as admission does.

The validating webhook exempts the init container of ``models.verifyAtStartup`` from image
requirements when it is exactly what the mutating webhook injects (the administrator's
``--startup-image``). The operator watches Deployments, StatefulSets and InferenceServices,
whose templates the mutating webhook leaves alone, so it meets that container only in a
template that carries it already (a pod spec copied into a Deployment, say): admission
admits such a template and its pods, and the policy status and PolicyReport must not
report them as violating. Any other container of that name is judged like any other.

The image verifier is the scripted stand-in of ``test_verifications`` (its name says so).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
from typing import Any

import pytest
from kubernetes import client

from modelshield.controllers import auditing, caches, imageverdicts, planning, reconciling, writing
from modelshield.controllers.builders import driftmonitors
from modelshield.engine import facts, modelchecks, startup, workloads
from tests.support.scriptedverifications import (
    IMAGE,
    INLINE_A,
    POLICY_KEY,
    ScriptedVerifierForTests,
)

NOW = datetime.datetime(2026, 11, 26, 4, 0, tzinfo=datetime.UTC)
STARTUP_IMAGE = "ghcr.io/example/modelshield:1.0"
MODEL = "fraud-model"
DIGEST = "sha256:" + "b" * 64
KEY = ("Deployment", "ml", "fraud")
INIT_IMAGE_PATH = "spec.template.spec.initContainers[0].image"


def _policy(registries: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "signed", "namespace": "ml", "uid": "p", "generation": 1},
        "spec": {
            "enforcement": "Audit",
            "selector": {"matchLabels": {"app": "fraud"}},
            "images": {"allowedRegistries": registries, "signers": [INLINE_A]},
            "models": {"verifyAtStartup": True},
        },
    }


def _pod_spec() -> dict[str, Any]:
    return {
        "containers": [
            {
                "name": "server",
                "image": IMAGE,
                "volumeMounts": [{"name": "model", "mountPath": "/models", "readOnly": True}],
            }
        ],
        "volumes": [{"name": "model", "emptyDir": {}}, startup.keys_volume()],
    }


def _deployment(init: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Deployment whose template carries the startup container built for its model."""
    pod = _pod_spec()
    built = startup.for_pod(
        pod, image=STARTUP_IMAGE, digest=DIGEST, artifact=MODEL, signer="release"
    )
    assert built is not None
    pod["initContainers"] = [init if init is not None else built]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "fraud", "namespace": "ml", "uid": "u-fraud", "generation": 1},
        "spec": {
            "template": {
                "metadata": {
                    "labels": {"app": "fraud"},
                    "annotations": {workloads.MODEL_ANNOTATION: MODEL},
                },
                "spec": pod,
            }
        },
    }


def _artifact() -> facts.ArtifactFacts:
    return facts.ArtifactFacts(
        namespace="ml",
        name=MODEL,
        uri="s3://models/fraud/",
        expected_digest=None,
        current=True,
        verified=True,
        verified_digest=DIGEST,
        signer="release",
        scanned=True,
        findings=(),
        last_checked=NOW,
    )


def _controller(
    verifier: ScriptedVerifierForTests,
    deployment: dict[str, Any],
    registries: list[str],
    startup_image: str | None,
) -> reconciling.Controller:
    kube = writing.Kube(client.ApiClient(client.Configuration()), max_workers=1)
    check = modelchecks.StartupCheck(image=startup_image) if startup_image else None
    controller = reconciling.Controller(
        caches.World(),
        kube,
        planning.Settings(monitor=driftmonitors.MonitorSettings(image="i")),
        verifications=imageverdicts.Verifications(verifier),
        startup=check,
        status_delay=0.01,
    )
    controller.world.put_policy(_policy(registries))
    controller.world.put_workload(deployment)
    controller.world.artifacts[("ml", MODEL)] = _artifact()
    return controller


async def _audit(controller: reconciling.Controller) -> list[tuple[str, str]]:
    found = await auditing.Auditor(controller).evaluate(NOW)
    (audited,) = found["ml"]
    decision = audited.decision
    return [(v.code.value, v.path) for v in (*decision.violations, *decision.warnings)]


async def _status(controller: reconciling.Controller) -> list[str]:
    await controller.reconcile(KEY)
    verifications = controller.verifications
    verifications.start()
    try:
        for _ in range(500):
            if not verifications.in_progress:
                break
            await asyncio.sleep(0.01)
    finally:
        await verifications.stop()
    observed = controller.observe(POLICY_KEY, NOW)
    assert (observed.governed, list(observed.pending)) == (1, [])
    return list(observed.findings)


@pytest.mark.parametrize(
    ("startup_image", "expected"),
    [
        (STARTUP_IMAGE, []),
        # Without knowing the image (the operator before --startup-image): a false positive.
        (None, [("ImageRegistryNotAllowed", INIT_IMAGE_PATH)]),
        # Another image than the configured one is not the container modelshield injects.
        ("ghcr.io/example/modelshield:2.0", [("ImageRegistryNotAllowed", INIT_IMAGE_PATH)]),
    ],
)
async def test_audit_exempts_exactly_the_injected_container_from_image_requirements(
    startup_image: str | None, expected: list[tuple[str, str]]
) -> None:
    verifier = ScriptedVerifierForTests()
    controller = _controller(verifier, _deployment(), ["registry.example/ml/"], startup_image)
    assert await _audit(controller) == expected
    assert [call["reference"] for call in verifier.calls] == [IMAGE]


async def test_audit_judges_a_container_that_only_borrows_the_name() -> None:
    built = startup.for_pod(
        _pod_spec(), image=STARTUP_IMAGE, digest=DIGEST, artifact=MODEL, signer="release"
    )
    assert built is not None
    shell = copy.deepcopy(built)
    shell["command"] = ["sh", "-c", "sleep infinity"]
    verifier = ScriptedVerifierForTests()
    controller = _controller(verifier, _deployment(shell), ["registry.example/ml/"], STARTUP_IMAGE)
    assert await _audit(controller) == [("ImageRegistryNotAllowed", INIT_IMAGE_PATH)]


async def test_the_startup_image_is_not_verified_for_the_audit_or_the_status() -> None:
    # Its registry allowed: before the fix the verifier was asked about it, by both.
    registries = ["registry.example/ml/", "ghcr.io/example/"]
    verifier = ScriptedVerifierForTests()
    controller = _controller(verifier, _deployment(), registries, STARTUP_IMAGE)
    assert await _audit(controller) == []
    assert await _status(controller) == []
    assert {call["reference"] for call in verifier.calls} == {IMAGE}


@pytest.mark.parametrize(("startup_image", "violating"), [(STARTUP_IMAGE, False), (None, True)])
async def test_policy_status_agrees_with_admission(
    startup_image: str | None, violating: bool
) -> None:
    verifier = ScriptedVerifierForTests()
    controller = _controller(verifier, _deployment(), ["registry.example/ml/"], startup_image)
    findings = await _status(controller)
    assert bool(findings) is violating
    if violating:
        assert "ImageRegistryNotAllowed" in findings[0]


def test_the_operator_defaults_to_the_webhooks_startup_image_and_passes_it_on() -> None:
    from modelshield.cli import main, operator
    from modelshield_webhooks import contexts

    parser = main.build_parser("operator")
    api = client.ApiClient(client.Configuration())
    _, controller, kube = operator.build(parser.parse_args(["operator"]), api)
    kube.close()
    assert controller.startup == modelchecks.StartupCheck(image=startup.DEFAULT_IMAGE)
    assert contexts.AdmissionContext.startup_image == startup.DEFAULT_IMAGE
    named = parser.parse_args(["operator", f"--startup-image={STARTUP_IMAGE}"])
    _, controller, kube = operator.build(named, api)
    kube.close()
    assert controller.startup == modelchecks.StartupCheck(image=STARTUP_IMAGE)
