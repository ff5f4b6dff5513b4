"""Workload reviews over real HTTPS: every kind x CREATE/UPDATE x Enforce/Audit, and failures."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from modelshield.supplychain.images import imageverifier, registries
from modelshield_webhooks import caches, contexts
from tests.support import admissionscenarios as scenarios
from tests.support import imageverdicts as verdicts
from tests.support.httpsclient import HttpsClient

pytestmark = pytest.mark.integration

KIND_LABELS = [info.label for info in scenarios.KINDS]


def _compliant_and_violating(
    info: scenarios.KindInfo, namespace: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    good = scenarios.workload(info, [scenarios.SIGNED, scenarios.SIGNED], namespace=namespace)
    bad = scenarios.workload(info, [scenarios.SIGNED, scenarios.UNSIGNED], namespace=namespace)
    return good, bad


def _review(
    info: scenarios.KindInfo, operation: str, obj: dict[str, Any], old: dict[str, Any]
) -> dict[str, Any]:
    # The ephemeralcontainers subresource is always an UPDATE of the pod.
    if info.sub_resource or operation == "UPDATE":
        return scenarios.review(info, "UPDATE", obj, old)
    return scenarios.review(info, "CREATE", obj)


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
@pytest.mark.parametrize("label", KIND_LABELS)
async def test_enforce_admits_compliant_and_denies_unsigned(
    client: HttpsClient, label: str, operation: str
) -> None:
    info = scenarios.BY_LABEL[label]
    good, bad = _compliant_and_violating(info, scenarios.ENFORCED)
    old = scenarios.workload(
        info, [scenarios.SIGNED], namespace=scenarios.ENFORCED, name=good["metadata"]["name"]
    )
    if info.sub_resource:
        old["spec"].pop("ephemeralContainers")

    admitted = await client.review("/validate", document := _review(info, operation, good, old))
    assert admitted["uid"] == document["request"]["uid"]
    assert admitted["allowed"] is True, admitted
    assert "warnings" not in admitted

    denied = await client.review("/validate", document := _review(info, operation, bad, old))
    assert denied["uid"] == document["request"]["uid"]
    assert denied["allowed"] is False
    message = denied["status"]["message"]
    assert denied["status"]["code"] == 403
    assert "ModelSecurityPolicy ml/fraud-model" in message
    container = "debugger" if info.sub_resource else "sidecar-1"
    assert f"container {container!r}" in message
    assert scenarios.UNSIGNED in message
    assert "has no signature" in message
    assert "sign it with the key of one of: release-2026" in message


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
@pytest.mark.parametrize("label", KIND_LABELS)
async def test_audit_admits_with_warnings(client: HttpsClient, label: str, operation: str) -> None:
    info = scenarios.BY_LABEL[label]
    good, bad = _compliant_and_violating(info, scenarios.AUDITED)
    old = scenarios.workload(info, [scenarios.SIGNED], namespace=scenarios.AUDITED)
    if info.sub_resource:
        old["spec"].pop("ephemeralContainers")

    clean = await client.review("/validate", _review(info, operation, good, old))
    assert clean["allowed"] is True
    assert "warnings" not in clean

    warned = await client.review("/validate", _review(info, operation, bad, old))
    assert warned["allowed"] is True
    assert "status" not in warned
    (warning,) = warned["warnings"]
    assert warning.startswith("modelshield (Audit) [ModelSecurityPolicy ml-audit/fraud-model]")
    assert scenarios.UNSIGNED in warning


@pytest.mark.parametrize("label", KIND_LABELS)
async def test_ungoverned_namespace_is_admitted_without_verification(
    client: HttpsClient, verifier: verdicts.FixedVerdictVerifierForTests, label: str
) -> None:
    info = scenarios.BY_LABEL[label]
    obj = scenarios.workload(info, [scenarios.UNSIGNED], namespace=scenarios.UNGOVERNED)
    answer = await client.review(
        "/validate", scenarios.review(info, "UPDATE" if info.sub_resource else "CREATE", obj, obj)
    )
    assert answer["allowed"] is True
    assert verifier.verifications == 0


async def test_unlabelled_workload_in_governed_namespace_is_admitted(client: HttpsClient) -> None:
    info = scenarios.BY_LABEL["Deployment"]
    obj = scenarios.workload(info, [scenarios.UNSIGNED], labels={"app": "web"})
    answer = await client.review("/validate", scenarios.review(info, "CREATE", obj))
    assert answer["allowed"] is True


async def test_update_that_keeps_the_pod_spec_is_admitted_without_verification(
    client: HttpsClient, verifier: verdicts.FixedVerdictVerifierForTests
) -> None:
    # A controller touching an annotation must never be blocked by a registry outage.
    info = scenarios.BY_LABEL["ReplicaSet"]
    old = scenarios.workload(info, [scenarios.UNSIGNED])
    new = json.loads(json.dumps(old))
    new["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "2"}
    new["spec"]["replicas"] = 5
    answer = await client.review("/validate", scenarios.review(info, "UPDATE", new, old))
    assert answer["allowed"] is True
    assert verifier.verifications == 0


async def test_dry_run_is_decided_like_a_real_request(client: HttpsClient) -> None:
    info = scenarios.BY_LABEL["Deployment"]
    bad = scenarios.workload(info, [scenarios.UNSIGNED])
    answer = await client.review("/validate", scenarios.review(info, "CREATE", bad, dry_run=True))
    assert answer["allowed"] is False
    assert "has no signature" in answer["status"]["message"]
    # The same answer as for the real request: a dry run is neither waved through nor
    # judged differently (the webhook writes nothing anywhere, so it has no effects to skip).
    real = await client.review("/validate", scenarios.review(info, "CREATE", bad))
    assert {k: v for k, v in answer.items() if k != "uid"} == {
        k: v for k, v in real.items() if k != "uid"
    }


@pytest.mark.parametrize("honours_deadline", [True, False], ids=["slow", "hung"])
async def test_slow_verifier_hits_the_deadline_and_denies_with_the_reason(
    client: HttpsClient,
    context: contexts.AdmissionContext,
    honours_deadline: bool,
) -> None:
    context.verifier = verdicts.FixedVerdictVerifierForTests(
        delay=30.0, honours_deadline=honours_deadline
    )
    context.verify_deadline_seconds = 0.3
    info = scenarios.BY_LABEL["Deployment"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await client.review(
        "/validate", scenarios.review(info, "CREATE", scenarios.workload(info))
    )
    elapsed = loop.time() - started
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert "could not be verified in time" in message
    assert "0.3s" in message
    # The image was not looked at: the remedy is to retry, not to sign it.
    assert "this is not a verdict on the image: retry" in message
    assert "to the registry" in message
    assert "sign it" not in message
    assert elapsed < 5


async def test_real_verifier_with_an_unreachable_registry_denies_with_the_reason(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    # The real ImageVerifier, against a loopback port nothing listens on.
    real = imageverifier.ImageVerifier(
        registry_options=registries.RegistryOptions(
            insecure_hosts=frozenset({"127.0.0.1:9"}), connect_timeout=0.5, request_timeout=0.5
        )
    )
    try:
        context.verifier = real
        info = scenarios.BY_LABEL["Pod"]
        obj = scenarios.workload(info, ["127.0.0.1:9/ml/fraud-server:v7"])
        policy = scenarios.policy(scenarios.ENFORCED, generation=2)
        policy["spec"]["images"]["allowedRegistries"] = []
        context.state.apply(caches.POLICIES, "MODIFIED", policy)
        answer = await client.review("/validate", scenarios.review(info, "CREATE", obj))
    finally:
        await real.close()
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert "127.0.0.1:9/ml/fraud-server:v7" in message
    assert "could not be verified: the registry is unreachable" in message
    assert "this is not a verdict on the image: retry" in message
    assert "sign it" not in message


class ConnectionCounter:
    """A TCP listener on loopback that counts the connections made to it, then closes them."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        """Listen; return host:port."""
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def stop(self) -> None:
        """Stop listening."""
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize("allowed", [False, True], ids=["refused", "allowed"])
async def test_real_verifier_never_contacts_a_registry_the_policy_refuses(
    client: HttpsClient, context: contexts.AdmissionContext, allowed: bool
) -> None:
    # A workload naming an arbitrary host must not make the webhook connect to it.
    listener = ConnectionCounter()
    host = await listener.start()
    real = imageverifier.ImageVerifier(
        registry_options=registries.RegistryOptions(
            insecure_hosts=frozenset({host}), connect_timeout=0.5, request_timeout=0.5
        )
    )
    image = f"{host}/ml/fraud-server:v7"
    try:
        context.verifier = real
        if allowed:  # the control: the same image under a policy that allows its registry
            policy = scenarios.policy(scenarios.ENFORCED, generation=2)
            policy["spec"]["images"]["allowedRegistries"] = [f"{host}/"]
            context.state.apply(caches.POLICIES, "MODIFIED", policy)
        info = scenarios.BY_LABEL["Pod"]
        obj = scenarios.workload(info, [image])
        answer = await client.review("/validate", scenarios.review(info, "CREATE", obj))
    finally:
        await real.close()
        await listener.stop()
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    if allowed:
        assert listener.connections >= 1
        assert "is not from an allowed registry" not in message
    else:
        assert listener.connections == 0
        assert f"image {image!r} is not from an allowed registry" in message
        assert "could not be verified" not in message
        assert "has not been verified" not in message


async def test_a_refused_registry_is_not_verified_even_under_audit(
    client: HttpsClient, verifier: verdicts.FixedVerdictVerifierForTests
) -> None:
    info = scenarios.BY_LABEL["Deployment"]
    elsewhere = "ghcr.io/someone/fraud-server:v7"
    obj = scenarios.workload(info, [scenarios.SIGNED, elsewhere], namespace=scenarios.AUDITED)
    answer = await client.review("/validate", scenarios.review(info, "CREATE", obj))
    assert answer["allowed"] is True
    (warning,) = answer["warnings"]
    assert f"image {elsewhere!r} is not from an allowed registry" in warning
    assert verifier.verifications == 1  # the allowed image only


async def test_not_synced_denies_and_readyz_says_so(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    context.state = caches.ClusterState()
    status, text = await client.get("/readyz")
    assert status == 503
    assert "modelsecuritypolicies" in text
    info = scenarios.BY_LABEL["Pod"]
    answer = await client.review(
        "/validate", scenarios.review(info, "CREATE", scenarios.workload(info))
    )
    assert answer["allowed"] is False
    assert "not loaded policies yet" in answer["status"]["message"]


async def test_broken_policy_denies_what_it_could_govern(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    broken = scenarios.policy(scenarios.UNGOVERNED, name="typo")
    broken["spec"]["enforcement"] = "Enforced"
    context.state.apply(caches.POLICIES, "ADDED", broken)
    info = scenarios.BY_LABEL["Pod"]
    obj = scenarios.workload(info, namespace=scenarios.UNGOVERNED)
    answer = await client.review("/validate", scenarios.review(info, "CREATE", obj))
    assert answer["allowed"] is False
    assert "ModelSecurityPolicy sandbox/typo is invalid" in answer["status"]["message"]


async def test_internal_error_denies(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    class Exploding:
        def cached(self, reference: str, requirement_key: str) -> None:
            raise RuntimeError("boom")

    context.verifier = Exploding()  # type: ignore[assignment]
    info = scenarios.BY_LABEL["Pod"]
    answer = await client.review(
        "/validate", scenarios.review(info, "CREATE", scenarios.workload(info))
    )
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 500
    assert "fail closed" in answer["status"]["message"]
