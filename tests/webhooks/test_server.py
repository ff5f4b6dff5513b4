"""The HTTPS server itself: malformed and huge bodies, content types, resources, health, metrics, TLS."""

from __future__ import annotations

import asyncio
import json
import pathlib
import ssl

import aiohttp
import pytest

from modelshield_webhooks import contexts, server
from tests.webhooks import pki, scenarios
from tests.webhooks.conftest import HttpsClient, client_ssl_context

pytestmark = pytest.mark.integration


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


async def test_draining_fails_readiness_but_keeps_answering(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    context.draining = True
    status, text = await client.get("/readyz")
    assert status == 503
    assert json.loads(text)["draining"] is True
    info = scenarios.BY_LABEL["Pod"]
    answer = await client.review(
        "/validate", scenarios.review(info, "CREATE", scenarios.workload(info))
    )
    assert answer["allowed"] is True


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
