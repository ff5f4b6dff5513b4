"""Prompt image verification for policy status: pending until the verdict, then judged.

The verifier here is a scripted stand-in (its name says so): these tests are about the
queue, the deduplication, the deadline, the Secret resolution and what status makes of
it. The real verifier against a real registry and real cosign signatures is exercised by
e2e/test_operator_verifications.py.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
from collections.abc import Mapping
from typing import Any

import pytest
from kubernetes import client

from modelshield.controllers import (
    caches,
    imageverdicts,
    kubesecrets,
    planning,
    reconciling,
    verdicts,
    writing,
)
from modelshield.controllers.builders import driftmonitors
from modelshield.engine import decisions, evaluating, facts, workloads
from modelshield.supplychain.images import gathering, secretreading, signerkeys
from tests.support.scriptedverifications import (
    IMAGE,
    INLINE_A,
    KEY_A,
    KEY_B,
    POLICY_KEY,
    ScriptedVerifierForTests,
)

NOW = datetime.datetime(2026, 11, 26, 3, 0, tzinfo=datetime.UTC)


class InMemorySecretsForTests:
    """A SecretSource over a dict (values given in clear, stored base64 as the API does)."""

    def __init__(self, secrets: Mapping[tuple[str, str], Mapping[str, str]]) -> None:
        self.secrets = {
            key: {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
            for key, data in secrets.items()
        }
        self.reads: list[tuple[str, str]] = []

    async def read(self, namespace: str, name: str) -> secretreading.SecretData | None:
        self.reads.append((namespace, name))
        return self.secrets.get((namespace, name))


def _policy(signer: dict[str, Any], namespace: str = "ml", runtime: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "enforcement": "Audit",
        "selector": {"matchLabels": {"app": "fraud"}},
        "images": {"signers": [signer]},
    }
    if runtime:
        spec["runtime"] = {}
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "signed", "namespace": namespace, "uid": "p", "generation": 1},
        "spec": spec,
    }


def _deployment(name: str, namespace: str = "ml", pull_secret: str | None = None) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "containers": [
            {
                "name": "model",
                "image": IMAGE,
                "securityContext": {
                    "runAsNonRoot": True,
                    "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False,
                },
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
            }
        ]
    }
    if pull_secret:
        pod["imagePullSecrets"] = [{"name": pull_secret}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "uid": f"u-{name}", "generation": 1},
        "spec": {"template": {"metadata": {"labels": {"app": "fraud"}}, "spec": pod}},
    }


FROM_SECRET = {"name": "release", "secretRef": {"name": "cosign", "key": "cosign.pub"}}


def _controller(
    verifications: imageverdicts.Verifications, *bodies: dict[str, Any]
) -> reconciling.Controller:
    # An ApiClient that is never called: these policies own no objects.
    kube = writing.Kube(client.ApiClient(client.Configuration()), max_workers=1)
    settings = planning.Settings(monitor=driftmonitors.MonitorSettings(image="i"))
    controller = reconciling.Controller(
        caches.World(), kube, settings, verifications=verifications, status_delay=0.01
    )
    for body in bodies:
        if body["kind"] == "ModelSecurityPolicy":
            controller.world.put_policy(body)
        else:
            controller.world.put_workload(body)
    return controller


def _governing(
    controller: reconciling.Controller, key: caches.Key
) -> tuple[workloads.Workload, Any]:
    parsed = workloads.parse(controller.world.workloads[key])
    return parsed, evaluating.governing_policies(parsed, controller.world.policy_set(), {})


async def _settle(verifications: imageverdicts.Verifications) -> None:
    for _ in range(500):
        if not verifications.in_progress:
            return
        await asyncio.sleep(0.01)
    pytest.fail("verifications never finished")


# --- pure judging -----------------------------------------------------------------------


def test_a_missing_verdict_is_pending_only_while_one_is_coming() -> None:
    verifications = imageverdicts.Verifications(None)
    controller = _controller(verifications, _policy(INLINE_A), _deployment("d"))
    parsed, governing = _governing(controller, ("Deployment", "ml", "d"))
    decision = evaluating.decide(parsed, governing, caches.WorldFacts(controller.world), NOW)
    assert [v.code for v in decision.warnings] == [decisions.Code.IMAGE_NOT_VERIFIED]
    assert verdicts.judge(decision, parsed, {IMAGE}, verifying=True) is verdicts.Judgement.PENDING
    # No verifier: nothing will come, the missing verdict is a violation as before.
    assert (
        verdicts.judge(decision, parsed, {IMAGE}, verifying=False) is verdicts.Judgement.VIOLATING
    )


def test_another_violation_is_established_whatever_the_images_say() -> None:
    body = _deployment("d")
    del body["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    controller = _controller(
        imageverdicts.Verifications(None), _policy(INLINE_A, runtime=True), body
    )
    parsed, governing = _governing(controller, ("Deployment", "ml", "d"))
    decision = evaluating.decide(parsed, governing, caches.WorldFacts(controller.world), NOW)
    assert verdicts.judge(decision, parsed, {IMAGE}, verifying=True) is verdicts.Judgement.VIOLATING
    found = verdicts.established(decision, parsed, {IMAGE})
    assert decisions.Code.IMAGE_NOT_VERIFIED not in {v.code for v in found}
    assert verdicts.finding("Deployment/ml/d", found).startswith("Deployment/ml/d: Runtime")


# --- background verification --------------------------------------------------------------


async def test_new_workloads_are_verified_once_and_status_turns_from_pending_to_compliant() -> None:
    verifier = ScriptedVerifierForTests(delay=0.05)
    verifications = imageverdicts.Verifications(verifier)
    controller = _controller(
        verifications, _policy(INLINE_A), _deployment("one"), _deployment("two")
    )
    for name in ("one", "two"):
        await controller.reconcile(("Deployment", "ml", name))
    observed = controller.observe(POLICY_KEY, NOW)
    assert (observed.governed, list(observed.violators)) == (2, [])
    assert sorted(observed.pending) == ["Deployment/ml/one", "Deployment/ml/two"]
    arrived: list[set[caches.Key]] = []
    verifications.on_verdict = arrived.append
    verifications.start()
    try:
        await _settle(verifications)
    finally:
        await verifications.stop()
    assert len(verifier.calls) == 1, "one verification for both workloads"
    assert arrived == [{("Deployment", "ml", "one"), ("Deployment", "ml", "two")}]
    observed = controller.observe(POLICY_KEY, NOW)
    assert (list(observed.pending), list(observed.violators)) == ([], [])
    assert verifier.calls[0]["pull_secrets"] == []


async def test_a_verdict_outlives_its_cache_entry_and_is_refreshed_at_most_so_often() -> None:
    now = [100.0]
    verifier = ScriptedVerifierForTests(trusted=KEY_B)  # KEY_A's signature does not verify
    verifications = imageverdicts.Verifications(verifier, clock=lambda: now[0], refresh_seconds=30)
    controller = _controller(verifications, _policy(INLINE_A), _deployment("d"))
    key = ("Deployment", "ml", "d")
    parsed, governing = _governing(controller, key)
    verifications.start()
    try:
        verifications.look_up(key, parsed, governing)
        await _settle(verifications)
        verifier.cache.clear()  # a negative lives seconds in the real cache
        looked = verifications.look_up(key, parsed, governing)
        assert looked.missing == frozenset()  # the last verdict stands: not pending again
        assert verifications.in_progress == 0, "refreshed too soon"
        now[0] += 31
        verifications.look_up(key, parsed, governing)
        assert verifications.in_progress == 1
        await _settle(verifications)
    finally:
        await verifications.stop()
    assert len(verifier.calls) == 2
    await controller.reconcile(key)
    observed = controller.observe(POLICY_KEY, NOW)
    assert list(observed.violators) == ["Deployment/ml/d"]
    assert "ImageUnsigned" in observed.findings[0]


async def test_concurrency_is_bounded_and_a_hung_verifier_times_out() -> None:
    verifier = ScriptedVerifierForTests(delay=0.2)
    verifications = imageverdicts.Verifications(verifier, concurrency=2)
    controller = _controller(verifications, _policy(INLINE_A))
    for i in range(6):
        body = _deployment(f"d{i}")
        body["spec"]["template"]["spec"]["containers"][0]["image"] = IMAGE.replace("a", str(i))
        controller.world.put_workload(body)
        parsed, governing = _governing(controller, ("Deployment", "ml", f"d{i}"))
        verifications.look_up(("Deployment", "ml", f"d{i}"), parsed, governing)
    verifications.start()
    try:
        await _settle(verifications)
    finally:
        await verifications.stop()
    assert (len(verifier.calls), verifier.most_at_once) == (6, 2)

    hung = imageverdicts.Verifications(ScriptedVerifierForTests(delay=60), deadline_seconds=0.2)
    [request] = hung.audit_requests([_governing(controller, ("Deployment", "ml", "d0"))])
    verdict = await asyncio.wait_for(hung.verify(request), 5)
    assert verdict.signature.outcome is facts.Outcome.TIMED_OUT


# --- Secrets -----------------------------------------------------------------------------


async def test_secret_ref_signers_resolve_per_namespace_and_never_share_a_verdict() -> None:
    source = InMemorySecretsForTests(
        {("ml", "cosign"): {"cosign.pub": KEY_A}, ("team-b", "cosign"): {"cosign.pub": KEY_B}}
    )
    verifier = ScriptedVerifierForTests(trusted=KEY_A)
    verifications = imageverdicts.Verifications(
        verifier,
        secrets=gathering.SecretAccess(
            signer_keys=signerkeys.SignerKeys(secretreading.CachedSecrets(source))
        ),
    )
    controller = _controller(
        verifications,
        _policy(FROM_SECRET),
        _policy(FROM_SECRET, namespace="team-b"),
        _deployment("d"),
        _deployment("d", namespace="team-b"),
    )
    for namespace in ("ml", "team-b"):
        await controller.reconcile(("Deployment", namespace, "d"))
    verifications.start()
    try:
        await _settle(verifications)
    finally:
        await verifications.stop()
    assert len(verifier.calls) == 2
    assert {c["requirement"].signers[0].public_key for c in verifier.calls} == {KEY_A, KEY_B}
    assert len({c["key"] for c in verifier.calls}) == 2
    assert list(controller.observe(POLICY_KEY, NOW).violators) == []
    other = controller.observe(("ModelSecurityPolicy", "team-b", "signed"), NOW)
    assert list(other.violators) == ["Deployment/team-b/d"]


async def test_without_signer_secrets_the_signer_stays_unresolved() -> None:
    verifier = ScriptedVerifierForTests()
    verifications = imageverdicts.Verifications(verifier)
    controller = _controller(verifications, _policy(FROM_SECRET), _deployment("d"))
    await controller.reconcile(("Deployment", "ml", "d"))
    verifications.start()
    try:
        await _settle(verifications)
    finally:
        await verifications.stop()
    [call] = verifier.calls
    assert call["requirement"].signers[0].secret_ref is not None
    assert list(controller.observe(POLICY_KEY, NOW).violators) == ["Deployment/ml/d"]


async def test_pull_secrets_reach_the_verifier_only_with_the_flag() -> None:
    config = '{"auths": {"registry.example": {"auth": "dTpw"}}}'
    source = InMemorySecretsForTests({("ml", "pull"): {".dockerconfigjson": config}})
    verifier = ScriptedVerifierForTests()
    verifications = imageverdicts.Verifications(
        verifier, secrets=gathering.SecretAccess(pull_secrets=secretreading.CachedSecrets(source))
    )
    controller = _controller(verifications, _policy(INLINE_A), _deployment("d", pull_secret="pull"))
    await controller.reconcile(("Deployment", "ml", "d"))
    verifications.start()
    try:
        await _settle(verifications)
    finally:
        await verifications.stop()
    [call] = verifier.calls
    [secret] = call["pull_secrets"]
    assert base64.b64decode(secret["data"][".dockerconfigjson"]).decode() == config
    assert source.reads == [("ml", "pull")]


class FailingKubeForTests:
    """A ``writing.Kube`` whose Secret reads fail with a body that echoes data."""

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        error = writing.ApiException(status=403, reason="Forbidden")
        error.body = '{"data": {"cosign.pub": "c2VjcmV0"}}'
        raise error


async def test_secret_read_errors_name_the_secret_and_nothing_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = kubesecrets.KubeSecrets(FailingKubeForTests())  # type: ignore[arg-type]
    with pytest.raises(secretreading.SecretReadError) as raised:
        await reader.read("ml", "cosign")
    assert str(raised.value) == "get Secret ml/cosign: HTTP 403"
    cache = secretreading.CachedSecrets(reader)
    with caplog.at_level(logging.DEBUG):
        assert await cache.get("ml", "cosign") is None
    assert "c2VjcmV0" not in caplog.text


# --- the command line ---------------------------------------------------------------------


def _kube() -> writing.Kube:
    return writing.Kube(client.ApiClient(client.Configuration()), max_workers=1)


def test_secret_reads_are_off_by_default_and_each_flag_turns_on_its_own() -> None:
    from modelshield.cli import main, operator, verifierflags

    parser = main.build_parser("operator")

    def verifications(*flags: str) -> imageverdicts.Verifications:
        arguments = parser.parse_args(["operator", *flags])
        return operator.verifications(verifierflags.settings_from(arguments), _kube())

    plain = verifications()
    assert (plain.verifying, plain.secrets) == (True, gathering.NO_SECRETS)
    signers = verifications("--read-signer-secrets").secrets
    assert signers.signer_keys is not None
    assert signers.pull_secrets is None
    both = verifications("--read-signer-secrets", "--read-pull-secrets", "--secret-ttl-seconds=9")
    assert both.secrets.signer_keys is not None
    # One cache, one read per Secret.
    assert both.secrets.pull_secrets is both.secrets.signer_keys.secrets
    assert both.secrets.pull_secrets.ttl_seconds == 9


def test_a_non_positive_secret_ttl_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from modelshield.cli import main

    assert main.main(["operator", "--secret-ttl-seconds=0"]) == 2
    assert "--secret-ttl-seconds must be positive" in capsys.readouterr().err
