"""The inference guard's cost: its added latency and its throughput, as ratios to a direct call.

Everything runs in one process and one event loop (pin it with ``taskset -c 0``): a
model server that answers a fixed small JSON document (so the model's own cost does not
hide the guard's), the guard in front of it, and the client. Each figure is measured
both ways in the same run, and the ratio is what to read; nothing is asserted.

1. sequential requests (one at a time): p50/p99 latency direct and through the guard;
2. 32 concurrent clients: requests per second direct and through the guard;
3. the guard's decision alone (credential, judging of head and body, without HTTP), per
   request.

The guard is configured the way the issue's goal is stated: authentication (an API key,
and a ServiceAccount token whose TokenReview verdict is cached), authorization, a
per-client rate limit high enough never to refuse, and request checks.

    .venv/bin/python -m bench.bench_guard                # 5,000 requests per figure
    .venv/bin/python -m bench.bench_guard --requests 1000
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import pathlib
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from modelshield.guard import config, credentials, judging, routes, server, tokenreviews
from tests.support import modelserver

KEY = "bench-api-key-0123456789"
#: A JWT-shaped string; its verdict is put in the cache, never sent to an API server.
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2lnbmF0dXJl"  # noqa: S105
ROW = [0.25] * 20
BODY = json.dumps({"instances": [ROW]}).encode()
ANSWER = json.dumps({"predictions": [[0.9, 0.1]]}).encode()
PATH = "/v1/models/fraud:predict"


def _policy() -> dict[str, Any]:
    return {
        "kind": "ModelSecurityPolicy",
        "namespace": "bench",
        "name": "api",
        "enforcement": "Enforce",
        "api": {
            "authentication": {
                "serviceAccountTokens": {"audiences": ["modelshield-guard"], "cacheTTL": "1h"},
                "apiKeys": {"secretRef": {"name": "keys"}},
            },
            "authorization": {
                "allow": [
                    {"apiKeyClients": ["bench"], "models": ["fraud"], "verbs": ["Predict"]},
                    {"serviceAccounts": ["bench/scorer"], "models": ["fraud"]},
                ]
            },
            "rateLimits": {"perClient": {"requestsPerSecond": 1_000_000, "burst": 1_000_000}},
            "requests": {"maxBodyBytes": 65536, "maxInstances": 100},
        },
    }


def _pipeline(upstream: str, keys_dir: pathlib.Path) -> server.Pipeline:
    (keys_dir / "keys").mkdir(parents=True, exist_ok=True)
    (keys_dir / "keys" / "bench").write_text(hashlib.sha256(KEY.encode()).hexdigest())
    token_file = keys_dir / "token"
    token_file.write_text("unused: every verdict below comes from the cache")
    settings = config.GuardConfig.model_validate(
        {
            "upstream": upstream,
            "apiKeysDir": str(keys_dir),
            "apiServer": {
                "url": "https://127.0.0.1:1",
                "caFile": None,
                "tokenFile": str(token_file),
            },
            "policies": [_policy()],
        }
    )
    pipeline = server.pipeline_from_config(settings)
    reviewer = pipeline.authenticator.reviewer
    assert reviewer is not None
    # The TokenReview verdict, cached as the first request through a real API server leaves it.
    scorer = tokenreviews.identity_of(
        {
            "authenticated": True,
            "user": {"username": "system:serviceaccount:bench:scorer", "groups": []},
            "audiences": ["modelshield-guard"],
        }
    )
    token = credentials.Credential(credentials.Kind.SERVICE_ACCOUNT_TOKEN, TOKEN)
    reviewer.cache.put(token.digest, scorer, time.time(), None)
    return pipeline


async def _fixed_answer(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")


def _upstream_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/models/{model}:predict", _fixed_answer)
    return app


Call = Callable[[], Awaitable[None]]


def _caller(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Call:
    async def call() -> None:
        async with session.post(url, data=BODY, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"{url}: {response.status}")

    return call


async def _latencies(call: Call, count: int) -> list[float]:
    for _ in range(min(200, count)):
        await call()
    found = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        found.append(time.perf_counter() - started)
    return found


async def _throughput(call: Call, count: int, concurrency: int) -> float:
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


def _decision_cost(pipeline: server.Pipeline, count: int) -> float:
    """Seconds per request of the guard's pure decision (API key path, without HTTP)."""
    keys = pipeline.authenticator.keys
    assert keys is not None
    headers = [("Content-Type", "application/json"), ("X-Api-Key", KEY)]
    started = time.perf_counter()
    for _ in range(count):
        route = routes.parse("POST", PATH)
        assert isinstance(route, routes.Route)
        credential = credentials.read(headers)
        assert isinstance(credential, credentials.Credential)
        match = keys.lookup(credential.digest)
        assert match is not None
        identity = judging.Identity(
            client=f"apikey:{match.client}",
            method=credentials.Kind.API_KEY,
            api_key_client=match.client,
            api_key_secrets=match.secrets,
        )
        head = judging.judge_head(pipeline.rules, route, identity, pipeline.limiter, time.time())
        body, _ = judging.judge_body(pipeline.rules, route, "application/json", BODY)
        assert head.refusal is None
        assert body.refusal is None
    return (time.perf_counter() - started) / count


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


async def run(count: int, concurrency: int) -> None:
    """Measure and print."""
    with tempfile.TemporaryDirectory() as scratch:
        async with modelserver.serving(_upstream_app()) as upstream:
            pipeline = _pipeline(upstream, pathlib.Path(scratch))
            async with modelserver.serving(server.build_app(pipeline)) as guard:
                connector = aiohttp.TCPConnector(limit=concurrency)
                async with aiohttp.ClientSession(connector=connector) as session:
                    plain = {"Content-Type": "application/json"}
                    calls = {
                        "direct": _caller(session, upstream + PATH, plain),
                        "guard, API key": _caller(
                            session, guard + PATH, {**plain, "X-Api-Key": KEY}
                        ),
                        "guard, token (cached)": _caller(
                            session, guard + PATH, {**plain, "Authorization": f"Bearer {TOKEN}"}
                        ),
                    }
                    print(f"sequential, {count} requests (latency)")
                    medians: dict[str, float] = {}
                    for name, call in calls.items():
                        found = sorted(await _latencies(call, count))
                        medians[name] = statistics.median(found)
                        p99 = found[int(len(found) * 0.99) - 1]
                        print(f"  {name:24} p50 {_ms(medians[name])}  p99 {_ms(p99)}")
                    for name in list(calls)[1:]:
                        added = medians[name] - medians["direct"]
                        print(
                            f"  {name:24} adds {_ms(added)} at p50 ({medians[name] / medians['direct']:.2f}x)"
                        )
                    print(f"{concurrency} concurrent clients, {count} requests (throughput)")
                    rates: dict[str, float] = {}
                    for name, call in calls.items():
                        rates[name] = await _throughput(call, count, concurrency)
                        print(
                            f"  {name:24} {rates[name]:8.0f} requests/s ({rates[name] / rates['direct']:.2f} of direct)"
                        )
            cost = _decision_cost(pipeline, count)
            print(
                f"decision alone (no HTTP): {cost * 1e6:.1f} us per request, {1 / cost:,.0f} decisions/s"
            )


def main() -> None:
    """Parse arguments and run; the load average is printed (shared machines skew figures)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    arguments = parser.parse_args()
    print(f"load average before the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    asyncio.run(run(arguments.requests, arguments.concurrency))


if __name__ == "__main__":
    main()
