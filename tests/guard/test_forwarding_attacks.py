"""Attacks on the guard's client to the model server (``forwarding``), on real sockets.

Three sides. A client of the guard sending ambiguous framing and headers: the model server
(a raw asyncio server recording the bytes) must see exactly one request per request the
guard judged, byte for byte, with the body it checked. A model server (semi-trusted)
answering out of turn, without end or too much: no answer may reach the next request on a
pooled connection, and memory stays bounded. And the pool itself under concurrency and
cancellation: a connection in an unknown state never goes back to the pool.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import uvloop

from modelshield.guard import forwarding, server
from tests.support import guardstack
from tests.support.guardstack import KEY, KEYS_POLICY, PREDICT, call, guard_config, write_secret
from tests.support.loopscenarios import async_scenarios
from tests.support.rawupstream import (
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

# A client of the guard: what the model server receives.

PATH = b"/v1/models/fraud:predict"
HEAD = b"Host: guard\r\nX-Api-Key: " + KEY.encode() + b"\r\nContent-Type: application/json\r\n"
LENGTH = str(len(PREDICT)).encode()
CHUNKED = hex(len(PREDICT))[2:].encode() + b"\r\n" + PREDICT + b"\r\n0\r\n\r\n"


def _post_bytes(headers: bytes, body: bytes = PREDICT, framing: bytes | None = None) -> bytes:
    framing = b"Content-Length: " + LENGTH + b"\r\n" if framing is None else framing
    return b"POST " + PATH + b" HTTP/1.1\r\n" + HEAD + headers + framing + b"\r\n" + body


def _forwarded(port: int, extra: bytes = b"") -> bytes:
    """The one request the model server must see for PREDICT: byte for byte."""
    return (
        b"POST " + PATH + b" HTTP/1.1\r\nHost: 127.0.0.1:" + str(port).encode() + b"\r\n"
        b"Content-Type: application/json\r\n" + extra + b"X-Modelshield-Client: apikey:batch\r\n"
        b"Content-Length: " + LENGTH + b"\r\n\r\n" + PREDICT
    )


#: Each request's bytes, and what the model server must see (None: nothing, a 400).
CLIENT_ATTACKS: dict[str, tuple[bytes, bytes | None]] = {
    "Transfer-Encoding and Content-Length": (
        _post_bytes(b"Transfer-Encoding: chunked\r\n", CHUNKED),
        None,
    ),
    "two equal Content-Lengths": (_post_bytes(b"Content-Length: " + LENGTH + b"\r\n"), None),
    "two different Content-Lengths": (_post_bytes(b"Content-Length: 5\r\n"), None),
    "chunked, identity": (
        _post_bytes(b"", CHUNKED, b"Transfer-Encoding: chunked, identity\r\n"),
        None,
    ),
    "identity, chunked": (
        _post_bytes(b"", CHUNKED, b"Transfer-Encoding: identity, chunked\r\n"),
        b"",
    ),
    "a request hidden after the last chunk": (
        _post_bytes(
            b"",
            CHUNKED + b"GET /v1/models/fraud HTTP/1.1\r\nHost: x\r\n\r\n",
            b"Transfer-Encoding: chunked\r\n",
        ),
        b"",  # the hidden request is the guard's to judge (a 405 here), never forwarded
    ),
    "a request hidden in a body longer than its length": (
        _post_bytes(b"", PREDICT + b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"),
        b"",
    ),
    "a folded header": (_post_bytes(b"X-A: 1\r\n folded\r\n"), None),
    "NUL in a value": (_post_bytes(b"X-A: a\x00b\r\n"), None),
    "a bare CR in a value": (_post_bytes(b"X-A: a\rGET / HTTP/1.1\r\n"), None),
    "a bare LF in a value": (_post_bytes(b"X-A: a\nX-B: b\r\n"), None),
    "a space before the colon": (_post_bytes(b"Content-Length : 3\r\n"), None),
    "hop-by-hop names in other cases": (
        _post_bytes(
            b"KEEP-ALIVE: 5\r\nuPgRaDe: h2c\r\nte: trailers\r\nPROXY-Connection: x\r\n"
            b"TRAILER: X-A\r\nx-MODELSHIELD-client: admin\r\n"
        ),
        b"",
    ),
    "a second credential in another case": (_post_bytes(b"x-api-KEY: other\r\n"), None),
    # Headers the Connection header names are forwarded, as nginx does (see the docs): a
    # client must not be able to strip what the guard judged (Content-Type) or added.
    "Connection naming headers": (
        _post_bytes(b"Connection: keep-alive, X-Something, Content-Type\r\nX-Something: s\r\n"),
        b"X-Something: s\r\n",
    ),
    "Expect: 100-continue": (_post_bytes(b"Expect: 100-continue\r\n"), b""),
    "h2c upgrade with a request after the body": (
        _post_bytes(
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n",
            PREDICT + b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        None,  # no protocol is switched to: refused (aiohttp answered it as HTTP/1.1)
    ),
    "websocket upgrade with a request after the body": (
        _post_bytes(
            b"Connection: Upgrade\r\nUpgrade: websocket\r\n",
            PREDICT + b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        None,
    ),
}


@asynccontextmanager
async def recording_upstream() -> AsyncIterator[tuple[int, list[bytearray]]]:
    """A model server recording every byte per connection, answering OK to each request."""
    received: list[bytearray] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(bytearray())
        mine = received[-1]
        try:
            while True:
                request = await read_request(reader)
                mine += request
                writer.write(OK)
                await writer.drain()
        except asyncio.IncompleteReadError as error:
            mine += error.partial  # whatever came after the last whole request
        except ConnectionError:
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1], received
    finally:
        listener.close()


async def _send_raw(base: str, request: bytes) -> bytes:
    """Send bytes as they are, read until the guard closes or stays quiet for 0.5 s."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    received = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 0.5):
            received += chunk
    except (TimeoutError, ConnectionError):
        pass
    writer.close()
    return received


