"""An attacker's review of the guard's own HTTP/1.1 server (issue 14), second round, end to
end: raw bytes on a real socket to the guard in front of a model server (a real one, or a
raw one sending exactly the bytes an attack needs).

What round one (test_httpserving_attacks.py) did not try: hostile framing's cost (bounded
by the head and field limits), the model server's answers as they are relayed back
(interim answers, a protocol switch, ambiguous framing, bytes after an answer, header
injection), ``Connection`` naming the headers the guard reads or writes, request-line
edge cases, and framing under an ``Audit`` policy (which concerns the policies' checks,
never the framing). Each attack here is one the guard holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import pathlib
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelshield.guard import server
from tests.support import guardstack, modelserver
from tests.support.guardstack import KEY, KEYS_POLICY, PREDICT, keys_dir, trained
from tests.support.rawclient import WAIT, answers, exchange, read_all
from tests.support.rawupstream import OK, Handler, Script, answering, raw_server, read_request

__all__ = ["keys_dir", "trained"]

pytestmark = pytest.mark.integration

KEY_HEADER = b"X-Api-Key: " + KEY.encode() + b"\r\n"
PREDICT_PATH = b"/v1/models/fraud:predict"
AUDIT_POLICY: dict[str, Any] = {**copy.deepcopy(KEYS_POLICY), "enforcement": "Audit"}


def predict(extra: bytes = b"", *, body: bytes = PREDICT, framing: bytes | None = None) -> bytes:
    """An allowed predict request with these extra header lines (and this framing)."""
    framing = b"Content-Length: %d\r\n" % len(body) if framing is None else framing
    return (
        b"POST " + PREDICT_PATH + b" HTTP/1.1\r\nHost: guard\r\n"
        b"Content-Type: application/json\r\n" + KEY_HEADER + extra + framing + b"\r\n" + body
    )


def guarded(
    trained: Any, keys_dir: pathlib.Path, policy: dict[str, Any] = KEYS_POLICY
) -> contextlib.AbstractAsyncContextManager[tuple[int, modelserver.ModelServer]]:
    """The guard's own server with this policy in front of a real model server."""
    return guardstack.guarded_model(trained, keys_dir, "own", policy)


@contextlib.asynccontextmanager
async def guarding_raw(
    keys_dir: pathlib.Path, handler: Handler, **extra: Any
) -> AsyncIterator[tuple[int, Script]]:
    """The guard's own server in front of a raw model server scripted by ``handler``."""
    async with raw_server(handler) as (upstream, script):
        settings = guardstack.guard_config(upstream, keys_dir, KEYS_POLICY, **extra)
        pipeline = server.pipeline_from_config(settings)
        async with guardstack.serving_guard(pipeline, "own") as url:
            yield int(url.rsplit(":", 1)[1]), script


# (2) The model server's answers, relayed back.

SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nSTOLEN!"

#: An answer from the model server, and the status the client must get for it.
UPSTREAM_ANSWERS: dict[str, tuple[bytes, int]] = {
    "100 Continue, then the answer": (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, 200),
    "two interim answers with headers": (
        b"HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
        + OK,
        200,
    ),
    "101 Switching Protocols, then bytes": (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        + SMUGGLED,
        502,
    ),
    "Content-Length and Transfer-Encoding": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n",
        502,
    ),
    "two different Content-Lengths": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\n{}",
        502,
    ),
    "a Content-Length shorter than the body (another answer after it)": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}" + SMUGGLED,
        200,
    ),
    "a header with a bare LF (a header of its own after it)": (
        b"HTTP/1.1 200 OK\r\nX-A: a\nSet-Cookie: s=1\r\nContent-Length: 2\r\n\r\n{}",
        502,
    ),
    "a header with a bare CR": (
        b"HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: s=1\r\nContent-Length: 2\r\n\r\n{}",
        502,
    ),
    "a folded header": (
        b"HTTP/1.1 200 OK\r\nX-A: a\r\n Set-Cookie: s=1\r\nContent-Length: 2\r\n\r\n{}",
        502,
    ),
    "a NUL in a header": (
        b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
        502,
    ),
    "a header that is not UTF-8": (
        b"HTTP/1.1 200 OK\r\nX-A: \xff\xfe\r\nContent-Length: 2\r\n\r\n{}",
        502,
    ),
    "a status line with a bare LF": (
        b"HTTP/1.1 200 OK\nSet-Cookie: s=1\r\nContent-Length: 2\r\n\r\n{}",
        502,
    ),
}


