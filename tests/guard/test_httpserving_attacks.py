"""An attacker's review of the guard's own HTTP/1.1 server (issue 14), end to end: raw
bytes on a real socket to the guard (its own server, and aiohttp's for comparison) in
front of a real model server. Each attack here is one the guard holds: what it refuses
never reaches the model, nothing after a refusal becomes a request, and a client leaving
mid-request leaves no connection behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
from typing import Any

import pytest

from modelshield.guard import server
from tests.support import guardstack, modelserver
from tests.support.guardstack import KEY, KEYS_POLICY, PREDICT, keys_dir, trained
from tests.support.rawclient import WAIT, answers, exchange, read_all

__all__ = ["keys_dir", "trained"]

pytestmark = pytest.mark.integration

SERVERS = ["own", "aiohttp"]
KEY_HEADER = b"X-Api-Key: " + KEY.encode() + b"\r\n"
PREDICT_PATH = b"/v1/models/fraud:predict"


def predict(extra: bytes = b"", *, version: bytes = b"HTTP/1.1", body: bytes = PREDICT) -> bytes:
    """A predict request with these extra header lines (none: no credential)."""
    return (
        b"POST " + PREDICT_PATH + b" " + version + b"\r\nHost: guard\r\n"
        b"Content-Type: application/json\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body


guarded = guardstack.guarded_model


CREDENTIAL_TWICE = {
    "Authorization twice": b"Authorization: Bearer %s\r\nAuthorization: Bearer %s\r\n",
    "authorization and Authorization": (
        b"authorization: Bearer %s\r\nAuthorization: Bearer %s\r\n"
    ),
    "X-Api-Key and x-api-key": b"X-Api-Key: %s\r\nx-api-key: %s\r\n",
    "X-API-KEY and Authorization": b"X-API-KEY: %s\r\nAuthorization: Bearer %s\r\n",
}


@pytest.mark.parametrize("http_server", SERVERS)
@pytest.mark.parametrize("lines", CREDENTIAL_TWICE.values(), ids=CREDENTIAL_TWICE.keys())
async def test_a_credential_sent_twice_in_any_spelling_is_refused(
    trained: Any, keys_dir: pathlib.Path, http_server: str, lines: bytes
) -> None:
    # The same valid key twice: the guard and the model server must never be able to read
    # different credentials from one request, so even an identical repeat is refused.
    key = KEY.encode()
    async with guarded(trained, keys_dir, http_server) as (port, model):
        received, closed = await exchange(port, predict(lines % (key, key)))
    (answer,) = answers(received)
    assert (answer.status, closed) == (400, True), received
    assert model.seen == []


TARGETS = {
    "absolute-form": b"POST http://model" + PREDICT_PATH,
    "absolute-form naming another host": b"POST http://evil.example:8080" + PREDICT_PATH,
    "asterisk-form": b"OPTIONS *",
    "encoded dot segments": b"POST /v1/models/%2e%2e/models/fraud:predict",
    "dot segments": b"POST /v1/models/x/../fraud:predict",
    "an empty segment": b"POST //v1/models/fraud:predict",
    "an encoded colon": b"POST /v1/models/fraud%3Apredict",
    "a query": b"POST /v1/models/fraud:predict?x=1",
    "a fragment": b"POST /v1/models/fraud:predict#x",
    "TRACE": b"TRACE /v1/models/fraud:predict",
    "OPTIONS": b"OPTIONS /v1/models/fraud:predict",
    "a lower-case method": b"post /v1/models/fraud:predict",
    "a mixed-case method": b"Post /v1/models/fraud:predict",
    "a long path": b"POST /v1/models/" + b"a" * 8000 + b":predict",
}


@pytest.mark.parametrize("http_server", SERVERS)
@pytest.mark.parametrize("line", TARGETS.values(), ids=TARGETS.keys())
async def test_request_target_tricks_never_reach_the_model(
    trained: Any, keys_dir: pathlib.Path, http_server: str, line: bytes
) -> None:
    request = (
        (line + b" HTTP/1.1\r\nHost: guard\r\nContent-Type: application/json\r\n" + KEY_HEADER)
        + b"Content-Length: %d\r\n\r\n" % len(PREDICT)
        + PREDICT
    )
    async with guarded(trained, keys_dir, http_server) as (port, model):
        received, _ = await exchange(port, request)
    found = answers(received)
    assert len(found) == 1, received
    assert 400 <= found[0].status < 500, received
    assert model.seen == []


@pytest.mark.parametrize("http_server", SERVERS)
async def test_a_refused_requests_body_never_becomes_a_request(
    trained: Any, keys_dir: pathlib.Path, http_server: str
) -> None:
    # No credential (401): its body, a whole allowed request, is never read as the next one.
    async with guarded(trained, keys_dir, http_server) as (port, model):
        received, closed = await exchange(port, predict(body=predict(KEY_HEADER)))
    (answer,) = answers(received)
    assert (answer.status, closed) == (401, True)
    assert model.seen == []


@pytest.mark.parametrize("http_server", SERVERS)
async def test_bytes_sent_after_a_refusal_on_a_keep_alive_connection_are_dropped(
    trained: Any, keys_dir: pathlib.Path, http_server: str
) -> None:
    # The head alone (its body not sent yet), refused; then the client sends a body that is
    # an allowed request, and another allowed request after it.
    allowed = predict(KEY_HEADER)
    head = predict(body=allowed)[: -len(allowed)]
    async with guarded(trained, keys_dir, http_server) as (port, model):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        first, _ = await read_all(reader, 0.5)
        with contextlib.suppress(ConnectionError):
            writer.write(allowed + allowed)
            await writer.drain()
        rest, closed = await read_all(reader, WAIT)
        writer.close()
    assert [a.status for a in answers(first + rest)] == [401]
    assert closed
    assert model.seen == []


@pytest.mark.parametrize("http_server", SERVERS)
async def test_requests_pipelined_behind_a_refused_one_are_not_handled(
    trained: Any, keys_dir: pathlib.Path, http_server: str
) -> None:
    async with guarded(trained, keys_dir, http_server) as (port, model):
        received, closed = await exchange(port, predict() + predict(KEY_HEADER) * 3)
    assert [a.status for a in answers(received)] == [401]
    assert closed
    assert model.seen == []


@pytest.mark.parametrize("http_server", SERVERS)
async def test_pipelined_requests_after_an_allowed_one_each_get_their_own_answer(
    trained: Any, keys_dir: pathlib.Path, http_server: str
) -> None:
    # Allowed, refused (other model), allowed: the refusal ends the connection after it.
    other = predict(KEY_HEADER).replace(PREDICT_PATH, b"/v1/models/other:predict")
    async with guarded(trained, keys_dir, http_server) as (port, model):
        received, closed = await exchange(port, predict(KEY_HEADER) + other + predict(KEY_HEADER))
    assert [a.status for a in answers(received)] == [200, 403]
    assert closed
    assert [seen.body for seen in model.seen] == [PREDICT]


async def test_expect_100_continue_refused_on_its_head_never_reads_the_body(
    trained: Any, keys_dir: pathlib.Path
) -> None:
    # No 100 Continue for a request refused on its head (aiohttp's server answers 100 to
    # every Expect before the guard judges: only the guard's own server is held to this).
    allowed = predict(KEY_HEADER)
    head = predict(b"Expect: 100-continue\r\n", body=allowed)[: -len(allowed)]
    async with guarded(trained, keys_dir, "own") as (port, model):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        first, _ = await read_all(reader, 0.5)
        with contextlib.suppress(ConnectionError):
            writer.write(allowed)  # a different body than expected: a whole request
            await writer.drain()
        rest, closed = await read_all(reader, WAIT)
        writer.close()
    assert not first.startswith(b"HTTP/1.1 100")
    assert [a.status for a in answers(first + rest)] == [401]
    assert closed
    assert model.seen == []


async def test_expect_100_continue_then_the_body_is_forwarded_as_judged(
    trained: Any, keys_dir: pathlib.Path
) -> None:
    head = predict(KEY_HEADER + b"Expect: 100-continue\r\n")[: -len(PREDICT)]
    async with guarded(trained, keys_dir, "own") as (port, model):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        first, _ = await read_all(reader, 0.5)
        writer.write(PREDICT)
        rest, _ = await read_all(reader, 0.5)
        writer.close()
    assert first == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert [a.status for a in answers(rest)] == [200]
    assert [seen.body for seen in model.seen] == [PREDICT]
    assert "Expect" not in model.seen[0].headers


@pytest.mark.parametrize("http_server", SERVERS)
async def test_http_1_0_keep_alive_requests_are_each_forwarded_once(
    trained: Any, keys_dir: pathlib.Path, http_server: str
) -> None:
    one = predict(KEY_HEADER + b"Connection: keep-alive\r\n", version=b"HTTP/1.0")
    async with guarded(trained, keys_dir, http_server) as (port, model):
        received, _ = await exchange(port, one + one)
    found = answers(received)
    assert [a.status for a in found] == [200, 200]
    assert [seen.body for seen in model.seen] == [PREDICT, PREDICT]


@pytest.mark.parametrize("http_server", SERVERS)
async def test_a_body_in_one_byte_chunks_reaches_the_model_as_one_body(
    trained: Any, keys_dir: pathlib.Path, http_server: str
) -> None:
    chunks = b"".join(b"1;e=x\r\n" + bytes([byte]) + b"\r\n" for byte in PREDICT)
    request = (
        (
            b"POST "
            + PREDICT_PATH
            + b" HTTP/1.1\r\nHost: guard\r\nContent-Type: application/json\r\n"
        )
        + KEY_HEADER
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + chunks
        + b"0\r\n\r\n"
    )
    async with guarded(trained, keys_dir, http_server) as (port, model):
        received, _ = await exchange(port, request)
    assert [a.status for a in answers(received)] == [200]
    assert [seen.body for seen in model.seen] == [PREDICT]
    assert "Transfer-Encoding" not in model.seen[0].headers


async def test_a_chunked_body_past_the_limit_is_refused_and_never_forwarded(
    trained: Any, keys_dir: pathlib.Path
) -> None:
    # maxBodyBytes is 64 KiB: 1 MiB in 4 KiB chunks, never declared. (aiohttp's server
    # answers 413 too but keeps reading the rest for its lingering time.)
    http_server = "own"
    chunk = b"1000\r\n" + b" " * 4096 + b"\r\n"
    request = (
        (
            b"POST "
            + PREDICT_PATH
            + b" HTTP/1.1\r\nHost: guard\r\nContent-Type: application/json\r\n"
        )
        + KEY_HEADER
        + b"Transfer-Encoding: chunked\r\n\r\n"
    )
    async with guarded(trained, keys_dir, http_server) as (port, model):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(256):
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), WAIT)
        received, closed = await read_all(reader, WAIT)
        writer.close()
    assert [a.status for a in answers(received)] == [413]
    assert closed
    assert model.seen == []


@pytest.mark.parametrize("http_server", SERVERS)
async def test_a_forged_guard_header_in_any_case_is_replaced(
    trained: Any, keys_dir: pathlib.Path, http_server: str
) -> None:
    forged = (
        b"X-Modelshield-Client: admin\r\nx-modelshield-CLIENT: admin\r\nX-Modelshield-Audit: x\r\n"
    )
    async with guarded(trained, keys_dir, http_server) as (port, model):
        received, _ = await exchange(port, predict(KEY_HEADER + forged))
    assert [a.status for a in answers(received)] == [200]
    (seen,) = model.seen
    guard_headers = [
        (n, v) for n, v in seen.headers.items() if n.lower().startswith("x-modelshield")
    ]
    assert guard_headers == [("X-Modelshield-Client", "apikey:batch")]


@pytest.mark.parametrize("http_server", SERVERS)
async def test_underscore_spellings_of_guarded_headers_never_reach_the_model(
    trained: Any, keys_dir: pathlib.Path, http_server: str
) -> None:
    # WSGI/CGI-style model servers read X_Modelshield_Client as X-Modelshield-Client: a
    # client would forge the identity the guard vouches for (found by the review of the
    # guard's own server; aiohttp's forwarded them too).
    forged = (
        b"X_Modelshield_Client: admin\r\nx_modelshield-audit: x\r\nX_Api_Key: other\r\n"
        b"Proxy_Connection: x\r\nTransfer_Encoding: chunked\r\nX_Custom-Name: kept\r\n"
    )
    async with guarded(trained, keys_dir, http_server) as (port, model):
        received, _ = await exchange(port, predict(KEY_HEADER + forged))
    assert [a.status for a in answers(received)] == [200]
    (seen,) = model.seen
    dashed = [name.lower().replace("_", "-") for name in seen.headers]
    assert dashed.count("x-modelshield-client") == 1, seen.headers
    assert seen.headers["X-Modelshield-Client"] == "apikey:batch"
    for dropped in ("x-modelshield-audit", "x-api-key", "proxy-connection", "transfer-encoding"):
        assert dropped not in dashed, seen.headers
    assert "X_Custom-Name" in seen.headers  # other names with "_" are forwarded as sent


@pytest.mark.parametrize(
    "host",
    [b"Host: a\r\nHost: b\r\n", b"Host: evil.example:80\r\n", b""],
    ids=["two Hosts", "another host", "none"],
)
async def test_the_client_host_never_reaches_the_model(
    trained: Any, keys_dir: pathlib.Path, host: bytes
) -> None:
    request = predict(KEY_HEADER).replace(b"Host: guard\r\n", host)
    async with guarded(trained, keys_dir, "own") as (port, model):
        received, _ = await exchange(port, request)
    assert len(answers(received)) == 1
    for seen in model.seen:
        assert seen.headers["Host"].startswith("127.0.0.1:")


def _serving_tasks() -> list[asyncio.Task[Any]]:
    """The guard's server's request tasks still running (the model server's own aiohttp
    tasks, in this process too, are not counted)."""
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") == "_Connection._serve"
    ]


async def test_clients_leaving_mid_body_and_mid_answer_leave_no_connection(
    trained: Any, keys_dir: pathlib.Path
) -> None:
    model = modelserver.ModelServer(trained, delay=0.2)
    async with modelserver.serving(model.app()) as upstream:
        pipeline = server.pipeline_from_config(
            guardstack.guard_config(upstream, keys_dir, KEYS_POLICY)
        )
        serving = server.build_server(pipeline)
        port = await serving.start("127.0.0.1", 0)
        try:
            whole = predict(KEY_HEADER)
            for cut in (len(whole) - 10, len(whole)):  # mid-body; whole, then gone mid-answer
                for _ in range(10):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.write(whole[:cut])
                    await writer.drain()
                    await asyncio.sleep(0.01)
                    writer.transport.abort()
            for _ in range(100):
                await asyncio.sleep(0.05)
                if not serving.connections and not _serving_tasks():
                    break
            assert serving.connections == set()
            assert _serving_tasks() == []
            # Still serving.
            received, _ = await exchange(port, whole)
            assert [a.status for a in answers(received)] == [200]
            assert json.loads(answers(received)[0].body)["predictions"]
        finally:
            await serving.close()
            await pipeline.close()
    assert all(seen.body == PREDICT for seen in model.seen)
