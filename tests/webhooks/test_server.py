"""The HTTPS server itself: malformed and huge bodies, content types, resources, health, metrics, TLS."""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import ssl

import aiohttp
import pytest

from modelshield_webhooks import caches, contexts, responses, server, watching
from tests.support import admissionscenarios as scenarios
from tests.support import pki
from tests.support.httpsclient import HttpsClient, client_ssl_context

pytestmark = pytest.mark.integration

ENDPOINTS = ("/validate", "/mutate", "/validate-resources")


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
async def test_malformed_review_gets_a_well_formed_denial(
    client: HttpsClient, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="modelshield_webhooks")
    status, raw = await client.post("/validate", body)
    logged = [r for r in caplog.records if "malformed AdmissionReview" in r.getMessage()]
    assert len(logged) == 1, caplog.text
    assert logged[0].levelno == logging.WARNING
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


async def test_malformed_review_is_logged_and_counted(
    client: HttpsClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="modelshield_webhooks")
    for endpoint in ENDPOINTS:
        status, _ = await client.post(endpoint, b'{"apiVersion": "v0", "request": {"uid": "u-9"}}')
        assert status == 200
    lines = [
        r.getMessage() for r in caplog.records if "malformed AdmissionReview" in r.getMessage()
    ]
    assert len(lines) == len(ENDPOINTS), caplog.text
    assert all("'u-9'" in line for line in lines)
    _, text = await client.get("/metrics")
    for endpoint in (path.lstrip("/") for path in ENDPOINTS):
        # A bounded label value, and its time in the histogram like any other review.
        assert (
            f'modelshield_admission_requests_total{{decision="denied",endpoint="{endpoint}",'
            'enforcement="error",kind="unknown",operation="unknown"} 1.0' in text
        )
        assert f'modelshield_admission_duration_seconds_count{{endpoint="{endpoint}"}} 1.0' in text
    assert 'modelshield_admission_failures_total{reason="MalformedReview"} 3.0' in text