def _first_then_ok(first: bytes) -> Handler:
    """The first request of all is answered ``first``; every other one OK."""

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script, index: int
    ) -> None:
        while True:
            script.connections[index].append(await read_request(reader))
            writer.write(first if len(script.requests) == 1 else OK)
            await writer.drain()

    return handler


@pytest.mark.parametrize("case", UPSTREAM_ANSWERS.values(), ids=UPSTREAM_ANSWERS.keys())
async def test_an_answer_the_model_server_frames_badly_never_reaches_a_client_but_as_one_answer(
    keys_dir: pathlib.Path, case: tuple[bytes, int]
) -> None:
    # Then a second client on the pool: it gets the next connection's answer, never
    # the bytes the first one left (STOLEN!).
    first, status = case
    async with guarding_raw(keys_dir, _first_then_ok(first)) as (port, script):
        one, _ = await exchange(port, predict())
        await asyncio.sleep(0.05)
        two, _ = await exchange(port, predict())
    (answer,) = answers(one)
    assert answer.status == status, one
    assert b"STOLEN" not in one
    assert b"set-cookie" not in one.lower()
    if status == 200:
        assert answer.body == b"{}"
    (second,) = answers(two)
    assert (second.status, second.body) == (200, b"{}"), two
    if status != 200 or SMUGGLED in first:
        assert len(script.connections) == 2  # the first connection was never reused


def _late_bytes(delay: float) -> Handler:
    """Answers the first connection's request, then sends another answer ``delay`` later
    (a model server writing past its answer); every later connection answers OK."""

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script, index: int
    ) -> None:
        if index == 0:
            script.connections[index].append(await read_request(reader))
            writer.write(OK)
            await writer.drain()
            await asyncio.sleep(delay)
            writer.write(SMUGGLED)
            await writer.drain()
        while True:
            script.connections[index].append(await read_request(reader))
            writer.write(OK)
            await writer.drain()

    return handler


async def test_bytes_the_model_server_sends_after_an_answer_never_reach_the_next_client(
    keys_dir: pathlib.Path,
) -> None:
    # The first connection idles in the pool when the late answer comes: it is dropped, and
    # the next client's request goes out on a new connection.
    async with guarding_raw(keys_dir, _late_bytes(0.1)) as (port, script):
        one, _ = await exchange(port, predict(), quiet=0.3)
        two, _ = await exchange(port, predict())
    assert [(a.status, a.body) for a in answers(one)] == [(200, b"{}")]
    assert [(a.status, a.body) for a in answers(two)] == [(200, b"{}")]
    assert [len(requests) for requests in script.connections] == [1, 1]


async def test_an_answer_longer_than_its_length_ends_at_the_timeout_and_the_pool_stays_clean(
    keys_dir: pathlib.Path,
) -> None:
    # Content-Length 100 with 2 bytes: the guard waits (504 at its timeout); the next client
    # gets a new connection's answer, never the first one's rest.
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}"
    async with guarding_raw(
        keys_dir, answering(short, then_close=False, later=OK), upstreamTimeoutSeconds=0.5
    ) as (port, script):
        one, _ = await exchange(port, predict(), quiet=1.5)
        two, _ = await exchange(port, predict())
    assert [a.status for a in answers(one)] == [504]
    assert [(a.status, a.body) for a in answers(two)] == [(200, b"{}")]
    assert len(script.connections) == 2


