"""The guard over real HTTP in front of a real scikit-learn model server.

API keys come from a real Secret directory layout (as the kubelet mounts it);
ServiceAccount tokens are reviewed by the real kube-apiserver in e2e/test_guard_tokens.py.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelshield.guard import apikeys, auditing, httpserving, server
from tests.support import guardstack, modelserver
from tests.support.guardstack import (  # fixtures, shared by name
    KEY,
    KEYS_POLICY,
    OTHER_MODEL_KEY,
    PREDICT,
    ROWS,
    Stack,
    _stack,
    call,
    guard_config,
    keys_dir,
    trained,
    write_secret,
)

__all__ = ["keys_dir", "trained"]

pytestmark = pytest.mark.integration


@pytest.fixture
async def stack(trained: Any, keys_dir: pathlib.Path) -> AsyncIterator[Stack]:
    """The guard with API keys, authorization for model 'fraud' and request checks."""
    async with _stack(trained, keys_dir, KEYS_POLICY) as running:
        yield running


async def test_allowed_client_gets_the_models_answer_unchanged(stack: Stack) -> None:
    status, _, body = await call(
        stack.url, "/v1/models/fraud:predict", body=PREDICT, headers={"X-Api-Key": KEY}
    )
    assert status == 200, body
    direct_status, _, direct = await call(stack.upstream, "/v1/models/fraud:predict", body=PREDICT)
    assert (direct_status, body) == (200, direct)
    assert json.loads(body)["predictions"][0][0] == pytest.approx(
        json.loads(direct)["predictions"][0][0]
    )


async def test_credentials_are_stripped_and_the_client_named(stack: Stack) -> None:
    status, _, _ = await call(
        stack.url,
        "/v1/models/fraud:predict",
        body=PREDICT,
        headers={"Authorization": f"Bearer {KEY}", "X-Modelshield-Client": "apikey:admin"},
    )
    assert status == 200
    (seen,) = stack.model.seen
    lowered = {k.lower(): v for k, v in seen.headers.items()}
    assert "authorization" not in lowered
    assert "x-api-key" not in lowered
    assert lowered["x-modelshield-client"] == "apikey:batch"  # the client's own spoof is dropped
    assert seen.body == PREDICT


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-Api-Key": "guessed-key-000000"}, 401),
        ({"X-Api-Key": OTHER_MODEL_KEY}, 401),  # a key of another model's Secret
        ({"Authorization": f"Basic {KEY}"}, 401),
        ({"X-Api-Key": KEY, "Authorization": "Bearer x.y.z"}, 400),
    ],
)
async def test_missing_unknown_or_ambiguous_credentials_never_reach_the_model(
    stack: Stack, headers: dict[str, str], status: int
) -> None:
    got, response_headers, body = await call(
        stack.url, "/v1/models/fraud:predict", body=PREDICT, headers=headers
    )
    assert got == status, body
    assert json.loads(body)["error"]
    if status == 401:
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
    assert stack.model.seen == []


async def test_key_for_another_model_name_is_403(stack: Stack) -> None:
    status, _, body = await call(
        stack.url, "/v1/models/other:predict", body=PREDICT, headers={"X-Api-Key": KEY}
    )
    assert status == 403
    assert json.loads(body) == {
        "error": "apikey:batch may not Predict model 'other'",
        "reason": "Forbidden",
        "policy": "ModelSecurityPolicy ml/p0",
    }
    assert stack.model.seen == []


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/other%3Apredict",
        "/v1/models/%6Fther:predict",
        "/v1/models//other:predict",
        "//v1/models/other:predict",
        "/v1/models/fraud/../other:predict",
        "/v1/models/fraud:predict?model=other",
        "/v1/models/fraud:predict#x",
    ],
)
async def test_path_tricks_are_refused_before_the_model(stack: Stack, path: str) -> None:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: guard\r\nX-Api-Key: {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(PREDICT)}\r\n\r\n"
    ).encode() + PREDICT
    status, _, _ = await modelserver.raw_request(stack.url, request)
    assert status in (400, 404)
    assert stack.model.seen == []


async def test_oversized_body_is_413_and_never_forwarded(stack: Stack) -> None:
    big = json.dumps({"instances": [[0.5] * 30] * 500}).encode()
    assert len(big) > 65536
    status, _, body = await call(
        stack.url, "/v1/models/fraud:predict", body=big, headers={"X-Api-Key": KEY}
    )
    assert status == 413, body
    assert stack.model.seen == []


async def test_chunked_oversized_body_is_413(stack: Stack) -> None:
    host, port = stack.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        (
            "POST /v1/models/fraud:predict HTTP/1.1\r\nHost: guard\r\n"
            f"X-Api-Key: {KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
    )
    chunk = b"[" + b"1," * 8000 + b"1]"
    try:
        for _ in range(20):  # 320 KB, no Content-Length: the guard counts as it reads
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    except ConnectionError:
        pass  # the guard answered and closed before the end: what it should do
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert head.split()[1] == b"413"
    assert stack.model.seen == []


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b'{"instances": [[NaN]]}', "application/json", 400),
        (b'{"rows": [[1]]}', "application/json", 400),
        (json.dumps({"instances": [[1.0] * 30] * 101}).encode(), "application/json", 400),
        (b"[" * 50 + b"]" * 50, "application/json", 400),
        (PREDICT, "text/plain", 415),
        (PREDICT, "", 415),
    ],
)
async def test_malformed_requests_are_refused_with_a_reason(
    stack: Stack, body: bytes, content_type: str, status: int
) -> None:
    got, _, answer = await call(
        stack.url,
        "/v1/models/fraud:predict",
        body=body,
        headers={"X-Api-Key": KEY, "Content-Type": content_type},
    )
    assert got == status, answer
    assert json.loads(answer)["error"]
    assert stack.model.seen == []


async def test_key_rotation_takes_effect_without_restart(
    stack: Stack, keys_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apikeys, "RECHECK", 0.0)
    headers = {"X-Api-Key": KEY}
    assert (await call(stack.url, "/v1/models/fraud:predict", body=PREDICT, headers=headers))[
        0
    ] == 200
    rotated = "rotated-key-987654321"
    write_secret(keys_dir, "fraud-keys", {"batch": rotated})
    assert (await call(stack.url, "/v1/models/fraud:predict", body=PREDICT, headers=headers))[
        0
    ] == 401
    assert (
        await call(
            stack.url, "/v1/models/fraud:predict", body=PREDICT, headers={"X-Api-Key": rotated}
        )
    )[0] == 200


async def test_secrets_never_appear_in_audit_lines(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelshield.guard.audit")
    await call(stack.url, "/v1/models/fraud:predict", body=PREDICT, headers={"X-Api-Key": KEY})
    await call(
        stack.url, "/v1/models/fraud:predict", body=PREDICT, headers={"X-Api-Key": "wrong-key-0000"}
    )
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "modelshield.guard.audit"
    ]
    assert [(line["client"], line["decision"], line["status"]) for line in lines] == [
        ("apikey:batch", "allowed", 200),
        ("invalid", "refused", 401),
    ]
    text = caplog.text
    assert KEY not in text
    assert "wrong-key-0000" not in text
    assert hashlib.sha256(KEY.encode()).hexdigest() not in text
    assert str(ROWS[0][0]) not in text  # no payload either


async def test_burst_over_the_limit_is_429_with_retry_after_across_two_replicas(
    trained: Any, keys_dir: pathlib.Path
) -> None:
    limited = {
        "api": {
            **KEYS_POLICY["api"],
            "rateLimits": {"perClient": {"requestsPerSecond": 0.01, "burst": 6}},
        }
    }
    model = modelserver.ModelServer(trained)
    async with modelserver.serving(model.app()) as upstream:
        settings = guard_config(upstream, keys_dir, limited, replicas=2)
        first, second = server.pipeline_from_config(settings), server.pipeline_from_config(settings)
        async with (
            guardstack.serving_guard(first) as a,
            guardstack.serving_guard(second) as b,
        ):
            statuses = []
            retry_after = set()
            for i in range(20):  # a client spreading its burst over both replicas
                status, headers, _ = await call(
                    (a, b)[i % 2],
                    "/v1/models/fraud:predict",
                    body=PREDICT,
                    headers={"X-Api-Key": KEY},
                )
                statuses.append(status)
                if status == 429:
                    retry_after.add(int(headers["Retry-After"]))
    assert statuses.count(200) == 6, statuses  # the policy's burst, not 2 x 6
    assert statuses.count(429) == 14
    assert len(model.seen) == 6
    assert retry_after
    assert min(retry_after) >= 1


async def test_audit_mode_forwards_everything_and_reports(
    trained: Any, keys_dir: pathlib.Path
) -> None:
    audit = {**KEYS_POLICY, "enforcement": "Audit"}
    async with _stack(trained, keys_dir, audit) as running:
        status, headers, body = await call(running.url, "/v1/models/other:predict", body=PREDICT)
        assert status == 200, body
        assert "Unauthenticated by ModelSecurityPolicy ml/p0" in headers[server.AUDIT_HEADER]
        assert len(running.model.seen) == 1
        metrics = running.pipeline.metrics.registry
        assert (
            metrics.get_sample_value(
                "modelshield_guard_refusals_total",
                {
                    "reason": "Unauthenticated",
                    "policy": "ModelSecurityPolicy ml/p0",
                    "enforced": "false",
                },
            )
            == 1.0
        )
        assert (
            metrics.get_sample_value(
                "modelshield_guard_requests_total",
                {"client": "anonymous", "decision": "audited", "status": "200"},
            )
            == 1.0
        )


async def test_model_server_unreachable_is_502_with_a_reason(keys_dir: pathlib.Path) -> None:
    settings = guard_config(f"http://127.0.0.1:{modelserver.free_port()}", keys_dir, KEYS_POLICY)
    pipeline = server.pipeline_from_config(settings)
    async with guardstack.serving_guard(pipeline) as guard:
        status, _, body = await asyncio.wait_for(
            call(guard, "/v1/models/fraud:predict", body=PREDICT, headers={"X-Api-Key": KEY}), 10
        )
    assert status == 502
    assert "cannot be reached" in json.loads(body)["error"]
    assert (
        pipeline.metrics.registry.get_sample_value("modelshield_guard_upstream_errors_total") == 1.0
    )


async def test_model_server_hanging_is_504_not_a_hang(trained: Any, keys_dir: pathlib.Path) -> None:
    async with _stack(
        trained, keys_dir, KEYS_POLICY, delay=1.5, upstreamTimeoutSeconds=0.3
    ) as running:
        status, _, body = await asyncio.wait_for(
            call(running.url, "/v1/models/fraud:predict", body=PREDICT, headers={"X-Api-Key": KEY}),
            4,
        )
        assert status == 504
        assert "did not answer in time" in json.loads(body)["error"]


async def test_token_review_unreachable_is_503_and_not_cached(
    trained: Any, keys_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("guard-own-token")
    tokens = {
        "api": {"authentication": {"serviceAccountTokens": {"audiences": ["modelshield-guard"]}}}
    }
    api_server = {
        "url": f"https://127.0.0.1:{modelserver.free_port()}",
        "caFile": None,
        "tokenFile": str(token_file),
    }
    async with _stack(trained, keys_dir, tokens, apiServer=api_server) as running:
        jwt = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjk5OTk5OTk5OTl9.c2ln"
        status, _, body = await call(
            running.url,
            "/v2/models/fraud/infer",
            body=b"{}",
            headers={"Authorization": f"Bearer {jwt}"},
        )
        assert status == 503, body
        reviewer = running.pipeline.authenticator.reviewer
        assert reviewer is not None
        assert len(reviewer.cache) == 0
        assert running.model.seen == []


async def test_v2_inference_through_the_guard(stack: Stack) -> None:
    request = {
        "inputs": [{"name": "x", "shape": [2, 30], "datatype": "FP64", "data": ROWS[0] + ROWS[1]}]
    }
    status, _, body = await call(
        stack.url,
        "/v2/models/fraud/infer",
        body=json.dumps(request).encode(),
        headers={"X-Api-Key": KEY},
    )
    assert status == 200, body
    assert json.loads(body)["outputs"][0]["shape"] == [2]


async def test_content_encoded_bodies_are_refused(stack: Stack) -> None:
    compressed = gzip.compress(PREDICT)
    status, _, body = await call(
        stack.url,
        "/v1/models/fraud:predict",
        body=compressed,
        headers={"X-Api-Key": KEY, "Content-Encoding": "gzip"},
    )
    assert status == 415, body
    assert stack.model.seen == []


async def test_a_key_twice_in_the_body_never_reaches_the_model(stack: Stack) -> None:
    # Python keeps the last duplicate, other parsers the first: 101 rows could hide there.
    rows = json.dumps([[0.5] * 30] * 101)
    body = f'{{"instances": {rows}, "instances": [[0.5]]}}'.encode()
    status, _, answer = await call(
        stack.url, "/v1/models/fraud:predict", body=body, headers={"X-Api-Key": KEY}
    )
    assert status == 400, answer
    assert stack.model.seen == []


async def test_rows_not_matching_the_reference_profile_never_reach_the_model(
    trained: Any, keys_dir: pathlib.Path
) -> None:
    checked = {"api": {**KEYS_POLICY["api"], "requests": {"matchReferenceProfile": True}}}
    features = [{"name": f"f{i}", "type": "numeric"} for i in range(30)]
    async with _stack(trained, keys_dir, checked, referenceFeatures=features) as running:
        headers = {"X-Api-Key": KEY}
        status, _, _ = await call(
            running.url, "/v1/models/fraud:predict", body=PREDICT, headers=headers
        )
        assert status == 200
        for rows in (
            [ROWS[0][:29]],
            [[*ROWS[0][:29], "x"]],
            [dict(zip(["f0"], ROWS[0][:1], strict=True))],
        ):
            body = json.dumps({"instances": rows}).encode()
            status, _, answer = await call(
                running.url, "/v1/models/fraud:predict", body=body, headers=headers
            )
            assert status == 400, answer
        assert len(running.model.seen) == 1


async def test_the_answer_is_sent_before_the_audit_line_and_metrics(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The audit line and the metrics are written after the client's answer went out
    (they are not on its path), for answers and refusals alike; and still written."""
    caplog.set_level(logging.INFO, logger="modelshield.guard.audit")
    record, send = auditing.record, httpserving._Connection._send
    events: list[str] = []

    def recording(metrics: Any, method: str, outcome: Any, seconds: float) -> None:
        events.append(f"recorded {outcome.status}")
        record(metrics, method, outcome, seconds)

    def sending(connection: Any, answer: Any, *arguments: Any, **options: Any) -> None:
        send(connection, answer, *arguments, **options)
        events.append(f"sent {answer.status}")

    monkeypatch.setattr(auditing, "record", recording)
    monkeypatch.setattr(httpserving._Connection, "_send", sending)
    allowed = await call(
        stack.url, "/v1/models/fraud:predict", body=PREDICT, headers={"X-Api-Key": KEY}
    )
    refused = await call(stack.url, "/v1/models/fraud:predict", body=PREDICT)
    assert (allowed[0], refused[0]) == (200, 401)
    assert events == ["sent 200", "recorded 200", "sent 401", "recorded 401"]
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == auditing.AUDIT_LOGGER.name
    ]
    assert [line["status"] for line in lines] == [200, 401]
