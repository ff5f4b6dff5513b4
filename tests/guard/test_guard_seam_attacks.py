"""An attacker's review of the guard (issue 14), round three: the seam between the guard's
own HTTP/1.1 server's request and the pipeline's judging. What the guard judged must be
what the model server reads: media type, encoding, credential, the identity it vouches
for, the route; an Audit policy's finding goes on the answer only; the audit line names
the client, decision and status, never the payload or a credential. End to end: raw
bytes to a real guard (its own server, and aiohttp's for comparison) in front of a real
model server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import pathlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelshield.guard import auditing, httpserving, server
from tests.support import guardstack
from tests.support.guardstack import KEY, KEYS_POLICY, PREDICT, keys_dir, trained
from tests.support.rawclient import answers, exchange

__all__ = ["keys_dir", "trained"]

pytestmark = pytest.mark.integration

SERVERS = ["own", "aiohttp"]
KEY_HEADER = b"X-Api-Key: " + KEY.encode() + b"\r\n"
PREDICT_LINE = b"POST /v1/models/fraud:predict HTTP/1.1\r\n"


def request(
    head: bytes, *, line: bytes = PREDICT_LINE, body: bytes = PREDICT, key: bool = True
) -> bytes:
    """A request: this line, these header lines (no Content-Type unless in them)."""
    credential = KEY_HEADER if key else b""
    return (
        line
        + b"Host: guard\r\n"
        + credential
        + head
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


guarded = guardstack.guarded_model


async def one_answer(port: int, data: bytes) -> Any:
    received, _ = await exchange(port, data)
    found = answers(received)
    assert len(found) == 1, received
    return found[0]


# -- Content-Type: the guard must never judge one media type while the model reads another.

CONTENT_TYPE_TWICE = {
    # Joined (the guard's own server before 6b83225's review), the guard read
    # "application/json; charset=utf-8, text/plain" as JSON (parameters cut at ';') while
    # a server taking the last header reads text/plain.
    "json with a parameter, then another": (
        b"Content-Type: application/json; charset=utf-8\r\nContent-Type: text/plain\r\n"
    ),
    "json, then another in lower case": (
        b"Content-Type: application/json; x=1\r\n"
        b"content-type: application/x-www-form-urlencoded\r\n"
    ),
}


class RawUpstream:
    """A model server that takes any head (as gunicorn or uvicorn would where aiohttp's
    parser refuses some) and records the bytes of every request it gets."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\n\r\n{}"
                )
                await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def guarded_raw(
    keys_dir: pathlib.Path, http_server: str
) -> AsyncIterator[tuple[int, RawUpstream]]:
    """The API-key guard on this server in front of a raw recording model server."""
    upstream = RawUpstream()
    listening = await asyncio.start_server(upstream._serve, "127.0.0.1", 0)
    upstream_port = listening.sockets[0].getsockname()[1]
    try:
        pipeline = server.pipeline_from_config(
            guardstack.guard_config(f"http://127.0.0.1:{upstream_port}", keys_dir, KEYS_POLICY)
        )
        async with guardstack.serving_guard(pipeline, http_server) as url:
            yield int(url.rsplit(":", 1)[1]), upstream
    finally:
        listening.close()


@pytest.mark.parametrize("http_server", SERVERS)
@pytest.mark.parametrize("lines", CONTENT_TYPE_TWICE.values(), ids=CONTENT_TYPE_TWICE.keys())
async def test_two_content_types_are_refused_by_the_guard(
    keys_dir: pathlib.Path, http_server: str, lines: bytes
) -> None:
    # A model server that reads a repeated header its own way (gunicorn: the last wins;
    # Starlette: the first) must never get a media type other than the one judged.
    async with guarded_raw(keys_dir, http_server) as (port, upstream):
        answer = await one_answer(port, request(lines))
    assert 400 <= answer.status < 500, answer
    assert upstream.heads == []


# -- Content-Encoding: anything but identity is refused, in any spelling or repetition.

ENCODINGS = {
    "identity then gzip, two headers": (
        b"Content-Encoding: identity\r\nContent-Encoding: gzip\r\n"
    ),
    "gzip then identity, two headers": (
        b"Content-Encoding: gzip\r\nContent-Encoding: identity\r\n"
    ),
    "identity, gzip": b"Content-Encoding: identity, gzip\r\n",
    "identity,gzip": b"Content-Encoding: identity,gzip\r\n",
    "upper case": b"Content-Encoding: GZIP\r\n",
    "lower-case name": b"content-encoding: gzip\r\n",
    "x-gzip": b"Content-Encoding: x-gzip\r\n",
    "padded": b"Content-Encoding:  \t gzip \t \r\n",
    "identity then deflate in lower case": (
        b"Content-Encoding: identity\r\ncontent-encoding: deflate\r\n"
    ),
    "empty then gzip": b"Content-Encoding:\r\nContent-Encoding: gzip\r\n",
    "identity;q": b"Content-Encoding: identity;q=1\r\n",
}