async def test_hop_by_hop_answer_headers_are_not_relayed_and_the_guard_frames_the_answer(
    keys_dir: pathlib.Path,
) -> None:
    # A chunked answer naming headers in Connection, with Keep-Alive, Upgrade, Trailer and
    # a trailer: the client gets one answer framed by the guard's own Content-Length.
    chunked = (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Named\r\nKeep-Alive: timeout=5\r\n"
        b"Upgrade: h2c\r\nTrailer: X-T\r\nX-Named: n\r\nProxy-Authenticate: Basic\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n1\r\n}\r\n0\r\nX-T: t\r\n\r\n"
    )
    async with guarding_raw(keys_dir, answering(chunked, then_close=False)) as (port, _):
        received, _ = await exchange(port, predict())
    (answer,) = answers(received)
    assert (answer.status, answer.body) == (200, b"{}")
    assert answer.headers["content-length"] == "2"
    for name in ("transfer-encoding", "keep-alive", "upgrade", "trailer", "x-t"):
        assert name not in answer.headers, received
    assert "proxy-authenticate" not in answer.headers
    assert "connection" not in answer.headers


async def test_a_request_the_guard_refuses_never_reaches_a_raw_model_server(
    keys_dir: pathlib.Path,
) -> None:
    # HEAD is no route (405): the model server is never asked, so a HEAD answer (no body
    # whatever its length says) is never relayed.
    head = predict().replace(b"POST ", b"HEAD ", 1)
    async with guarding_raw(keys_dir, answering(OK, then_close=False)) as (port, script):
        received, closed = await exchange(port, head)
    assert [a.status for a in answers(received)] == [405]
    assert closed
    assert script.requests == []


# (3) Connection naming the headers the guard reads or writes.

CONNECTION_NAMING = {
    "the credential and the guard's header": b"Connection: X-Api-Key, X-Modelshield-Client\r\n",
    "what the guard judged": b"Connection: keep-alive, Content-Type, Content-Length, Host\r\n",
    "close and the credential": b"Connection: close, X-Api-Key\r\n",
}


@pytest.mark.parametrize("line", CONNECTION_NAMING.values(), ids=CONNECTION_NAMING.keys())
async def test_connection_naming_guarded_headers_drops_nothing_the_guard_needs(
    trained: Any, keys_dir: pathlib.Path, line: bytes
) -> None:
    # The guard never forwards Connection, so nothing after it can drop what the guard
    # judged or added; the credential is still read (and not forwarded).
    async with guarded(trained, keys_dir) as (port, model):
        received, _ = await exchange(port, predict(line))
    assert [a.status for a in answers(received)] == [200], received
    (seen,) = model.seen
    assert seen.headers["X-Modelshield-Client"] == "apikey:batch"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.body == PREDICT
    assert "Connection" not in seen.headers or seen.headers["Connection"] == "keep-alive"
    assert "X-Api-Key" not in seen.headers


# (4) Request lines.

REQUEST_LINES = {
    "HTTP/0.9": b"GET /v1/models/fraud\r\n\r\n",
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "HTTP/2.0 request line": predict().replace(b"HTTP/1.1", b"HTTP/2.0", 1),
    "HTTP/1.2": predict().replace(b"HTTP/1.1", b"HTTP/1.2", 1),
    "HTTP/3.0": predict().replace(b"HTTP/1.1", b"HTTP/3.0", 1),
    "HTTP/01.1": predict().replace(b"HTTP/1.1", b"HTTP/01.1", 1),
    "HTTP/1.1 in lower case": predict().replace(b"HTTP/1.1", b"http/1.1", 1),
    "a space in the target": predict().replace(PREDICT_PATH, b"/v1/models/fraud :predict", 1),
    "a tab in the target": predict().replace(PREDICT_PATH, b"/v1/models/fraud\t:predict", 1),
    "a tab after the method": predict().replace(b"POST ", b"POST\t", 1),
    "a space after the version": predict().replace(b"HTTP/1.1", b"HTTP/1.1 ", 1),
    "a bare CR in the target": predict().replace(PREDICT_PATH, b"/v1/models/fraud\r:predict", 1),
    "a NUL in the target": predict().replace(PREDICT_PATH, b"/v1/models/fraud\x00:predict", 1),
    "a DEL in the target": predict().replace(PREDICT_PATH, b"/v1/models/fraud\x7f:predict", 1),
    "a very long method": predict().replace(b"POST", b"P" * 10_000, 1),
    "an unknown method": predict().replace(b"POST", b"FOO", 1),
    "a leading empty line": b"\r\n" + predict().replace(PREDICT_PATH, b"/v1/models/other", 1),
    "no target": predict().replace(b" " + PREDICT_PATH, b"", 1),
}


