"""The guard's own HTTP/1.1 server (``httpserving``) on a real socket, byte by byte.

A recording handler stands in for the pipeline: what it was handed, how many ran at
once, which bodies could not be read. The guard itself over this server is tested in
test_proxy.py, test_forwarding_attacks.py (smuggling attempts through to a model server)
and test_guard_process_http.py (the real ``modelshield guard`` process on uvloop).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvloop

from modelshield.guard import httpserving
from tests.support.loopscenarios import async_scenarios
from tests.support.rawclient import WAIT, answered, answers, exchange, read_all

pytestmark = pytest.mark.integration


@dataclasses.dataclass
class Recorder:
    """What the handler saw."""

    handled: list[tuple[str, str, list[tuple[str, str]], bytes]] = dataclasses.field(
        default_factory=list
    )
    failures: list[str] = dataclasses.field(default_factory=list)
    running: int = 0
    most_at_once: int = 0
    started: list[str] = dataclasses.field(default_factory=list)


def recording_handler(recorder: Recorder) -> httpserving.Handler:
    """Answers 200 with what it read. ``/slow`` waits 0.2 s first, ``/refuse`` answers 401
    without reading the body, ``/big`` answers 1 MiB after 0.2 s."""

    async def handle(request: httpserving.Request) -> httpserving.Answer:
        recorder.started.append(request.target)
        recorder.running += 1
        recorder.most_at_once = max(recorder.most_at_once, recorder.running)
        try:
            if request.target == "/refuse":
                return httpserving.Answer(401, [], b"no", close=True)
            if request.target == "/slow":
                await asyncio.sleep(0.2)
            try:
                body = await request.body()
            except httpserving.BodyTooLargeError as error:
                recorder.failures.append(f"too large {error.size}")
                return httpserving.Answer(413, [], b"too large", close=True)
            except httpserving.ClientGoneError as error:
                recorder.failures.append(f"gone: {error}")
                return httpserving.error_answer(400, str(error))  # as the pipeline answers
            recorder.handled.append((request.method, request.target, request.headers, body))
            if request.target == "/big":
                await asyncio.sleep(0.2)
                return httpserving.Answer(200, [], b"x" * (1024 * 1024))
            seen = {"target": request.target, "body": body.decode(errors="replace")}
            return httpserving.Answer(200, [("Content-Type", "text/x")], json.dumps(seen).encode())
        finally:
            recorder.running -= 1

    return handle


@contextlib.asynccontextmanager
async def serving(**options: float) -> AsyncIterator[tuple[int, Recorder, httpserving.Server]]:
    """The server on 127.0.0.1 with the recording handler (a body limit of 100 bytes)."""
    recorder = Recorder()
    settings: dict[str, float] = {"body_limit": 100, **options}
    server = httpserving.Server(
        recording_handler(recorder),
        body_limit=int(settings.pop("body_limit")),
        **settings,  # type: ignore[arg-type]
    )
    port = await server.start("127.0.0.1", 0)
    try:
        yield port, recorder, server
    finally:
        await server.close()


def post(target: str = "/a", extra: bytes = b"", body: bytes = b"hello") -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: guard\r\n".encode()
        + extra
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def head(extra: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    return b"POST /a " + version + b"\r\nHost: guard\r\n" + extra + b"\r\n"


#: Requests that must get a well-formed 400 (or the status given), close the connection,
#: and never be handed over whole: smuggling attempts and malformed framing.
MALFORMED: dict[str, tuple[bytes, int]] = {
    "Content-Length and Transfer-Encoding": (
        head(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n") + b"5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "Transfer-Encoding and Content-Length": (
        head(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n") + b"5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "two different Content-Lengths": (
        head(b"Content-Length: 5\r\nContent-Length: 6\r\n") + b"hello!",
        400,
    ),
    "two equal Content-Lengths": (
        head(b"Content-Length: 5\r\nContent-Length: 5\r\n") + b"hello",
        400,
    ),
    "a Content-Length list": (head(b"Content-Length: 5, 5\r\n") + b"hello", 400),
    "a signed Content-Length": (head(b"Content-Length: +5\r\n") + b"hello", 400),
    "chunked, identity": (head(b"Transfer-Encoding: chunked, identity\r\n") + b"0\r\n\r\n", 400),
    "identity alone": (head(b"Transfer-Encoding: identity\r\n") + b"hello", 400),
    "xchunked": (head(b"Transfer-Encoding: xchunked\r\n") + b"0\r\n\r\n", 400),
    "chunked with a vertical tab": (
        head(b"Transfer-Encoding: \x0bchunked\r\n") + b"0\r\n\r\n",
        400,
    ),
    "a chunk size that is not hex": (head(b"Transfer-Encoding: chunked\r\n") + b"zz\r\n", 400),
    "a negative chunk size": (head(b"Transfer-Encoding: chunked\r\n") + b"-5\r\nhello\r\n", 400),
    "an overflowing chunk size": (
        head(b"Transfer-Encoding: chunked\r\n") + b"1" + b"0" * 20 + b"\r\nhello\r\n",
        400,
    ),
    "a chunk longer than its size": (
        head(b"Transfer-Encoding: chunked\r\n") + b"3\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "a chunk extension with a bare LF": (
        head(b"Transfer-Encoding: chunked\r\n") + b"5;a=b\nhello\r\n0\r\n\r\n",
        400,
    ),
    "a chunk extension with a control character": (
        head(b"Transfer-Encoding: chunked\r\n") + b'5;a="\x01"\r\nhello\r\n0\r\n\r\n',
        400,
    ),
    "a chunk size line ended by a bare LF": (
        head(b"Transfer-Encoding: chunked\r\n") + b"5\nhello\r\n0\r\n\r\n",
        400,
    ),
    "obs-fold": (head(b"X-A: a\r\n b\r\nContent-Length: 0\r\n"), 400),
    "obs-fold of Transfer-Encoding": (
        head(b"Transfer-Encoding: identity\r\n chunked\r\n") + b"0\r\n\r\n",
        400,
    ),
    "whitespace before the colon": (head(b"Content-Length : 5\r\n") + b"hello", 400),
    "a tab before the colon": (head(b"Transfer-Encoding\t: chunked\r\n") + b"0\r\n\r\n", 400),
    "a bare LF between headers": (head(b"X-A: a\nContent-Length: 0\r\n"), 400),
    "a bare LF after the request line": (
        b"POST /a HTTP/1.1\nHost: x\r\nContent-Length: 0\r\n\r\n",
        400,
    ),
    "a bare CR in a value": (head(b"X-A: a\rb\r\nContent-Length: 0\r\n"), 400),
    "a NUL in a value": (head(b"X-A: a\x00b\r\nContent-Length: 0\r\n"), 400),
    "a space in a header name": (head(b"X A: b\r\nContent-Length: 0\r\n"), 400),
    "no HTTP version (HTTP/0.9)": (b"GET /a\r\n\r\n", 505),
    "an unknown HTTP version": (b"GET /a HTTP/1.7\r\nHost: x\r\n\r\n", 400),
    "an unknown method": (b"FROB /a HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "a space in the target": (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "the HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    "CONNECT": (b"CONNECT model:443 HTTP/1.1\r\nHost: model:443\r\n\r\n", 400),
    "a websocket upgrade": (
        head(b"Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n") + b"hello",
        400,
    ),
    "an h2c upgrade": (
        head(b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AA\r\n"),
        400,
    ),
    "an Expect the server does not know": (head(b"Expect: 200-ok\r\nContent-Length: 0\r\n"), 417),
    "a target over the limit": (
        b"GET /" + b"a" * httpserving.MAX_TARGET + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        414,
    ),
    "a header over the limit": (head(b"X-A: " + b"a" * httpserving.MAX_FIELD + b"\r\n"), 431),
    "too many headers": (
        head(b"".join(b"X-%d: a\r\n" % i for i in range(httpserving.MAX_HEADERS + 1))),
        431,
    ),
    "a head over the limit": (
        head(b"".join(b"X-%d: %s\r\n" % (i, b"a" * 4000) for i in range(9))),
        431,
    ),
}


@pytest.mark.parametrize(("request_bytes", "status"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_requests_get_a_well_formed_refusal_and_the_connection_closes(
    request_bytes: bytes, status: int
) -> None:
    async with serving() as (port, recorder, _):
        # A valid request after it on the same connection must never be handled either.
        received, closed = await exchange(port, request_bytes + post("/after"))
    (answer,) = answers(received)
    assert answer.status == status, received
    assert answer.headers["connection"] == "close"
    assert answer.headers["content-type"].startswith("application/json")
    assert json.loads(answer.body)["error"]
    assert closed
    assert recorder.handled == []  # nothing was handed over whole


async def test_a_well_formed_chunk_extension_is_dropped_and_the_body_read() -> None:
    chunked = (
        head(b"Transfer-Encoding: chunked\r\n") + b'2;a=b;c="d e"\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n'
    )
    async with serving() as (port, recorder, _):
        received, _ = await exchange(port, chunked)
    assert [a.status for a in answers(received)] == [200]
    assert [body for *_, body in recorder.handled] == [b"hello"]


async def test_trailers_are_dropped_and_bounded() -> None:
    trailed = head(b"Transfer-Encoding: chunked\r\n") + (
        b"5\r\nhello\r\n0\r\nX-Modelshield-Client: admin\r\nAuthorization: Bearer x\r\n\r\n"
    )
    async with serving() as (port, recorder, _):
        received, _ = await exchange(port, trailed)
        assert [a.status for a in answers(received)] == [200]
        ((_, _, headers, body),) = recorder.handled
        assert (headers, body) == ([("Host", "guard"), ("Transfer-Encoding", "chunked")], b"hello")
        # A trailer that never ends is refused once its bytes pass the head's limit.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /slow HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\nX-Endless: "
        )
        for _ in range(50):
            writer.write(b"a" * 1024)
            await writer.drain()
            await asyncio.sleep(0.005)
            if answered(reader):
                break
        received, closed = await read_all(reader, WAIT)
        writer.close()
    assert closed
    assert [a.status for a in answers(received)] == [400]  # the handler's: body not whole
    assert recorder.failures == ["gone: the request's trailers or chunk extensions are too large"]


async def test_pipelined_requests_are_handled_one_at_a_time_in_order() -> None:
    pipelined = post("/slow", body=b"first") + post("/b", body=b"second") + post("/c", body=b"3")
    async with serving() as (port, recorder, _):
        received, closed = await exchange(port, pipelined)
    assert [json.loads(a.body)["target"] for a in answers(received)] == ["/slow", "/b", "/c"]
    assert recorder.most_at_once == 1
    assert not closed  # keep-alive


async def test_pipelined_requests_past_the_bound_are_refused_after_those_before() -> None:
    count = httpserving.MAX_PIPELINED + 5
    pipelined = b"".join(post(f"/{index}") for index in range(count))
    async with serving() as (port, recorder, _):
        received, closed = await exchange(port, post("/slow") + pipelined)
    found = answers(received)
    # The one handled, the ones waiting behind it, then the refusal of the next.
    assert [a.status for a in found] == [200] * (httpserving.MAX_PIPELINED + 1) + [400]
    assert closed
    assert recorder.most_at_once == 1


async def test_a_head_growing_in_pieces_is_refused_before_it_ends() -> None:
    async with serving() as (port, recorder, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /a HTTP/1.1\r\nHost: guard\r\nX-Endless: ")
        for _ in range(50):  # 50 KiB of one header value, never ended
            writer.write(b"a" * 1024)
            await writer.drain()
            await asyncio.sleep(0.005)
            if answered(reader):
                break
        received, closed = await read_all(reader, WAIT)
        writer.close()
    (answer,) = answers(received)
    assert (answer.status, closed) == (431, True)
    assert recorder.started == []


async def test_a_slow_head_is_ended_at_its_deadline_however_it_drips() -> None:
    async with serving(head_timeout=0.4, tick=0.05) as (port, recorder, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = asyncio.get_running_loop().time()
        closed = False
        for byte in b"POST /a HTTP/1.1\r\nHost: guard\r\nX-Slow: " + b"a" * 100:
            writer.write(bytes([byte]))  # one byte every 50 ms: never idle long
            await asyncio.sleep(0.05)
            if answered(reader):
                break
        received, closed = await read_all(reader, WAIT)
        took = asyncio.get_running_loop().time() - started
        writer.close()
    (answer,) = answers(received)
    assert (answer.status, closed) == (408, True)
    assert took < 2.0
    assert recorder.started == []


async def test_a_slow_body_is_ended_at_its_deadline() -> None:
    async with serving(body_timeout=0.4, tick=0.05) as (port, recorder, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /a HTTP/1.1\r\nHost: guard\r\nContent-Length: 50\r\n\r\nabc")
        for _ in range(60):
            writer.write(b"d")
            await asyncio.sleep(0.05)
            if reader.at_eof():
                break
        _, closed = await read_all(reader, WAIT)
        writer.close()
    assert closed
    assert recorder.handled == []
    assert [f[:4] for f in recorder.failures] == ["gone"]


async def test_an_idle_keep_alive_connection_is_closed() -> None:
    async with serving(idle_timeout=0.3, tick=0.05) as (port, _, server):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post())
        received, closed = await read_all(reader, WAIT)
        writer.close()
        await _settled(server)
    assert [a.status for a in answers(received)] == [200]
    assert closed


@pytest.mark.parametrize(
    ("extra", "version", "keeps"),
    [
        (b"", b"HTTP/1.1", True),
        (b"Connection: close\r\n", b"HTTP/1.1", False),
        (b"", b"HTTP/1.0", False),
        (b"Connection: keep-alive\r\n", b"HTTP/1.0", True),
    ],
)
async def test_keep_alive_follows_the_version_and_connection_header(
    extra: bytes, version: bytes, keeps: bool
) -> None:
    one = head(extra + b"Content-Length: 5\r\n", version) + b"hello"
    async with serving() as (port, recorder, _):
        received, closed = await exchange(port, one + one)
    found = answers(received)
    assert [a.status for a in found] == ([200, 200] if keeps else [200])
    assert closed is not keeps
    assert found[0].headers.get("connection") == (
        "close" if not keeps else ("keep-alive" if version == b"HTTP/1.0" else None)
    )
    assert len(recorder.handled) == len(found)


async def test_a_client_leaving_mid_body_ends_its_request_and_leaves_no_task() -> None:
    async with serving() as (port, recorder, server):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /a HTTP/1.1\r\nHost: guard\r\nContent-Length: 50\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.transport.abort()
        await _settled(server)
        assert [f[:4] for f in recorder.failures] == ["gone"]
        # The server goes on serving.
        received, _ = await exchange(port, post())
        assert [a.status for a in answers(received)] == [200]
        await _settled(server)


async def test_a_client_leaving_mid_answer_costs_nothing_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    async with serving() as (port, recorder, server):
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(post("/big"))
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.transport.abort()  # gone before the answer is written
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/big"))
        await reader.readexactly(1000)  # the answer started
        writer.transport.abort()  # gone mid-answer
        await asyncio.sleep(0.4)
        received, _ = await exchange(port, post())
        assert [a.status for a in answers(received)] == [200]
        await _settled(server)
    assert len(recorder.handled) == 5
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_client_that_does_not_read_its_answers_gets_no_more_handled() -> None:
    async with serving(idle_timeout=1.0, tick=0.05) as (port, recorder, server):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.set_write_buffer_limits(high=0)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for _ in range(40):  # 40 answers of 1 MiB asked for, none read
            writer.write(post("/big"))
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.8)
        (connection,) = server.connections
        buffered = connection._transport.get_write_buffer_size()  # type: ignore[union-attr]
        handled = len(recorder.handled)
        # The idle deadline then ends the connection.
        await asyncio.sleep(2.0)
        assert not server.connections
        writer.close()
    assert handled <= 4, handled
    assert buffered <= 4 * 1024 * 1024


async def test_pipelined_requests_before_the_clients_eof_are_all_answered() -> None:
    async with serving() as (port, _, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/slow") + post("/b") + post("/c"))
        writer.write_eof()
        received, closed = await read_all(reader, WAIT)
        writer.close()
    assert [json.loads(a.body)["target"] for a in answers(received)] == ["/slow", "/b", "/c"]
    assert closed


async def _settled(server: httpserving.Server) -> None:
    """Wait until no connection and no task but this test's is left."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while asyncio.get_running_loop().time() < deadline:
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if not others and not server.connections:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"left: {others}, {server.connections}")


