"""The guard keeps no cookies of the model server's: one client's never reach another's request.

The guard talks to the model server through one pooled HTTP session for every client. A
session that kept cookies would store a Set-Cookie answered to one client and send it
with the next client's requests (aiohttp's default jar does so for a host name; it skips
IP addresses, so the model server is reached as ``localhost`` here).
"""

from __future__ import annotations

import pathlib

from aiohttp import web

from modelshield.guard import server
from tests.guard import modelserver
from tests.guard.test_proxy import KEY, KEYS_POLICY, PREDICT, call, guard_config, write_secret

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
        async with modelserver.serving(server.build_app(pipeline)) as guard:
            path = "/v1/models/fraud:predict"
            first = await call(guard, path, body=PREDICT, headers={"X-Api-Key": KEY})
            second = await call(guard, path, body=PREDICT, headers={"X-Api-Key": OTHER_KEY})
    assert (first[0], second[0]) == (200, 200)
    # The client that was answered with the cookie gets it, as the model server sent it.
    assert "for-request-1" in first[1].get("Set-Cookie", "")
    assert cookies_seen == [None, None]