@pytest.mark.parametrize("line", REQUEST_LINES.values(), ids=REQUEST_LINES.keys())
async def test_request_line_edge_cases_are_refused_and_never_reach_the_model(
    trained: Any, keys_dir: pathlib.Path, line: bytes
) -> None:
    async with guarded(trained, keys_dir) as (port, model):
        received, closed = await exchange(port, line)
    (answer,) = answers(received)
    assert 400 <= answer.status < 600, received
    assert closed
    assert model.seen == []


async def test_two_spaces_after_the_method_are_read_as_one_and_forwarded_as_judged(
    trained: Any, keys_dir: pathlib.Path
) -> None:
    # llhttp reads the request line on word boundaries (RFC 9112 3: a recipient MAY); the
    # guard sends the model its own request line, so both read the same target.
    async with guarded(trained, keys_dir) as (port, model):
        received, _ = await exchange(port, predict().replace(b"POST ", b"POST  ", 1))
    assert [a.status for a in answers(received)] == [200]
    assert [(seen.method, seen.path, seen.body) for seen in model.seen] == [
        ("POST", PREDICT_PATH.decode(), PREDICT)
    ]


# (5) An Audit policy: framing is never the policy's to waive.

FRAMING_ERRORS = {
    "Content-Length and Transfer-Encoding": predict(
        b"Transfer-Encoding: chunked\r\n", body=b"0\r\n\r\n"
    ),
    "two Content-Lengths": predict(b"Content-Length: 3\r\n"),
    "chunked, identity": predict(
        body=b"%x\r\n%s\r\n0\r\n\r\n" % (len(PREDICT), PREDICT),
        framing=b"Transfer-Encoding: chunked, identity\r\n",
    ),
    "a bad chunk size": predict(
        body=b"zz\r\n" + PREDICT + b"\r\n0\r\n\r\n", framing=b"Transfer-Encoding: chunked\r\n"
    ),
    "a folded header": predict(b"X-A: 1\r\n folded\r\n"),
    "a space before the colon": predict(b"X-A : 1\r\n"),
    "a bare LF": predict(b"X-A: 1\nX-B: 2\r\n"),
    "a header over the field limit": predict(b"X-A: " + b"a" * 9000 + b"\r\n"),
    "a trailer over the field limit": predict(
        body=b"%x\r\n%s\r\n0\r\nX-T: %s\r\n\r\n" % (len(PREDICT), PREDICT, b"t" * 9000),
        framing=b"Transfer-Encoding: chunked\r\n",
    ),
    "a protocol upgrade": predict(b"Connection: Upgrade\r\nUpgrade: websocket\r\n"),
    "HTTP/1.2": predict().replace(b"HTTP/1.1", b"HTTP/1.2", 1),
    "Expect other than 100-continue": predict(b"Expect: 200-ok\r\n"),
    "a compressed body": predict(b"Content-Encoding: gzip\r\n"),
}


@pytest.mark.parametrize("request_bytes", FRAMING_ERRORS.values(), ids=FRAMING_ERRORS.keys())
async def test_under_an_audit_policy_framing_errors_are_still_refused(
    trained: Any, keys_dir: pathlib.Path, request_bytes: bytes
) -> None:
    async with guarded(trained, keys_dir, AUDIT_POLICY) as (port, model):
        received, closed = await exchange(port, request_bytes)
    (answer,) = answers(received)
    assert 400 <= answer.status < 500, received
    assert closed
    assert model.seen == []