async def test_connections_past_the_bound_are_answered_503_and_closed() -> None:
    async with serving(max_connections=2) as (port, _, _server):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.05)
        received, closed = await exchange(port, post())
        assert [a.status for a in answers(received)] == [503]
        assert closed
        held[0][1].close()
        await asyncio.sleep(0.1)
        received, _ = await exchange(port, post())
        assert [a.status for a in answers(received)] == [200]
        for _, writer in held[1:]:
            writer.close()


async def test_expect_100_continue_is_answered_when_the_body_is_asked_for() -> None:
    async with serving() as (port, recorder, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head(b"Expect: 100-continue\r\nContent-Length: 5\r\n"))
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        received, _ = await read_all(reader, 0.5)
        writer.close()
        assert [a.status for a in answers(received)] == [200]
        # Refused on its head: no 100 Continue, the body is never waited for.
        refused = (
            b"POST /refuse HTTP/1.1\r\nHost: g\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        received, closed = await exchange(port, refused)
        assert b"100 Continue" not in received
        assert ([a.status for a in answers(received)], closed) == ([401], True)
    assert [body for *_, body in recorder.handled] == [b"hello"]


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent() -> None:
    async with serving() as (port, recorder, _):
        received, closed = await exchange(port, head(b"Content-Length: 1000\r\n"))
    assert ([a.status for a in answers(received)], closed) == ([413], True)
    assert recorder.failures == ["too large 1000"]


async def test_a_chunked_body_is_counted_as_it_comes() -> None:
    async with serving() as (port, recorder, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head(b"Transfer-Encoding: chunked\r\n"))
        received = b""
        for _ in range(10):  # 60 bytes a chunk: past the limit of 100 at the second
            writer.write(b"3c\r\n" + b"a" * 60 + b"\r\n")
            await asyncio.sleep(0.02)
            if answered(reader):
                break
        received, closed = await read_all(reader, WAIT)
        writer.close()
    assert ([a.status for a in answers(received)], closed) == ([413], True)
    assert recorder.failures == ["too large 120"]


async def test_an_absolute_form_target_is_handed_over_as_sent() -> None:
    absolute = b"POST http://model/v1/models/fraud:predict HTTP/1.1\r\nHost: g\r\nContent-Length: 0\r\n\r\n"
    async with serving() as (port, recorder, _):
        await exchange(port, absolute + b"OPTIONS * HTTP/1.1\r\nHost: g\r\n\r\n")
    assert [target for _, target, *_ in recorder.handled] == [
        "http://model/v1/models/fraud:predict",
        "*",
    ]


async def test_headers_are_handed_over_as_received() -> None:
    request = head(b"X-A: 1\r\nx-a: 2\r\nX-Odd: caf\xc3\xa9 \xff\r\nContent-Length: 0\r\n")
    async with serving() as (port, recorder, _):
        await exchange(port, request)
    ((_, _, headers, _),) = recorder.handled
    assert headers == [
        ("Host", "guard"),
        ("X-A", "1"),
        ("x-a", "2"),
        ("X-Odd", "caf\u00e9 \udcff"),
        ("Content-Length", "0"),
    ]


async def test_an_answer_header_with_a_line_break_is_not_sent() -> None:
    async def handle(request: httpserving.Request) -> httpserving.Answer:
        return httpserving.Answer(200, [("X-A", "a\r\nSet-Cookie: x=1")], b"ok")

    server = httpserving.Server(handle, body_limit=100)
    port = await server.start("127.0.0.1", 0)
    try:
        received, _ = await exchange(port, post())
    finally:
        await server.close()
    assert b"Set-Cookie" not in received
    assert [a.status for a in answers(received)] == [502]


#: The tests without arguments again on uvloop, which ``modelshield guard`` runs (the
#: malformed requests are sent to the real guard process on uvloop in
#: test_guard_process_http.py).
UVLOOP_SCENARIOS = async_scenarios(globals(), {})


@pytest.mark.parametrize("scenario", UVLOOP_SCENARIOS.values(), ids=UVLOOP_SCENARIOS.keys())
def test_on_uvloop(scenario: Callable[[], Awaitable[None]]) -> None:
    async def run() -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        await scenario()

    uvloop.run(run())
