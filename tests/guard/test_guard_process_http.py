"""The real ``modelshield guard`` process (uvloop, its own HTTP server by default) in
front of a real scikit-learn model server: requests the clients' port must refuse never
reach the model, pipelined ones are answered in order, and ``--http-server=aiohttp``
answers the same where the two servers are meant to agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import yaml

from tests.support import modelserver
from tests.support import rawclient as raw
from tests.support.guardstack import KEY, KEYS_POLICY, PREDICT, keys_dir, trained

__all__ = ["keys_dir", "trained"]

pytestmark = pytest.mark.integration

MODELSHIELD = pathlib.Path(sys.executable).parent / "modelshield"


class Running:
    """The guard process's clients' port and the model server's record."""

    def __init__(self, port: int, model: modelserver.ModelServer) -> None:
        self.port = port
        self.model = model


@contextlib.contextmanager
def guard_process(
    upstream: str, keys: pathlib.Path, directory: pathlib.Path, http_server: str
) -> Iterator[int]:
    """``modelshield guard`` on uvloop with the API-key policy; yields its clients' port."""
    port, management = modelserver.free_port(), modelserver.free_port()
    settings: dict[str, Any] = {
        "upstream": upstream,
        "host": "127.0.0.1",
        "port": port,
        "managementPort": management,
        "apiKeysDir": str(keys),
        "policies": [
            {
                "kind": "ModelSecurityPolicy",
                "namespace": "ml",
                "name": "p0",
                "enforcement": "Enforce",
                **KEYS_POLICY,
            }
        ],
    }
    config = directory / f"guard-{http_server}.yaml"
    config.write_text(yaml.safe_dump(settings))
    log = directory / f"guard-{http_server}.log"
    with log.open("wb") as errors:
        process = subprocess.Popen(
            [str(MODELSHIELD), "guard", "--config", str(config), "--event-loop", "uvloop",
             "--http-server", http_server],
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        written = log.read_text(errors="replace")
        assert "Traceback" not in written, written


async def _listening(port: int) -> None:
    for _ in range(300):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise AssertionError(f"the guard does not listen on {port}")


@contextlib.asynccontextmanager
async def running(
    trained: Any, keys: pathlib.Path, tmp_path: pathlib.Path, http_server: str = "own"
) -> AsyncIterator[Running]:
    model = modelserver.ModelServer(trained)
    async with modelserver.serving(model.app()) as upstream:
        with guard_process(upstream, keys, tmp_path, http_server) as port:
            await _listening(port)
            yield Running(port, model)


def _predict(extra: bytes = b"", body: bytes = PREDICT, version: bytes = b"HTTP/1.1") -> bytes:
    return (
        b"POST /v1/models/fraud:predict " + version + b"\r\nHost: guard\r\n"
        b"X-Api-Key: " + KEY.encode() + b"\r\nContent-Type: application/json\r\n" + extra
        + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


def _framed(extra: bytes, body: bytes) -> bytes:
    """The predict request with framing headers of its own (no Content-Length added)."""
    return (
        b"POST /v1/models/fraud:predict HTTP/1.1\r\nHost: guard\r\nX-Api-Key: "
        + KEY.encode() + b"\r\nContent-Type: application/json\r\n" + extra + b"\r\n" + body
    )  # fmt: skip


def _chunked(body: bytes) -> bytes:
    return b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"


LENGTH = str(len(PREDICT)).encode()
#: Smuggling and framing attempts with a valid key and body: each must be refused with a
#: 4xx and the model server must see nothing.
REFUSED: dict[str, tuple[bytes, int]] = {
    "Content-Length and Transfer-Encoding": (
        _framed(
            b"Content-Length: " + LENGTH + b"\r\nTransfer-Encoding: chunked\r\n", _chunked(PREDICT)
        ),
        400,
    ),
    "two Content-Lengths": (
        _framed(b"Content-Length: " + LENGTH + b"\r\nContent-Length: 5\r\n", PREDICT),
        400,
    ),
    "chunked, identity": (
        _framed(b"Transfer-Encoding: chunked, identity\r\n", _chunked(PREDICT)),
        400,
    ),
    "a bad chunk size": (
        _framed(b"Transfer-Encoding: chunked\r\n", b"1g\r\n" + PREDICT + b"\r\n0\r\n\r\n"),
        400,
    ),
    "a chunk extension with a bare LF": (
        _framed(b"Transfer-Encoding: chunked\r\n", _chunked(PREDICT).replace(b"\r\n", b";x\n", 1)),
        400,
    ),
    "obs-fold": (_predict(b"X-A: a\r\n b\r\n"), 400),
    "whitespace before the colon": (_predict(b"X-A : b\r\n"), 400),
    "a bare LF": (_predict(b"X-A: a\nX-B: b\r\n"), 400),
    "CONNECT": (b"CONNECT model:80 HTTP/1.1\r\nHost: model:80\r\n\r\n", 400),
    "an h2c upgrade": (_predict(b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"), 400),
    "a head over the limit": (_predict(b"X-A: " + b"a" * 9000 + b"\r\n"), 431),
    "an HTTP/0.9 request": (b"GET /v1/models/fraud\r\n\r\n", 505),
    "an absolute-form target": (
        _predict().replace(b" /v1/", b" http://model/v1/", 1),
        404,  # as on aiohttp's server: routes.parse is given the target as sent
    ),
}


@pytest.mark.parametrize(("request_bytes", "status"), REFUSED.values(), ids=REFUSED.keys())
async def test_the_guard_process_refuses_what_its_server_must(
    trained: Any, keys_dir: pathlib.Path, tmp_path: pathlib.Path, request_bytes: bytes, status: int
) -> None:
    async with running(trained, keys_dir, tmp_path) as guard:
        # A valid request after it on the same connection is never forwarded either.
        received, closed = await raw.exchange(guard.port, request_bytes + _predict())
        await asyncio.sleep(0.05)
        assert guard.model.seen == []
    (answer,) = raw.answers(received)
    assert answer.status == status, received
    assert json.loads(answer.body)["error"]
    assert answer.headers["connection"] == "close"
    assert closed


async def test_the_guard_process_answers_pipelined_requests_in_order(
    trained: Any, keys_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    bodies = [json.dumps({"instances": modelserver.sample_rows(n)}).encode() for n in (1, 2, 3)]
    async with running(trained, keys_dir, tmp_path) as guard:
        received, closed = await raw.exchange(
            guard.port, b"".join(_predict(body=body) for body in bodies)
        )
        assert [seen.body for seen in guard.model.seen] == bodies
    found = raw.answers(received)
    assert [a.status for a in found] == [200, 200, 200]
    assert [len(json.loads(a.body)["predictions"]) for a in found] == [1, 2, 3]
    assert not closed


async def test_the_guard_process_answers_100_continue_only_to_who_may_send_a_body(
    trained: Any, keys_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    async with running(trained, keys_dir, tmp_path) as guard:
        reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
        writer.write(_predict(b"Expect: 100-continue\r\n").removesuffix(PREDICT))
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), raw.WAIT)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(PREDICT)
        received, _ = await raw.read_all(reader, 0.5)
        writer.close()
        assert [a.status for a in raw.answers(received)] == [200]
        anonymous = _predict(b"Expect: 100-continue\r\n").removesuffix(PREDICT)
        anonymous = anonymous.replace(b"X-Api-Key: " + KEY.encode() + b"\r\n", b"")
        received, closed = await raw.exchange(guard.port, anonymous)
        assert b"100 Continue" not in received
        assert [a.status for a in raw.answers(received)] == [401]
        assert closed
        assert len(guard.model.seen) == 1


@pytest.mark.parametrize("http_server", ["own", "aiohttp"])
async def test_both_servers_agree_on_http_1_0_and_refusals(
    trained: Any, keys_dir: pathlib.Path, tmp_path: pathlib.Path, http_server: str
) -> None:
    async with running(trained, keys_dir, tmp_path, http_server) as guard:
        received, closed = await raw.exchange(guard.port, _predict(version=b"HTTP/1.0"))
        assert ([a.status for a in raw.answers(received)], closed) == ([200], True)
        no_key = _predict().replace(b"X-Api-Key: " + KEY.encode() + b"\r\n", b"")
        received, closed = await raw.exchange(guard.port, no_key + _predict())
        (answer,) = raw.answers(received)
        assert (answer.status, closed) == (401, True)
        assert answer.headers["www-authenticate"].startswith("Bearer")
        too_big = _framed(b"Content-Length: 10000000\r\n", b"")
        received, closed = await raw.exchange(guard.port, too_big)
        assert [a.status for a in raw.answers(received)] == [413]
        # aiohttp's server waits up to 10 s for the unsent body (lingering) before closing;
        # the guard's own closes its side at once and drops what still comes.
        assert closed or http_server == "aiohttp"
        absolute = _predict().replace(b" /v1/", b" http://model/v1/", 1)
        received, _ = await raw.exchange(guard.port, absolute)
        assert [a.status for a in raw.answers(received)] == [404]
        assert len(guard.model.seen) == 1
