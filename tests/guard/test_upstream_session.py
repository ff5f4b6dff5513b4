"""What the guard's one session to the model server keeps and adds: no cookies, no encodings.

The guard talks to the model server through one pooled HTTP session for every client. A
session that kept cookies would store a Set-Cookie answered to one client and send it
with the next client's requests (aiohttp's default jar does so for a host name; it skips
IP addresses, so the model server is reached as ``localhost`` here). And the guard relays
answers as they come (no decompression), so it must not ask the model server for an
encoding the client did not accept (aiohttp's client adds ``Accept-Encoding`` itself).
"""

from __future__ import annotations

import json
import pathlib

from aiohttp import web

from modelshield.guard import server
from tests.support import guardstack, modelserver
from tests.support.guardstack import KEY, KEYS_POLICY, PREDICT, call, guard_config, write_secret

OTHER_KEY = "second-client-key-4567"


async def test_a_cookie_set_for_one_client_is_not_sent_with_anothers_request(
    tmp_path: pathlib.Path,
) -> None:
    keys_dir = tmp_path / "keys"
    write_secret(keys_dir, "fraud-keys", {"batch": KEY, "scoring": OTHER_KEY})
    policy = {
        "api": {
            **KEYS_POLICY["api"],
            "authorization": {"allow": [{"apiKeyClients": ["batch", "scoring"]}]},
        }
    }
    cookies_seen: list[str | None] = []

    async def predict(request: web.Request) -> web.Response:
        await request.read()
        cookies_seen.append(request.headers.get("Cookie"))
        response = web.json_response({"predictions": [[0.9, 0.1]]})
        response.set_cookie("session", f"for-request-{len(cookies_seen)}")
        return response

    model = web.Application()
    model.router.add_post("/v1/models/{model}:predict", predict)
    async with modelserver.serving(model) as upstream:
        by_name = upstream.replace("127.0.0.1", "localhost")
        pipeline = server.pipeline_from_config(guard_config(by_name, keys_dir, policy))
        async with guardstack.serving_guard(pipeline) as guard:
            path = "/v1/models/fraud:predict"
            first = await call(guard, path, body=PREDICT, headers={"X-Api-Key": KEY})
            second = await call(guard, path, body=PREDICT, headers={"X-Api-Key": OTHER_KEY})
    assert (first[0], second[0]) == (200, 200)
    # The client that was answered with the cookie gets it, as the model server sent it.
    assert "for-request-1" in first[1].get("Set-Cookie", "")
    assert cookies_seen == [None, None]


async def test_an_answer_is_not_compressed_for_a_client_that_did_not_ask(
    tmp_path: pathlib.Path,
) -> None:
    keys_dir = tmp_path / "keys"
    write_secret(keys_dir, "fraud-keys", {"batch": KEY})
    encodings_seen: list[str | None] = []

    async def predict(request: web.Request) -> web.Response:
        await request.read()
        encodings_seen.append(request.headers.get("Accept-Encoding"))
        response = web.json_response({"predictions": [[0.9, 0.1]] * 200})
        response.enable_compression()  # as the client's Accept-Encoding allows
        return response

    model = web.Application()
    model.router.add_post("/v1/models/{model}:predict", predict)
    async with modelserver.serving(model) as upstream:
        pipeline = server.pipeline_from_config(guard_config(upstream, keys_dir, KEYS_POLICY))
        async with guardstack.serving_guard(pipeline) as guard:
            head = (
                "POST /v1/models/fraud:predict HTTP/1.1\r\nHost: guard\r\n"
                f"X-Api-Key: {KEY}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(PREDICT)}\r\n"
            )
            plain = await modelserver.raw_request(
                guard, (head + "Connection: close\r\n\r\n").encode() + PREDICT
            )
            gzip = await modelserver.raw_request(
                guard,
                (head + "Accept-Encoding: gzip\r\nConnection: close\r\n\r\n").encode() + PREDICT,
            )
    assert encodings_seen == [None, "gzip"]
    assert plain[0] == 200
    assert "content-encoding" not in plain[1]
    assert json.loads(plain[2])["predictions"][0] == [0.9, 0.1]
    # A client that accepts gzip still gets what the model server chose for it.
    assert (gzip[0], gzip[1].get("content-encoding")) == (200, "gzip")