async def test_under_an_audit_policy_an_allowed_request_is_still_forwarded(
    trained: Any, keys_dir: pathlib.Path
) -> None:
    # The baseline the refusals above are measured against: the same guard forwards.
    async with guarded(trained, keys_dir, AUDIT_POLICY) as (port, model):
        received, _ = await exchange(port, predict())
    assert [a.status for a in answers(received)] == [200]
    assert [seen.body for seen in model.seen] == [PREDICT]


# (1) Hostile framing is bounded by the head's limits.

HOSTILE_HEADS = {
    "10,000 tiny headers": b"".join(b"X%d:v\r\n" % i for i in range(10_000)),
    "101 headers": b"".join(b"X%d: v\r\n" % i for i in range(101)),
    "a head over 32 KiB in headers under the field limit": b"".join(
        b"X-%d: %s\r\n" % (i, b"v" * 8000) for i in range(5)
    ),
    "one header over the field limit": b"X-A: " + b"a" * 8190 + b"\r\n",
}


@pytest.mark.parametrize("lines", HOSTILE_HEADS.values(), ids=HOSTILE_HEADS.keys())
async def test_heads_past_the_limits_are_refused_431(
    trained: Any, keys_dir: pathlib.Path, lines: bytes
) -> None:
    async with guarded(trained, keys_dir) as (port, model):
        received, closed = await exchange(port, predict(lines))
    (answer,) = answers(received)
    assert (answer.status, closed) == (431, True), received
    assert model.seen == []


async def test_a_head_just_under_every_limit_is_forwarded_whole(
    trained: Any, keys_dir: pathlib.Path
) -> None:
    # 90 headers of 340 bytes (31 KiB with the rest of the head): under MAX_HEADERS,
    # MAX_FIELD and MAX_HEAD, so forwarded, every one of them.
    lines = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 340) for i in range(90))
    async with guarded(trained, keys_dir) as (port, model):
        received, _ = await exchange(port, predict(lines))
    assert [a.status for a in answers(received)] == [200], received[:200]
    (seen,) = model.seen
    assert [name for name in seen.headers if name.startswith("X-") and name[2:].isdigit()] == [
        f"X-{i}" for i in range(90)
    ]


# Found by this review round and fixed after it (each failed before its fix): memory per
# byte of a body in tiny chunks, a head over the limit in its first read, a legitimate head
# in many reads, a body over the read limit under an Audit policy (a 500), the model server
# forging the guard's own answer headers.

LIMIT = KEYS_POLICY["api"]["requests"]["maxBodyBytes"]  # 64 KiB