LONE_SURROGATE_UID = json.dumps(
    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "\ud800"}}
).encode()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_lone_surrogate_uid_gets_a_denial_without_the_uid(
    client: HttpsClient, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Even for a workload no policy governs: the body is not UTF-8 JSON at all.
    caplog.set_level(logging.WARNING, logger="modelshield_webhooks")
    info = scenarios.BY_LABEL["Pod"]
    document = scenarios.review(
        info, "CREATE", scenarios.workload(info, namespace=scenarios.UNGOVERNED)
    )
    document["request"]["uid"] = "\udc00-uid"
    for body in (json.dumps(document).encode(), LONE_SURROGATE_UID):
        status, raw = await client.post(endpoint, body)
        assert status == 200, raw
        raw.decode("utf-8")  # strictly UTF-8, as the API server reads it
        response = json.loads(raw)["response"]
        assert response["allowed"] is False
        assert response["uid"] == ""
        assert response["status"]["code"] == 400
        assert "not UTF-8 JSON" in response["status"]["message"]
    assert any("lone UTF-16 surrogate" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("escaped", [True, False], ids=["escaped", "raw-bytes"])
async def test_lone_surrogate_elsewhere_gets_a_denial_with_the_uid(
    client: HttpsClient, endpoint: str, escaped: bool
) -> None:
    info = scenarios.BY_LABEL["Pod"]
    document = scenarios.review(
        info, "CREATE", scenarios.workload(info, namespace=scenarios.UNGOVERNED)
    )
    document["request"]["object"]["metadata"]["annotations"]["note"] = "SURROGATE"
    body = json.dumps(document).encode()
    # Escaped (\ud800) or as the raw bytes ED A0 80 (json.loads reads them as U+D800 too).
    body = body.replace(b"SURROGATE", b"\\ud800" if escaped else b"\xed\xa0\x80")
    status, raw = await client.post(endpoint, body)
    assert status == 200, raw
    response = json.loads(raw.decode("utf-8"))["response"]
    assert response["allowed"] is False
    assert response["uid"] == document["request"]["uid"]
    assert response["status"]["code"] == 400


async def test_surrogate_pairs_are_text_not_malformed(client: HttpsClient) -> None:
    # A pair (an emoji, escaped the way Go escapes nothing but json.dumps does) is valid.
    info = scenarios.BY_LABEL["Pod"]
    document = scenarios.review(
        info, "CREATE", scenarios.workload(info, namespace=scenarios.UNGOVERNED)
    )
    document["request"]["object"]["metadata"]["annotations"]["note"] = "\U0001f600"
    answer = await client.review("/validate", document)
    assert answer["allowed"] is True


async def test_huge_body_is_refused_and_the_server_keeps_serving(
    client: HttpsClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="modelshield_webhooks")
    info = scenarios.BY_LABEL["Pod"]
    document = scenarios.review(info, "CREATE", scenarios.workload(info))
    document["request"]["object"]["metadata"]["annotations"]["padding"] = "x" * (2 * 1024 * 1024)
    status, _ = await client.post("/validate", json.dumps(document).encode())
    assert status == 413
    refused = [r for r in caplog.records if "HTTP 413" in r.getMessage()]
    assert len(refused) == 1, caplog.text
    assert "/validate" in refused[0].getMessage()
    assert "xxxx" not in caplog.text  # one line about it, never the body
    answer = await client.review(
        "/validate", scenarios.review(info, "CREATE", scenarios.workload(info))
    )
    assert answer["allowed"] is True


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/yaml"]
)
async def test_wrong_content_type_is_refused(
    client: HttpsClient, content_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    info = scenarios.BY_LABEL["Pod"]
    body = json.dumps(scenarios.review(info, "CREATE", scenarios.workload(info))).encode()
    caplog.set_level(logging.WARNING, logger="modelshield_webhooks")
    status, raw = await client.post("/validate", body, content_type)
    assert status == 415
    assert b"Content-Type must be application/json" in raw
    refused = [r.getMessage() for r in caplog.records if "HTTP 415" in r.getMessage()]
    assert len(refused) == 1, caplog.text
    assert content_type in refused[0]
    assert "fraud" not in caplog.text  # nothing of the body


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


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes
) -> dict[str, str]:
    """One keep-alive POST /validate on an open connection; the answer's headers."""
    writer.write(
        b"POST /validate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status, *lines = head.decode().split("\r\n")
    assert " 200 " in status, head
    headers = {
        name.lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines if line)
    }
    answer = json.loads(await reader.readexactly(int(headers["content-length"])))
    assert answer["response"]["allowed"] is True
    return headers


async def test_draining_closes_each_keep_alive_connection_after_its_answer(
    running: server.RunningServer, authority: pki.Authority, context: contexts.AdmissionContext
) -> None:
    """What the API server sees during a roll: a review on a connection it opened before
    the drain gets its answer and "Connection: close", and the connection ends there;
    none is left open for the final close to race with a review written on it."""
    info = scenarios.BY_LABEL["Pod"]
    body = json.dumps(scenarios.review(info, "CREATE", scenarios.workload(info))).encode()
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", running.port, ssl=client_ssl_context(authority)
    )
    try:
        kept = await _exchange(reader, writer, body)
        assert kept.get("connection", "keep-alive").lower() != "close", kept
        context.draining = True
        closing = await _exchange(reader, writer, body)
        assert closing.get("connection", "").lower() == "close", closing
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()
        await writer.wait_closed()


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
        'modelshield_admission_requests_total{decision="denied",endpoint="validate",'
        'enforcement="Enforce",kind="Deployment",operation="CREATE"} 1.0' in text
    )
    assert (
        'modelshield_admission_verification_cache_total{endpoint="validate",result="miss"}' in text
    )
    assert (
        'modelshield_admission_verification_cache_total{endpoint="validate",result="hit"}' in text
    )
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


async def test_metrics_show_how_stale_each_cache_is(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    freshness = watching.freshness_of(context.state)
    freshness.heard(caches.NAMESPACES)
    _, text = await client.get("/metrics")
    ages = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("modelshield_admission_cache_age_seconds{")
    }
    assert set(ages) == {caches.NAMESPACES}
    assert 0.0 <= ages[caches.NAMESPACES] < 60.0


@pytest.mark.parametrize(
    "document",
    [
        {"uid": "\ud800", "allowed": False},
        {"count": 2**70},
        {"pair": "\ud83d\ude00"},
        {"odd": {1, 2}},
    ],
    ids=["lone-surrogate", "big-int", "split-pair", "not-json"],
)
def test_encode_never_raises_and_writes_utf8(document: dict[str, object]) -> None:
    # orjson refuses each of these; the fallback writes UTF-8 JSON all the same.
    written = json.loads(responses.encode(document).decode("utf-8"))
    assert set(written) == set(document)
    if "uid" in document:
        assert written["uid"] == "\ufffd"
    if "pair" in document:
        assert written["pair"] == "\U0001f600"