@pytest.mark.parametrize("attack", CLIENT_ATTACKS.values(), ids=CLIENT_ATTACKS.keys())
async def test_the_model_server_sees_one_request_exactly_as_the_guard_judged_it(
    attack: tuple[bytes, bytes | None], tmp_path: pathlib.Path
) -> None:
    request, extra = attack
    write_secret(tmp_path / "keys", "fraud-keys", {"batch": KEY})
    async with recording_upstream() as (port, received):
        settings = guard_config(f"http://127.0.0.1:{port}", tmp_path / "keys", KEYS_POLICY)
        pipeline = server.pipeline_from_config(settings)
        async with guardstack.serving_guard(pipeline) as guard:
            answer = await asyncio.wait_for(_send_raw(guard, request), HANG)
        await asyncio.sleep(0.05)  # the upstream's last reads
    if extra is None:
        assert answer.startswith(b"HTTP/1.0 400 ") or answer.startswith(b"HTTP/1.1 400 ")
        assert b"".join(received) == b""
    else:
        # (aiohttp's server answers an Expect: 100-continue itself before the body is read)
        assert answer.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n").startswith(b"HTTP/1.1 200 ")
        assert [bytes(r) for r in received] == [_forwarded(port, extra)]


# A model server answering out of turn: nothing reaches the next request.

SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nSTOLEN!"


async def _two_requests(
    first: bytes, method: str = "POST"
) -> tuple[forwarding.Answer | Exception, forwarding.Answer, Script]:
    """A first request answered with ``first`` (in one write), then a second request."""
    async with raw_server(answering(first, then_close=False, later=OK)) as (base, script):
        client = upstream_client(base)
        try:
            one: forwarding.Answer | Exception = await asyncio.wait_for(
                client.request(method, "/v1/models/m", [], b"" if method != "POST" else b"{}"),
                HANG,
            )
        except forwarding.UpstreamError as error:
            one = error
        await asyncio.sleep(0.05)
        two = await post_predict(client)
        await client.close()
    return one, two, script


SMUGGLING_ANSWERS = {
    "a second answer in the same write": (OK + SMUGGLED, "POST"),
    "a HEAD answer with a body": (SMUGGLED, "HEAD"),
    "a 204 with a length and a body": (
        b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n" + SMUGGLED,
        "POST",
    ),
    "a 304 with a length and a body": (
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n" + SMUGGLED,
        "GET",
    ),
    "a chunked answer with an answer after its last chunk": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" + SMUGGLED,
        "POST",
    ),
}


