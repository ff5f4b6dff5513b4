"""The guard's client to the model server (``forwarding``) against real servers.

An aiohttp model server for what well-behaved servers send (lengths, chunks, keep-alive,
no-body statuses, HEAD), and a raw asyncio socket server that sends exactly the bytes a
test scripts: malformed answers, answers cut short, connections closed at the worst
moment, answers too slow. Every failure must be a clean ``UpstreamError`` (the guard's
502/504), within the timeout, never a hang and never a wrong body. The client's tests run
on asyncio's loop and again on uvloop (what ``modelshield guard`` runs; its transports
differ): ``test_on_uvloop``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import pathlib
import socket
from collections.abc import Awaitable, Callable

import pytest
import uvloop
from aiohttp import web

from modelshield.guard import forwarding, server
from tests.support import guardstack, modelserver
from tests.support.guardstack import KEY, KEYS_POLICY, PREDICT, call, guard_config, write_secret
from tests.support.loopscenarios import async_scenarios
from tests.support.rawupstream import (
    BODY,
    HANG,
    OK,
    Handler,
    Script,
    answering,
    post_predict,
    raw_server,
    read_request,
    upstream_client,
)

# A real aiohttp model server.


async def test_a_well_formed_answer_is_returned_whole_and_the_connection_reused() -> None:
    seen: list[tuple[str, dict[str, str], bytes]] = []

    async def predict(request: web.Request) -> web.Response:
        seen.append((request.raw_path, dict(request.headers), await request.read()))
        response = web.json_response({"predictions": [[0.25, 0.75]]}, headers={"X-Model": "m1"})
        response.set_cookie("session", "abc")
        return response

    app = web.Application()
    app.router.add_post("/v1/models/{model}:predict", predict)
    async with modelserver.serving(app) as base:
        client = upstream_client(base)
        answers = [await post_predict(client) for _ in range(3)]
        await client.close()
    assert [a.status for a in answers] == [200, 200, 200]
    assert json.loads(answers[0].body) == {"predictions": [[0.25, 0.75]]}
    headers = dict(answers[0].headers)
    assert headers["X-Model"] == "m1"
    assert headers["Set-Cookie"].startswith("session=abc")
    assert client.connections_opened == 1  # one keep-alive connection for all three
    path, sent, body = seen[2]
    assert (path, body) == ("/v1/models/m:predict", BODY)
    port = base.rsplit(":", 1)[1]
    # Only what the guard gave, Host and the length: no cookie kept from the last answer,
    # no Accept-Encoding, User-Agent or Accept of the client's own.
    assert sent == {
        "Host": f"127.0.0.1:{port}",
        "Content-Type": "application/json",
        "Content-Length": str(len(BODY)),
    }


async def test_a_chunked_answer_is_read_whole() -> None:
    parts = [b'{"predictions": [', b"[0.5, 0.5]", b", [0.1, 0.9]", b"]}"]

    async def predict(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in parts:
            await response.write(part)
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/models/{model}:predict", predict)
    async with modelserver.serving(app) as base:
        client = upstream_client(base)
        first, second = await post_predict(client), await post_predict(client)
        await client.close()
    assert first.body == second.body == b"".join(parts)
    assert ("Transfer-Encoding", "chunked") in first.headers
    assert client.connections_opened == 1


async def test_a_compressed_answer_is_relayed_as_it_came() -> None:
    async def predict(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            body=gzip.compress(b'{"predictions": []}'), headers={"Content-Encoding": "gzip"}
        )

    app = web.Application()
    app.router.add_post("/v1/models/{model}:predict", predict)
    async with modelserver.serving(app) as base:
        client = upstream_client(base)
        answer = await post_predict(client)
        await client.close()
    assert gzip.decompress(answer.body) == b'{"predictions": []}'


async def test_no_body_statuses_and_head_answers_end_at_their_headers() -> None:
    async def no_content(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def not_modified(request: web.Request) -> web.Response:
        return web.Response(status=304, headers={"ETag": '"v1"'})

    async def metadata(request: web.Request) -> web.Response:
        return web.json_response({"name": "m", "ready": True})

    app = web.Application()
    app.router.add_get("/204", no_content)
    app.router.add_get("/304", not_modified)
    app.router.add_get("/v1/models/m", metadata)  # answers HEAD with its Content-Length
    async with modelserver.serving(app) as base:
        client = upstream_client(base)
        results = []
        for method, path in [("GET", "/204"), ("GET", "/304"), ("HEAD", "/v1/models/m")]:
            results.append(await asyncio.wait_for(client.request(method, path, []), HANG))
        after = await asyncio.wait_for(client.request("GET", "/v1/models/m", []), HANG)
        await client.close()
    assert [(r.status, r.body) for r in results] == [(204, b""), (304, b""), (200, b"")]
    assert int(dict(results[2].headers)["Content-Length"]) > 0
    assert json.loads(after.body) == {"name": "m", "ready": True}


async def test_connections_are_bounded_by_the_limit() -> None:
    in_flight, most = 0, 0

    async def predict(request: web.Request) -> web.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return web.json_response({"predictions": []})

    app = web.Application()
    app.router.add_post("/v1/models/{model}:predict", predict)
    async with modelserver.serving(app) as base:
        client = upstream_client(base, limit=2)
        answers = await asyncio.gather(*(post_predict(client) for _ in range(8)))
        await client.close()
    assert [a.status for a in answers] == [200] * 8
    assert most == 2
    assert client.connections_opened == 2


async def test_an_unreachable_server_is_an_error_not_a_hang() -> None:
    client = upstream_client(f"http://127.0.0.1:{modelserver.free_port()}")
    with pytest.raises(forwarding.UnreachableError):
        await post_predict(client)


def test_only_plain_http_upstreams_are_accepted() -> None:
    for base in ("https://model:8443", "http://", "http://model:80/?q=1"):
        with pytest.raises(ValueError, match="upstream"):
            forwarding.Client(base, timeout=1.0, connect_timeout=1.0)


# A raw socket server that sends what each test scripts.


MALFORMED = {
    "bad status line": b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\n{}",
    "not HTTP": b"SSH-2.0-OpenSSH_9.6\r\n",
    "both Content-Length and chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    ),
    "two Content-Lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}}",
    "chunk size not hex": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "chunk longer than its size": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}}\r\n0\r\n\r\n"
    ),
    "header folded": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 2\r\n\r\n{}",
    "header not UTF-8": b"HTTP/1.1 200 OK\r\nX-A: \xff\xfe\r\nContent-Length: 2\r\n\r\n{}",
    "switching protocols": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
}


@pytest.mark.parametrize("answer", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_answer_is_an_error_and_the_connection_is_not_reused(
    answer: bytes,
) -> None:
    async with raw_server(answering(answer, then_close=False, later=OK)) as (base, script):
        client = upstream_client(base)
        with pytest.raises(forwarding.BadAnswerError, match=r"answer|switched"):
            await post_predict(client)
        after = await post_predict(client)
        await client.close()
    assert (after.status, after.body) == (200, b"{}")
    # The next request went out on a new connection.
    assert [len(requests) for requests in script.connections] == [1, 1]


CUT_SHORT = {
    "body shorter than its Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",
    "chunked body without its last chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
    "headers without their end": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
    "status line only": b"HTTP/1.1 200 OK\r\n",
}


@pytest.mark.parametrize("answer", CUT_SHORT.values(), ids=CUT_SHORT.keys())
async def test_a_server_closing_mid_answer_is_an_error_never_a_short_body(answer: bytes) -> None:
    async with raw_server(answering(answer)) as (base, _):
        client = upstream_client(base)
        with pytest.raises(forwarding.ConnectionLostError, match="mid-answer"):
            await post_predict(client)


async def test_a_server_closing_each_connection_at_once_is_an_error() -> None:
    async def hang_up(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script, index: int
    ) -> None:
        writer.close()

    async with raw_server(hang_up) as (base, _):
        client = upstream_client(base)
        for _ in range(3):
            with pytest.raises(forwarding.ConnectionLostError, match="without answering"):
                await post_predict(client)
        await client.close()


async def test_an_answer_ended_by_the_server_closing_is_read_whole() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + b'{"p": [1]}'
    async with raw_server(answering(answer)) as (base, script):
        client = upstream_client(base)
        first = await post_predict(client)
        second = await post_predict(client)
    assert first.body == second.body == b'{"p": [1]}'
    assert len(script.connections) == 2  # such a connection cannot be reused


async def test_interim_answers_are_skipped() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK
    async with raw_server(answering(answer, OK, then_close=False)) as (base, script):
        client = upstream_client(base)
        first, second = await post_predict(client), await post_predict(client)
        await client.close()
    assert (first.status, first.body, second.body) == (200, b"{}", b"{}")
    assert ("Link", "</a>") not in first.headers
    assert len(script.connections) == 1


async def test_a_connection_that_asked_to_be_closed_is_not_reused() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    async with raw_server(answering(closing, then_close=False, later=OK)) as (base, script):
        client = upstream_client(base)
        await post_predict(client)
        await post_predict(client)
        await client.close()
    assert [len(requests) for requests in script.connections] == [1, 1]


async def test_bytes_after_an_answer_make_the_connection_unusable() -> None:
    # A second answer nobody asked for must not become the next request's answer.
    smuggled = OK + b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nforged!"
    async with raw_server(answering(smuggled, then_close=False, later=OK)) as (base, script):
        client = upstream_client(base)
        first = await post_predict(client)
        await asyncio.sleep(0.05)
        second = await post_predict(client)
        await client.close()
    assert first.body == second.body == b"{}"
    assert [len(requests) for requests in script.connections] == [1, 1]


async def test_a_slow_answer_times_out() -> None:
    async def slow(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script, index: int
    ) -> None:
        script.connections[index].append(await read_request(reader))
        await asyncio.sleep(HANG)

    async with raw_server(slow) as (base, _):
        client = upstream_client(base, timeout=0.3)
        started = asyncio.get_running_loop().time()
        with pytest.raises(forwarding.UpstreamTimeoutError):
            await post_predict(client)
        assert asyncio.get_running_loop().time() - started < 1.5


async def test_an_answer_trickling_past_the_timeout_times_out() -> None:
    # Each byte comes well within the timeout, the whole answer does not: the timeout is
    # on the whole answer, not on each read.
    async def trickle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script, index: int
    ) -> None:
        script.connections[index].append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)

    async with raw_server(trickle) as (base, _):
        client = upstream_client(base, timeout=0.5)
        started = asyncio.get_running_loop().time()
        with pytest.raises(forwarding.UpstreamTimeoutError):
            await post_predict(client)
        assert asyncio.get_running_loop().time() - started < 2.0


async def test_an_answer_over_the_limit_is_refused() -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000
    async with raw_server(answering(big)) as (base, _):
        client = upstream_client(base, answer_limit=999)
        with pytest.raises(forwarding.BadAnswerError, match="larger than 999"):
            await post_predict(client)
    async with raw_server(answering(big)) as (base, _):
        assert len((await post_predict(upstream_client(base, answer_limit=1000))).body) == 1000


async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async with raw_server(answering(OK)) as (base, script):  # closes after one answer
        client = upstream_client(base)
        first = await post_predict(client)
        await asyncio.sleep(0.1)  # the server's FIN arrives while the connection is idle
        second = await post_predict(client)  # a POST: it could not have been sent twice
        await client.close()
    assert (first.status, second.status) == (200, 200)
    assert [len(requests) for requests in script.connections] == [1, 1]


def closing_unanswered_on_reuse() -> Handler:
    """Answers a connection's first request; reads its second and closes unanswered, as a
    server does that closed an idle connection just as the request went out."""

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script, index: int
    ) -> None:
        script.connections[index].append(await read_request(reader))
        writer.write(OK)
        await writer.drain()
        script.connections[index].append(await read_request(reader))

    return handler


async def test_a_post_already_sent_is_never_sent_again() -> None:
    async with raw_server(closing_unanswered_on_reuse()) as (base, script):
        client = upstream_client(base)
        await post_predict(client)
        with pytest.raises(forwarding.ConnectionLostError, match="without answering"):
            await post_predict(client)
        await client.close()
    assert [len(requests) for requests in script.connections] == [2]


async def test_a_get_already_sent_on_a_dead_connection_is_sent_once_more() -> None:
    async with raw_server(closing_unanswered_on_reuse()) as (base, script):
        client = upstream_client(base)
        await asyncio.wait_for(client.request("GET", "/v2/health/ready", []), HANG)
        answer = await asyncio.wait_for(client.request("GET", "/v2/health/ready", []), HANG)
        await client.close()
    assert (answer.status, answer.body) == (200, b"{}")
    assert [len(requests) for requests in script.connections] == [2, 1]


# The guard over the raw server: what a client of the guard sees.


@pytest.mark.parametrize(
    "answer",
    [
        MALFORMED["both Content-Length and chunked"],
        CUT_SHORT["body shorter than its Content-Length"],
    ],
    ids=["malformed", "cut short"],
)
async def test_the_guard_answers_502_for_a_bad_answer(
    answer: bytes, tmp_path: pathlib.Path
) -> None:
    keys_dir = tmp_path / "keys"
    write_secret(keys_dir, "fraud-keys", {"batch": KEY})
    async with raw_server(answering(answer)) as (base, _):
        pipeline = server.pipeline_from_config(guard_config(base, keys_dir, KEYS_POLICY))
        async with guardstack.serving_guard(pipeline) as guard:
            status, _, body = await asyncio.wait_for(
                call(guard, "/v1/models/fraud:predict", body=PREDICT, headers={"X-Api-Key": KEY}),
                HANG,
            )
    assert status == 502
    assert "cannot be reached" in json.loads(body)["error"]
    # The model server's address stays in the audit line, not in the client's answer.
    assert "127.0.0.1" not in body.decode()
    assert (
        pipeline.metrics.registry.get_sample_value("modelshield_guard_upstream_errors_total") == 1.0
    )


async def test_a_connect_that_does_not_complete_times_out_by_the_connect_timeout() -> None:
    # A listener that never accepts, its queue filled: further SYNs are dropped, so a
    # connect neither succeeds nor fails until the client gives up.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        while True:
            filler = socket.socket()
            filler.settimeout(0.3)
            fillers.append(filler)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                break
            assert len(fillers) < 64, "the listener's queue never filled"
        client = upstream_client(f"http://127.0.0.1:{port}", timeout=3.0, connect_timeout=0.3)
        started = asyncio.get_running_loop().time()
        with pytest.raises(forwarding.UpstreamTimeoutError, match="no connection"):
            await post_predict(client)
        assert asyncio.get_running_loop().time() - started < 1.5
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


# Every test above that needs no fixture, each parameter of the parametrized ones.
UVLOOP_SCENARIOS = async_scenarios(
    globals(),
    {
        "test_a_malformed_answer_is_an_error_and_the_connection_is_not_reused": MALFORMED,
        "test_a_server_closing_mid_answer_is_an_error_never_a_short_body": CUT_SHORT,
    },
)


@pytest.mark.parametrize("scenario", UVLOOP_SCENARIOS.values(), ids=UVLOOP_SCENARIOS.keys())
def test_on_uvloop(scenario: Callable[[], Awaitable[None]]) -> None:
    async def run() -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        await scenario()

    uvloop.run(run())


def test_the_guard_does_not_start_with_an_upstream_its_client_cannot_serve(
    tmp_path: pathlib.Path,
) -> None:
    settings = guard_config("https://model.ml.svc:8443", tmp_path, KEYS_POLICY)
    with pytest.raises(ValueError, match="http:// URL"):
        server.pipeline_from_config(settings)