@pytest.mark.parametrize("http_server", SERVERS)
@pytest.mark.parametrize("lines", ENCODINGS.values(), ids=ENCODINGS.keys())
async def test_an_encoding_but_identity_in_any_spelling_is_refused(
    trained: Any, keys_dir: pathlib.Path, http_server: str, lines: bytes
) -> None:
    async with guarded(trained, keys_dir, http_server) as (port, model):
        answer = await one_answer(port, request(b"Content-Type: application/json\r\n" + lines))
    assert answer.status in (400, 415), answer
    assert model.seen == []


@pytest.mark.parametrize("http_server", SERVERS)
async def test_identity_spelled_otherwise_is_forwarded_as_identity(
    trained: Any, keys_dir: pathlib.Path, http_server: str
) -> None:
    # The control: the guard reads " Identity " as identity, and so does the model server.
    head = b"Content-Type: application/json\r\nContent-Encoding:  Identity \r\n"
    async with guarded(trained, keys_dir, http_server) as (port, model):
        answer = await one_answer(port, request(head))
    assert answer.status == 200, answer
    (seen,) = model.seen
    assert seen.body == PREDICT


# -- Credentials: an empty one beside a valid one is still two.

CREDENTIALS = {
    "an empty X-Api-Key before the key": b"X-Api-Key:\r\n",
    "a blank X-Api-Key before the key": b"X-Api-Key:   \r\n",
    "an empty Authorization beside the key": b"Authorization:\r\n",
    "Authorization: Bearer with nothing beside the key": b"Authorization: Bearer\r\n",
    "an empty x-api-key in lower case": b"x-api-key:\r\n",
}


@pytest.mark.parametrize("http_server", SERVERS)
@pytest.mark.parametrize("lines", CREDENTIALS.values(), ids=CREDENTIALS.keys())
async def test_an_empty_credential_beside_a_valid_one_is_refused(
    trained: Any, keys_dir: pathlib.Path, http_server: str, lines: bytes
) -> None:
    async with guarded(trained, keys_dir, http_server) as (port, model):
        answer = await one_answer(port, request(b"Content-Type: application/json\r\n" + lines))
    assert answer.status == 400, answer
    assert model.seen == []


# -- The identity the guard vouches for: only its own reaches the model.

FORGED_CLIENTS = {
    "X-Modelshield-Client": b"X-Modelshield-Client: admin\r\n",
    "lower case": b"x-modelshield-client: admin\r\n",
    "upper case": b"X-MODELSHIELD-CLIENT: admin\r\n",
    "twice": b"X-Modelshield-Client: admin\r\nX-Modelshield-Client: root\r\n",
    "an audit header": b"X-Modelshield-Audit: none\r\n",
}


@pytest.mark.parametrize("http_server", SERVERS)
@pytest.mark.parametrize("lines", FORGED_CLIENTS.values(), ids=FORGED_CLIENTS.keys())
async def test_the_model_sees_only_the_guards_client_header(
    trained: Any, keys_dir: pathlib.Path, http_server: str, lines: bytes
) -> None:
    async with guarded(trained, keys_dir, http_server) as (port, model):
        answer = await one_answer(port, request(b"Content-Type: application/json\r\n" + lines))
    assert answer.status == 200, answer
    (seen,) = model.seen
    named = {k.lower(): v for k, v in seen.headers.items() if k.lower().startswith("x-modelshield")}
    assert named == {"x-modelshield-client": "apikey:batch"}


# -- Route: targets the guard would read as one model and the model server as another.

TARGETS = {
    "a ';' parameter after the verb": b"POST /v1/models/fraud:predict;x=1 HTTP/1.1\r\n",
    "a ';' parameter in the name": b"POST /v1/models/fraud;v=2:predict HTTP/1.1\r\n",
    "a percent-encoded letter": b"POST /v1/models/%66raud:predict HTTP/1.1\r\n",
    "an encoded slash": b"POST /v1/models/fraud%2Fx:predict HTTP/1.1\r\n",
    "absolute-form with the guard's name": b"POST http://guard/v1/models/fraud:predict HTTP/1.1\r\n",
    "a trailing slash": b"POST /v1/models/fraud:predict/ HTTP/1.1\r\n",
    "an empty query": b"POST /v1/models/fraud:predict? HTTP/1.1\r\n",
    "a backslash": b"POST /v1/models\\fraud:predict HTTP/1.1\r\n",
}


@pytest.mark.parametrize("http_server", SERVERS)
@pytest.mark.parametrize("line", TARGETS.values(), ids=TARGETS.keys())
async def test_a_target_the_model_could_route_otherwise_is_refused(
    trained: Any, keys_dir: pathlib.Path, http_server: str, line: bytes
) -> None:
    async with guarded(trained, keys_dir, http_server) as (port, model):
        received, _ = await exchange(
            port, request(b"Content-Type: application/json\r\n", line=line)
        )
    for answer in answers(received):
        assert 400 <= answer.status < 500, received
    assert model.seen == []


# -- The peer address: the new-token bucket's key.


