"""The admission server over real HTTPS: every kind x CREATE/UPDATE x Enforce/Audit, and abuse."""

from __future__ import annotations

import asyncio
import base64
import json
import pathlib
import ssl
from typing import Any

import aiohttp
import pytest

from modelshield.supplychain.images import registries, verifying
from modelshield_webhooks import caches, contexts, mutating, server
from tests.webhooks import pki, scenarios
from tests.webhooks.conftest import HttpsClient, client_ssl_context

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
    client: HttpsClient, verifier: scenarios.FixedVerdictVerifierForTests, label: str
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
    client: HttpsClient, verifier: scenarios.FixedVerdictVerifierForTests
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


async def test_dry_run_is_decided_like_a_real_request(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    info = scenarios.BY_LABEL["Deployment"]
    bad = scenarios.workload(info, [scenarios.UNSIGNED])
    version = context.state.version
    answer = await client.review("/validate", scenarios.review(info, "CREATE", bad, dry_run=True))
    assert answer["allowed"] is False
    assert "has no signature" in answer["status"]["message"]
    assert context.state.version == version  # nothing in the cached state changed


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[]",
        b"null",
        b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "u-1"}}',
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 7}}',
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u-1", "operation": "CREATE"}}',
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u-1", "operation": "CREATE", "kind": {"kind": "Pod"}, "resource": {}, "object": 5}}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=[
        "empty",
        "text",
        "binary",
        "array",
        "null",
        "v1beta1",
        "no-request",
        "uid-int",
        "no-kind",
        "object-int",
        "deep",
    ],
)
async def test_malformed_review_gets_a_well_formed_denial(client: HttpsClient, body: bytes) -> None:
    status, raw = await client.post("/validate", body)
    assert status == 200
    answer = json.loads(raw)
    assert answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert "could not read the AdmissionReview" in response["status"]["message"]
    if b'"u-1"' in body:
        assert response["uid"] == "u-1"
    # And the server still serves.
    assert (await client.get("/healthz"))[0] == 200


async def test_huge_body_is_refused_and_the_server_keeps_serving(client: HttpsClient) -> None:
    info = scenarios.BY_LABEL["Pod"]
    document = scenarios.review(info, "CREATE", scenarios.workload(info))
    document["request"]["object"]["metadata"]["annotations"]["padding"] = "x" * (2 * 1024 * 1024)
    status, _ = await client.post("/validate", json.dumps(document).encode())
    assert status == 413
    answer = await client.review(
        "/validate", scenarios.review(info, "CREATE", scenarios.workload(info))
    )
    assert answer["allowed"] is True


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/yaml"]
)
async def test_wrong_content_type_is_refused(client: HttpsClient, content_type: str) -> None:
    info = scenarios.BY_LABEL["Pod"]
    body = json.dumps(scenarios.review(info, "CREATE", scenarios.workload(info))).encode()
    status, raw = await client.post("/validate", body, content_type)
    assert status == 415
    assert b"Content-Type must be application/json" in raw