async def _held_while_unfinished(port: int, chunk_size: int) -> int:
    """Bytes the process allocates while the guard holds an unfinished chunked body of
    nearly the limit sent in chunks of ``chunk_size`` bytes."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    count = (LIMIT - 1024) // chunk_size
    unit = b"%x\r\n%s\r\n" % (chunk_size, b" " * chunk_size)
    head = predict(body=b"", framing=b"Transfer-Encoding: chunked\r\n")
    writer.write(head)
    await writer.drain()
    await asyncio.sleep(0.2)
    before = tracemalloc.get_traced_memory()[0]
    for start in range(0, count, 4096):
        writer.write(unit * min(4096, count - start))
        await writer.drain()
    await asyncio.sleep(0.3)  # read by the guard, never finished (no last chunk)
    held = tracemalloc.get_traced_memory()[0] - before
    writer.transport.abort()
    await asyncio.sleep(0.1)
    return held


async def test_a_body_in_tiny_chunks_costs_no_more_memory_than_the_body(
    trained: Any, keys_dir: pathlib.Path
) -> None:
    # Each on_body piece is kept as its own bytes object in a list: 2-byte chunks cost
    # ~56 bytes of memory per 2 bytes of body (~28x; 1-byte pieces are CPython's cached
    # singletons, 8 bytes of list each). aiohttp's server joins them as they come.
    tracemalloc.start()
    try:
        async with guarded(trained, keys_dir) as (port, _):
            whole = await _held_while_unfinished(port, LIMIT - 1024)
            tiny = await _held_while_unfinished(port, 2)
    finally:
        tracemalloc.stop()
    assert whole < 4 * LIMIT, whole
    assert tiny < 4 * LIMIT, (tiny, whole)


async def test_under_an_audit_policy_a_body_over_the_read_limit_is_refused_413(
    trained: Any, keys_dir: pathlib.Path
) -> None:
    # With no enforced policy the read limit is 64 MiB; a body over it cannot be forwarded.
    # Pipeline._handle asserts that the too-large verdict has an enforced refusal: under
    # Audit it has none (only an audited one), so the handler fails (500 and a stack trace
    # logged per request) instead of the 413 the Enforce guard answers.
    declared = 64 * 1024 * 1024 + 1
    request = predict(body=b"", framing=b"Content-Length: %d\r\n" % declared)
    async with guarded(trained, keys_dir, AUDIT_POLICY) as (port, model):
        received, closed = await exchange(port, request)
    (answer,) = answers(received)
    assert (answer.status, closed) == (413, True), received
    assert model.seen == []


async def test_the_model_server_cannot_forge_the_guards_own_answer_headers(
    keys_dir: pathlib.Path,
) -> None:
    # The guard writes X-Modelshield-Audit (audited refusals) and X-Modelshield-Outlier
    # (flags) on answers; the model server's answer headers of those names are relayed
    # beside (or instead of) the guard's, so a client reads the model's word as the
    # guard's ("nothing audited", or a forged verdict).
    forged = (
        b"HTTP/1.1 200 OK\r\nX-Modelshield-Audit: none\r\nX-Modelshield-Outlier: none\r\n"
        b"x-modelshield-client: admin\r\nContent-Length: 2\r\n\r\n{}"
    )
    async with guarding_raw(keys_dir, answering(forged, then_close=False)) as (port, _):
        received, _ = await exchange(port, predict())
    (answer,) = answers(received)
    assert answer.status == 200
    assert not [name for name in answer.headers if name.startswith("x-modelshield-")], received


@pytest.mark.parametrize("size", [40_000, 100_000])
async def test_a_head_over_the_limit_in_its_first_read_is_refused_at_once(
    trained: Any, keys_dir: pathlib.Path, size: int
) -> None:
    # Before the fix data_received counted a head's unfinished bytes only for reads after
    # the one it began in (`if head_before`), and _head_size counts finished headers: a head that
    # opens and stays inside one header within one read (up to the transport's 256 KiB
    # read) is held whole until the 10 s head deadline, never refused 431. Measured: 1,000
    # connections each parking 200 KB cost +248 MiB RSS (2,000 would OOM the 512Mi guard,
    # far under MAX_CONNECTIONS); with 30 KB heads (bounded) 10,000 connections cost +328.
    async with guarded(trained, keys_dir) as (port, model):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1/models/fraud HTTP/1.1\r\nHost: g\r\nX-A: " + b"a" * size)
        await writer.drain()
        received, closed = await read_all(reader, WAIT)
        writer.close()
    (answer,) = answers(received)
    assert (answer.status, closed) == (431, True), received
    assert model.seen == []


async def test_a_head_under_the_limit_sent_in_pieces_is_not_refused(
    trained: Any, keys_dir: pathlib.Path
) -> None:
    # The other side of the same count: bytes of reads inside a head are added to
    # _unparsed_head and never taken off when a header ends, while _head_size counts the
    # finished headers again. A 20 KiB head (under MAX_HEAD, every field under MAX_FIELD)
    # arriving in 1,000-byte reads (a slow link) is counted ~2x and refused 431.
    lines = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 990) for i in range(20))
    request = predict(lines)
    async with guarded(trained, keys_dir) as (port, model):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for start in range(0, len(request), 1000):
            writer.write(request[start : start + 1000])
            await writer.drain()
            await asyncio.sleep(0.01)
        received, _ = await read_all(reader, 1.0)
        writer.close()
    assert [a.status for a in answers(received)] == [200], received[:300]
    assert [seen.body for seen in model.seen] == [PREDICT]