@pytest.mark.parametrize("case", SMUGGLING_ANSWERS.values(), ids=SMUGGLING_ANSWERS.keys())
async def test_bytes_after_an_answer_never_reach_the_next_request(case: tuple[bytes, str]) -> None:
    first, method = case
    one, two, script = await _two_requests(first, method)
    assert not isinstance(one, forwarding.Answer) or b"STOLEN" not in one.body
    assert (two.status, two.body) == (200, b"{}")
    assert len(script.connections) == 2  # the first connection was dropped


async def test_an_answer_before_the_request_was_written_whole_ends_its_connection() -> None:
    # The model server answers (keep-alive) after the head, before the body is read: the
    # rest of the body is still being written, and would be read as the next request.
    big = b"x" * (64 * 1024 * 1024)

    async def early(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script, index: int
    ) -> None:
        if index == 0:
            script.connections[index].append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.5)  # read nothing more for a while
            await reader.read()
            return
        while True:
            script.connections[index].append(await read_request(reader))
            writer.write(OK)
            await writer.drain()

    async with raw_server(early) as (base, script):
        client = upstream_client(base, timeout=4.0)
        first = await post_predict(client, big)
        second = await post_predict(client)
        await client.close()
    assert first.status == 413
    assert (second.status, second.body) == (200, b"{}")
    assert len(script.connections) == 2


# A model server answering without end: bounded by size, not only by time.


def streaming(head: bytes, piece: bytes) -> Handler:
    """Answer ``head``, then ``piece`` again and again as fast as the client reads."""

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script, index: int
    ) -> None:
        script.connections[index].append(await read_request(reader))
        writer.write(head)
        while True:
            writer.write(piece)
            await writer.drain()

    return handler


ENDLESS = {
    "an endless header value": (b"HTTP/1.1 200 OK\r\nX-A: ", b"a" * 65536),
    "endless headers": (b"HTTP/1.1 200 OK\r\n", b"X-A: " + b"a" * 100 + b"\r\n"),
    "endless interim answers": (b"", b"HTTP/1.1 100 Continue\r\n\r\n"),
    "endless trailers": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-T: ",
        b"t" * 65536,
    ),
    "an endless chunked body": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"10000\r\n" + b"b" * 65536 + b"\r\n",
    ),
    "an endless body ended by close": (b"HTTP/1.1 200 OK\r\n\r\n", b"c" * 65536),
    "an enormous Content-Length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n",
        b"d" * 65536,
    ),
}


@pytest.mark.parametrize("case", ENDLESS.values(), ids=ENDLESS.keys())
async def test_an_endless_answer_is_refused_by_size_before_the_timeout(
    case: tuple[bytes, bytes],
) -> None:
    head, piece = case
    async with raw_server(streaming(head, piece)) as (base, _):
        client = upstream_client(base, timeout=30.0, answer_limit=4 * 1024 * 1024)
        started = asyncio.get_running_loop().time()
        with pytest.raises(forwarding.BadAnswerError, match=r"larger than|longer than"):
            await post_predict(client)
        assert asyncio.get_running_loop().time() - started < HANG
        await client.close()


async def test_an_answer_at_one_byte_a_tick_still_ends_at_the_timeout() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100

    async def slowloris(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script, index: int
    ) -> None:
        script.connections[index].append(await read_request(reader))
        for byte in answer:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)

    async with raw_server(slowloris) as (base, _):
        client = upstream_client(base, timeout=1.0)
        started = asyncio.get_running_loop().time()
        with pytest.raises(forwarding.UpstreamTimeoutError):
            await post_predict(client)
        assert asyncio.get_running_loop().time() - started < 1.5
        await client.close()