async def _peer_seen(host: str, family: socket.AddressFamily, extra: bytes) -> str:
    seen: list[str] = []

    async def handler(incoming: httpserving.Request) -> httpserving.Answer:
        seen.append(incoming.peer)
        return httpserving.Answer(204, [])

    serving = httpserving.Server(handler, body_limit=1024)
    port = await serving.start(host, 0)
    try:
        reader, writer = await asyncio.open_connection(host, port, family=family)
        writer.write(b"GET / HTTP/1.1\r\nHost: guard\r\n" + extra + b"\r\n")
        await reader.readuntil(b"\r\n\r\n")
        writer.close()
    finally:
        await serving.close()
    (peer,) = seen
    return peer


SPOOFED = (
    b"X-Forwarded-For: 10.9.9.9\r\nX-Real-IP: 10.9.9.9\r\n"
    b"Forwarded: for=10.9.9.9\r\nTrue-Client-IP: 10.9.9.9\r\n"
)


async def test_the_peer_is_the_sockets_address_never_a_header() -> None:
    assert await _peer_seen("127.0.0.1", socket.AF_INET, SPOOFED) == "127.0.0.1"


async def test_an_ipv6_peer_is_its_address_alone() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        peer = await _peer_seen("::1", socket.AF_INET6, SPOOFED)
    except OSError as error:
        pytest.skip(f"cannot listen on ::1 here ({error})")
    # No scope id, flow info or port: one address is one bucket.
    assert peer == "::1"


# -- Audit policies: a would-be refusal reaches the model, the finding goes on the answer.

AUDIT_POLICY = {**KEYS_POLICY, "enforcement": "Audit"}


@pytest.mark.parametrize("http_server", SERVERS)
async def test_an_audited_refusal_is_on_the_answer_never_upstream(
    trained: Any, keys_dir: pathlib.Path, http_server: str
) -> None:
    # text/plain would be refused 415 under Enforce; the client also forges the header.
    head = b"Content-Type: text/plain\r\nX-Modelshield-Audit: nothing to see\r\n"
    async with guarded(trained, keys_dir, http_server, AUDIT_POLICY) as (port, model):
        answer = await one_answer(port, request(head))
    assert answer.status == 200, answer
    audit = answer.headers["x-modelshield-audit"]
    assert audit.startswith("UnsupportedMediaType by ModelSecurityPolicy ml/p0"), audit
    assert "nothing to see" not in answer.headers["x-modelshield-audit"]
    (seen,) = model.seen
    assert not [k for k in seen.headers if k.lower() == "x-modelshield-audit"], seen.headers
    assert seen.body == PREDICT


@pytest.mark.parametrize("http_server", SERVERS)
async def test_an_audited_encoding_is_still_refused(
    trained: Any, keys_dir: pathlib.Path, http_server: str
) -> None:
    # Refused "for every policy": an Audit policy must not let an encoded body through.
    head = b"Content-Type: application/json\r\nContent-Encoding: identity, gzip\r\n"
    async with guarded(trained, keys_dir, http_server, AUDIT_POLICY) as (port, model):
        answer = await one_answer(port, request(head))
    assert answer.status == 415, answer
    assert model.seen == []


# -- The audit line: client, decision, status; never the payload nor a credential.

AUDITED_REQUESTS = {
    "allowed": (request(b"Content-Type: application/json\r\n"), "apikey:batch", "allowed", 200),
    "wrong key": (
        request(
            b"Content-Type: application/json\r\nX-Api-Key: wrong-key-0123456789\r\n", key=False
        ),
        "invalid",
        "refused",
        401,
    ),
    "two credentials": (
        request(
            b"Content-Type: application/json\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n"
        ),
        "anonymous",
        "refused",
        400,
    ),
    "an encoding": (
        request(b"Content-Type: application/json\r\nContent-Encoding: identity, gzip\r\n"),
        "apikey:batch",
        "refused",
        415,
    ),
}


@pytest.mark.parametrize("http_server", SERVERS)
@pytest.mark.parametrize("case", AUDITED_REQUESTS.values(), ids=AUDITED_REQUESTS.keys())
async def test_the_audit_line_names_the_outcome_never_the_payload_or_a_credential(
    trained: Any,
    keys_dir: pathlib.Path,
    http_server: str,
    case: tuple[bytes, str, str, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    data, client, decision, status = case
    caplog.set_level(logging.INFO, logger=auditing.AUDIT_LOGGER.name)
    async with guarded(trained, keys_dir, http_server) as (port, _):
        answer = await one_answer(port, data)
        await asyncio.sleep(0.05)  # the line is written once the answer is sent
    assert answer.status == status, answer
    texts = [r.getMessage() for r in caplog.records]
    everything = "\n".join(texts)
    assert KEY not in everything
    assert "wrong-key-0123456789" not in everything
    assert json.dumps(guardstack.ROWS[0][0]) not in everything
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == auditing.AUDIT_LOGGER.name
    ]
    (line,) = lines
    assert (line["client"], line["decision"], line["status"]) == (client, decision, status)