@pytest.mark.parametrize("honours_deadline", [True, False], ids=["slow", "hung"])
async def test_slow_verifier_hits_the_deadline_and_denies_with_the_reason(
    client: HttpsClient,
    context: contexts.AdmissionContext,
    honours_deadline: bool,
) -> None:
    context.verifier = scenarios.FixedVerdictVerifierForTests(
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
    assert "could not be verified in time" in answer["status"]["message"]
    assert "0.3s" in answer["status"]["message"]
    assert elapsed < 5


async def test_real_verifier_with_an_unreachable_registry_denies_with_the_reason(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    # The real ImageVerifier, against a loopback port nothing listens on.
    real = verifying.ImageVerifier(
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
    assert "could not be verified" in message


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


async def test_mutate_pins_tags_to_the_verified_digest(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    context.state.apply(
        caches.POLICIES,
        "MODIFIED",
        scenarios.policy(scenarios.ENFORCED, mutate_to_digest=True, generation=2),
    )
    info = scenarios.BY_LABEL["Deployment"]
    obj = scenarios.workload(info, [scenarios.SIGNED_BY_TAG, scenarios.UNSIGNED])
    answer = await client.review("/mutate", scenarios.review(info, "CREATE", obj))
    assert answer["allowed"] is True
    assert answer["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(answer["patch"]))
    assert patch == [
        {
            "op": "replace",
            "path": "/spec/template/spec/containers/0/image",
            "value": f"{scenarios.SIGNED_BY_TAG}@{scenarios.DIGEST}",
        }
    ]


async def test_mutate_injects_the_startup_verification_into_pods(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    context.state.apply(
        caches.POLICIES,
        "MODIFIED",
        scenarios.policy(scenarios.ENFORCED, verify_at_startup=True, generation=2),
    )
    info = scenarios.BY_LABEL["Pod"]
    answer = await client.review(
        "/mutate", scenarios.review(info, "CREATE", scenarios.workload(info))
    )
    patch = json.loads(base64.b64decode(answer["patch"]))
    add_container, add_volume = patch
    assert add_container["op"] == "add"
    assert add_container["path"] == "/spec/initContainers"
    (init,) = add_container["value"]
    assert init["name"] == contexts.STARTUP_CONTAINER_NAME
    assert init["image"] == context.startup_image
    # The ModelArtifact's verified digest and signer, the model volume mounted read-only.
    assert init["command"][:4] == ["modelshield", "model", "verify", "/models"]
    assert "sha256:" + "b" * 64 in init["command"]
    assert init["env"] == [{"name": "MODELSHIELD_EXPECTED_SIGNER", "value": scenarios.MODEL_SIGNER}]
    assert {m["name"] for m in init["volumeMounts"]} == {"model", mutating.MODEL_KEYS}
    assert all(mount["readOnly"] for mount in init["volumeMounts"])
    assert add_volume == {
        "op": "add",
        "path": "/spec/volumes/-",
        "value": {"name": mutating.MODEL_KEYS, "configMap": {"name": mutating.MODEL_KEYS}},
    }

    # The validating webhook, which runs next, accepts the pod with its injected container.
    pod = scenarios.workload(info)
    pod["spec"]["initContainers"] = [init]
    pod["spec"]["volumes"].append(add_volume["value"])
    validated = await client.review("/validate", scenarios.review(info, "CREATE", pod))
    assert validated["allowed"] is True, validated
    # ...but not another image under that name.
    pod["spec"]["initContainers"] = [{**init, "image": scenarios.UNSIGNED}]
    validated = await client.review("/validate", scenarios.review(info, "CREATE", pod))
    assert validated["allowed"] is False


async def test_startup_verification_without_a_model_volume_is_refused(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    context.state.apply(
        caches.POLICIES,
        "MODIFIED",
        scenarios.policy(scenarios.ENFORCED, verify_at_startup=True, generation=2),
    )
    info = scenarios.BY_LABEL["Pod"]
    pod = scenarios.workload(info, realistic=False)
    answer = await client.review("/mutate", scenarios.review(info, "CREATE", pod))
    assert answer["allowed"] is False
    assert "models.verifyAtStartup" in answer["status"]["message"]


async def test_mutate_without_mutating_policies_returns_no_patch(client: HttpsClient) -> None:
    info = scenarios.BY_LABEL["Pod"]
    answer = await client.review(
        "/mutate", scenarios.review(info, "CREATE", scenarios.workload(info))
    )
    assert answer == {"uid": answer["uid"], "allowed": True}


async def test_resources_endpoint_validates_policies(client: HttpsClient) -> None:
    info = scenarios.KindInfo(
        "ModelSecurityPolicy", "modelshield.dev", "v1alpha1", "modelsecuritypolicies"
    )
    good = scenarios.policy(scenarios.ENFORCED)
    assert (await client.review("/validate-resources", scenarios.review(info, "CREATE", good)))[
        "allowed"
    ]
    bad = scenarios.policy(scenarios.ENFORCED)
    bad["spec"]["images"]["allowedRegistries"] = [""]
    bad["spec"]["enforcement"] = "Sometimes"
    answer = await client.review("/validate-resources", scenarios.review(info, "CREATE", bad))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 422
    assert "spec.enforcement" in answer["status"]["message"]


async def test_health_ready_and_metrics(client: HttpsClient) -> None:
    assert await client.get("/healthz") == (200, "ok\n")
    status, text = await client.get("/readyz")
    assert status == 200
    assert json.loads(text)["ready"] is True
    info = scenarios.BY_LABEL["Deployment"]
    await client.review(
        "/validate",
        scenarios.review(info, "CREATE", scenarios.workload(info, [scenarios.UNSIGNED])),
    )
    for _ in range(2):  # the second verification of the signed image is a cache hit
        await client.review("/validate", scenarios.review(info, "CREATE", scenarios.workload(info)))
    status, text = await client.get("/metrics")
    assert status == 200
    assert (
        'modelshield_admission_requests_total{decision="denied",enforcement="Enforce",kind="Deployment",operation="CREATE"} 1.0'
        in text
    )
    assert 'modelshield_admission_verification_cache_total{result="miss"}' in text
    assert 'modelshield_admission_verification_cache_total{result="hit"}' in text
    assert 'modelshield_admission_verification_failures_total{reason="NoSignature"} 1.0' in text
    assert (
        'modelshield_admission_duration_seconds_bucket{endpoint="validate",le="10.0"} 3.0' in text
    )


async def _presented_common_name(port: int, authority: pki.Authority) -> str:
    context = client_ssl_context(authority)
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        der = ssl_object.getpeercert(binary_form=True)
        assert der is not None
        return pki.common_name_of(der)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_certificate_is_reloaded_without_dropping_requests(
    running: server.RunningServer,
    client: HttpsClient,
    authority: pki.Authority,
    serving_files: tuple[pathlib.Path, pathlib.Path],
) -> None:
    assert await _presented_common_name(running.port, authority) == "first"
    info = scenarios.BY_LABEL["Pod"]
    document = scenarios.review(info, "CREATE", scenarios.workload(info))
    stop = asyncio.Event()
    answered: list[bool] = []

    async def keep_asking() -> None:
        while not stop.is_set():
            answered.append((await client.review("/validate", document))["allowed"])

    askers = [asyncio.create_task(keep_asking()) for _ in range(4)]
    cert_file, key_file = serving_files
    # A half-done rotation (new certificate, old key) must not be served...
    new_cert, new_key = authority.issue("second")
    cert_file.write_bytes(new_cert)
    await asyncio.sleep(0.3)
    assert await _presented_common_name(running.port, authority) == "first"
    # ...the complete one is.
    key_file.write_bytes(new_key)
    for _ in range(100):
        if await _presented_common_name(running.port, authority) == "second":
            break
        await asyncio.sleep(0.05)
    assert await _presented_common_name(running.port, authority) == "second"
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*askers)
    assert len(answered) > 20
    assert all(answered)
    # Fresh connections (new TLS handshakes) work with the new certificate.
    connector = aiohttp.TCPConnector(ssl=client_ssl_context(authority), force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as fresh,
        fresh.get(f"https://127.0.0.1:{running.port}/healthz") as response,
    ):
        assert response.status == 200