async def test_the_guard_answers_502_for_an_answer_over_its_limit(tmp_path: pathlib.Path) -> None:
    # The guard holds answers whole (512Mi of memory in its Deployment): an answer larger
    # than its limit ends in 502 as soon as it passes the limit, not at the timeout.
    write_secret(tmp_path / "keys", "fraud-keys", {"batch": KEY})
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1099511627776\r\n\r\n"
    async with raw_server(streaming(head, b"0" * 65536)) as (base, _):
        settings = guard_config(base, tmp_path / "keys", KEYS_POLICY)
        pipeline = server.pipeline_from_config(settings)
        async with guardstack.serving_guard(pipeline) as guard:
            status, _, body = await asyncio.wait_for(
                call(guard, "/v1/models/fraud:predict", body=PREDICT, headers={"X-Api-Key": KEY}),
                HANG,
            )
    assert status == 502
    assert b"BadAnswerError" in body


# The pool: concurrency and cancellation.


async def test_concurrent_requests_each_get_their_own_answer_within_the_limit() -> None:
    async def echo(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script, index: int
    ) -> None:
        while True:
            request = await read_request(reader)
            script.connections[index].append(request)
            body = request.split(b"\r\n\r\n", 1)[1]
            await asyncio.sleep(0.001 * (len(body) % 7))  # answers in a shuffled order
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    async with raw_server(echo) as (base, script):
        client = upstream_client(base, timeout=4.0, limit=4)
        bodies = [b'{"n": %d}' % n for n in range(200)]
        answers = await asyncio.gather(*(post_predict(client, body) for body in bodies))
        await client.close()
    assert [answer.body for answer in answers] == bodies
    assert len(script.connections) <= 4
    assert len(script.requests) == 200


async def test_a_request_cancelled_while_waiting_closes_its_connection() -> None:
    async def first_never_answers(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script, index: int
    ) -> None:
        while True:
            script.connections[index].append(await read_request(reader))
            if index == 0:
                await reader.read()  # until the client closes: an answer now would be late
                return
            writer.write(OK)
            await writer.drain()

    async with raw_server(first_never_answers) as (base, script):
        client = upstream_client(base)
        task = asyncio.create_task(client.request("POST", "/v1/models/m:predict", [], b"{}"))
        while not script.requests:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after = await post_predict(client)
        await client.close()
    assert (after.status, after.body) == (200, b"{}")
    assert len(script.connections) == 2


async def test_a_request_cancelled_as_its_answer_came_closes_its_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The handler is cancelled (its client went away) in the same turn of the loop as the
    # answer completes: the answer is set, the task wakes up cancelled. The connection is
    # neither in the pool nor in use: it must be closed, not left open (a socket held until
    # the model server's idle timeout, for every such request).
    connections: list[forwarding._Connection] = []
    tasks: list[asyncio.Task[forwarding.Answer]] = []
    finish = forwarding._Connection._finish

    def finish_then_cancel(connection: forwarding._Connection) -> None:
        connections.append(connection)
        finish(connection)
        tasks[0].cancel()

    monkeypatch.setattr(forwarding._Connection, "_finish", finish_then_cancel)
    async with raw_server(answering(OK, then_close=False)) as (base, _):
        client = upstream_client(base)
        tasks.append(asyncio.create_task(client.request("POST", "/", [], b"{}")))
        with pytest.raises(asyncio.CancelledError):
            await tasks[0]
        await asyncio.sleep(0.05)
        assert connections[0].closed
        assert connections[0].transport is not None
        assert connections[0].transport.is_closing()
        await client.close()


# The model-server and pool tests above, each parameter of the parametrized ones.
UVLOOP_SCENARIOS = async_scenarios(
    globals(),
    {
        "test_bytes_after_an_answer_never_reach_the_next_request": SMUGGLING_ANSWERS,
        "test_an_endless_answer_is_refused_by_size_before_the_timeout": ENDLESS,
    },
)


@pytest.mark.parametrize("scenario", UVLOOP_SCENARIOS.values(), ids=UVLOOP_SCENARIOS.keys())
def test_on_uvloop(scenario: Callable[[], Awaitable[None]]) -> None:
    async def run() -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        await scenario()

    uvloop.run(run())


def test_a_request_cancelled_as_its_answer_came_closes_its_connection_on_uvloop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uvloop.run(test_a_request_cancelled_as_its_answer_came_closes_its_connection(monkeypatch))
