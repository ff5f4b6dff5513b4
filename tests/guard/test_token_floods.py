"""Made-up ServiceAccount tokens from one source cost the API server a bounded number of
TokenReviews (issue 14).

The guard runs on a real socket in front of the real model server; a real local HTTP
server stands in for the kube-apiserver's TokenReview endpoint (accepting one token,
refusing every other) and counts what it is asked. The real kube-apiserver's verdicts are
in e2e/test_guard_tokens.py. A second source is a second loopback address (127.0.0.2).
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from modelshield.guard import credentials, judging, ratelimits, server, tokenreviews
from tests.support import modelserver
from tests.support.guardstack import KEY, PREDICT, _stack, keys_dir, trained

__all__ = ["keys_dir", "trained"]

pytestmark = pytest.mark.integration

VALID = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjk5OTk5OTk5OTl9.dmFsaWQ"
PATH = "/v1/models/fraud:predict"
POLICY: dict[str, Any] = {
    "api": {
        "authentication": {
            "serviceAccountTokens": {"audiences": ["modelshield-guard"]},
            "apiKeys": {"secretRef": {"name": "fraud-keys"}},
        },
        "authorization": {
            "allow": [{"serviceAccounts": ["payments/scorer"], "apiKeyClients": ["batch"]}]
        },
    }
}


def forged(index: int) -> str:
    """A distinct JWT-shaped string the API server will refuse."""
    return f"eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjk5OTk5OTk5OTl9.Zm9yZ2Vk{index:08d}"


class ApiServerStandIn:
    """The TokenReview endpoint: accepts ``VALID`` only, counts every review by token."""

    def __init__(self) -> None:
        self.reviewed: list[str] = []
        #: Seconds each review takes (so that parallel requests overlap).
        self.delay = 0.0

    def app(self) -> web.Application:
        async def review(request: web.Request) -> web.Response:
            token = (await request.json())["spec"]["token"]
            self.reviewed.append(token)
            await asyncio.sleep(self.delay)
            if token != VALID:
                status: dict[str, Any] = {"authenticated": False, "error": "invalid signature"}
            else:
                status = {
                    "authenticated": True,
                    "user": {"username": "system:serviceaccount:payments:scorer"},
                    "audiences": ["modelshield-guard"],
                }
            return web.json_response({"status": status}, status=201)

        app = web.Application()
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", review)
        return app


@pytest.fixture
async def api_server() -> AsyncIterator[tuple[ApiServerStandIn, str]]:
    stand_in = ApiServerStandIn()
    async with modelserver.serving(stand_in.app()) as url:
        yield stand_in, url


async def call(
    url: str, headers: dict[str, str], source: str = "127.0.0.1"
) -> tuple[int, dict[str, str], dict[str, Any]]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    sent = {"Content-Type": "application/json", **headers}
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url + PATH, data=PREDICT, headers=sent) as response,
    ):
        return response.status, dict(response.headers), json.loads(await response.read() or b"{}")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_flood_of_new_tokens_from_one_source_is_429_without_reviews(
    trained: Any, keys_dir: pathlib.Path, tmp_path: pathlib.Path, api_server: Any
) -> None:
    stand_in, api_url = api_server
    token_file = tmp_path / "guard-token"
    token_file.write_text("guard-own-token")
    settings = {"url": api_url, "caFile": None, "tokenFile": str(token_file)}
    async with _stack(trained, keys_dir, POLICY, apiServer=settings) as running:
        assert (await call(running.url, bearer(VALID)))[0] == 200  # spends one review
        started = time.monotonic()
        answers = []
        for batch in range(4):  # 200 made-up tokens, 50 at a time
            answers += await asyncio.gather(
                *(call(running.url, bearer(forged(batch * 50 + i))) for i in range(50))
            )
        elapsed = time.monotonic() - started
        statuses = [status for status, _, _ in answers]
        throttled = [(headers, body) for status, headers, body in answers if status == 429]
        # The burst (less the valid token's review) and what came back while it ran.
        allowed = tokenreviews.NEW_TOKENS_BURST + tokenreviews.NEW_TOKENS_PER_SECOND * elapsed
        assert len(stand_in.reviewed) <= allowed + 1, (len(stand_in.reviewed), elapsed)
        assert statuses.count(401) == len(stand_in.reviewed) - 1
        assert statuses.count(401) + len(throttled) == 200, sorted(set(statuses))
        assert len(throttled) >= 200 - allowed
        headers, body = throttled[0]
        assert int(headers["Retry-After"]) >= 1
        assert body["reason"] == judging.Code.TOO_MANY_NEW_TOKENS.value
        assert body["error"].startswith("too many new tokens from this source (127.0.0.1)")
        assert len(running.model.seen) == 1  # the valid token's request only

        reviews = len(stand_in.reviewed)
        # The valid token, cached, still passes from the flooding source, asking nothing.
        for _ in range(30):
            assert (await call(running.url, bearer(VALID)))[0] == 200
        # A made-up token already refused is refused from the cache (401), not throttled.
        status, _, body = await call(running.url, bearer(forged(0)))
        assert status == 401, body
        # API keys never go near the reviewer.
        assert (await call(running.url, {"X-Api-Key": KEY}))[0] == 200
        assert len(stand_in.reviewed) == reviews
        # Another source has its own bucket: its new tokens are reviewed.
        for index in range(5):
            status, _, body = await call(running.url, bearer(forged(1000 + index)), "127.0.0.2")
            assert status == 401, body
        assert len(stand_in.reviewed) == reviews + 5
        reviewer = running.pipeline.authenticator.reviewer
        assert reviewer is not None
        assert len(reviewer.new_tokens) == 2
        text = running.pipeline.metrics.registry.get_sample_value(
            "modelshield_guard_refusals_total",
            {"reason": "TooManyNewTokens", "policy": "", "enforced": "true"},
        )
        assert text == len(throttled)
        assert running.pipeline.metrics.registry.get_sample_value(
            "modelshield_guard_rate_limited_total", {"client": server.UNREVIEWED}
        ) == len(throttled)


async def test_parallel_requests_with_one_new_token_share_one_review(
    trained: Any, keys_dir: pathlib.Path, tmp_path: pathlib.Path, api_server: Any
) -> None:
    stand_in, api_url = api_server
    stand_in.delay = 0.3
    token_file = tmp_path / "guard-token"
    token_file.write_text("guard-own-token")
    settings = {"url": api_url, "caFile": None, "tokenFile": str(token_file)}
    async with _stack(trained, keys_dir, POLICY, apiServer=settings) as running:
        # A client starting with more parallel requests than the burst, on a new token.
        answers = await asyncio.gather(*(call(running.url, bearer(VALID)) for _ in range(40)))
        assert [status for status, _, _ in answers] == [200] * 40
        refused = await asyncio.gather(*(call(running.url, bearer(forged(7))) for _ in range(40)))
        assert [status for status, _, _ in refused] == [401] * 40
        assert stand_in.reviewed == [VALID, forged(7)]
        reviewer = running.pipeline.authenticator.reviewer
        assert reviewer is not None
        assert reviewer._pending == {}


async def test_the_sources_kept_are_bounded(tmp_path: pathlib.Path, api_server: Any) -> None:
    stand_in, api_url = api_server
    token_file = tmp_path / "guard-token"
    token_file.write_text("guard-own-token")
    buckets = ratelimits.TokenBuckets(
        tokenreviews.NEW_TOKENS_PER_SECOND, tokenreviews.NEW_TOKENS_BURST, max_keys=3
    )
    reviewer = tokenreviews.TokenReviewer(
        tokenreviews.ApiServer(api_url, None, token_file),
        frozenset({"modelshield-guard"}),
        tokenreviews.VerdictCache(ttl=60),
        new_tokens=buckets,
    )
    try:
        for index in range(10):
            token = credentials.Credential(credentials.Kind.SERVICE_ACCOUNT_TOKEN, forged(index))
            verdict = await reviewer.review(token, f"10.0.0.{index}")
            assert isinstance(verdict, judging.AuthenticationFailed)
        assert len(buckets) == 3
        # Spending one's bucket, then being evicted, needs that many other sources first.
        for index in range(tokenreviews.NEW_TOKENS_BURST):
            token = credentials.Credential(
                credentials.Kind.SERVICE_ACCOUNT_TOKEN, forged(50 + index)
            )
            await reviewer.review(token, "10.0.1.1")
        extra = credentials.Credential(credentials.Kind.SERVICE_ACCOUNT_TOKEN, forged(99))
        with pytest.raises(tokenreviews.ReviewsThrottledError):
            await reviewer.review(extra, "10.0.1.1")
        assert stand_in.reviewed.count(forged(99)) == 0
    finally:
        await reviewer.close()
    default = tokenreviews.TokenReviewer(
        tokenreviews.ApiServer(api_url, None, token_file),
        frozenset({"modelshield-guard"}),
        tokenreviews.VerdictCache(ttl=60),
    )
    assert default.new_tokens.max_keys == tokenreviews.NEW_TOKEN_SOURCES == 10_000
