"""Failing closed: registry stopped mid-test, a registry that never answers, and single-flight."""

from __future__ import annotations

import asyncio
import pathlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from modelshield.engine import compiling, facts
from modelshield.engine.decisions import Code
from modelshield.supplychain.images import caching, imageverifier, registries
from tests.support import localtools
from tests.support.imagerequirements import codes, decide, requirement

pytestmark = pytest.mark.integration

Key = tuple[pathlib.Path, str]


async def test_registry_stopped_fails_closed_but_cached_positive_still_passes(
    own_registry: localtools.LocalRegistry,
    cosign: localtools.Cosign,
    release_key: Key,
    next_key: Key,
) -> None:
    verifier = imageverifier.ImageVerifier(
        cache=caching.VerificationCache(caching.CacheSettings(positive_ttl=600)),
        registry_options=own_registry.options(request_timeout=2.0, connect_timeout=1.0),
    )
    try:
        async with registries.RegistryClient(own_registry.options()) as client:
            digest = await localtools.push_image(client, own_registry.host, "ml/server", "v1", "x")
        image = f"{own_registry.host}/ml/server@{digest}"
        cosign.sign(image, release_key[0])
        wanted = requirement(("release", release_key[1]))
        key = compiling.requirement_key(wanted)
        assert (
            await verifier.verify(image, wanted, key, deadline_seconds=5)
        ).signature.outcome is (facts.Outcome.VERIFIED)

        own_registry.stop()

        # The webhook's hot path: the cached positive is within its TTL.
        cached = verifier.cached(image, key)
        assert cached is not None
        assert cached.signature.outcome is facts.Outcome.VERIFIED
        assert decide(image, cached, wanted).allowed
        # verify() answers from the cache too, without touching the dead registry.
        again = await verifier.verify(image, wanted, key, deadline_seconds=5)
        assert again.signature.outcome is facts.Outcome.VERIFIED

        # A requirement never verified before cannot be: it fails closed, saying why.
        other = requirement(("next", next_key[1]))
        started = time.monotonic()
        failed = await verifier.verify(
            image, other, compiling.requirement_key(other), deadline_seconds=5
        )
        assert time.monotonic() - started < 5
        assert failed.signature.outcome is facts.Outcome.REGISTRY_UNREACHABLE, failed.signature
        assert own_registry.host in failed.signature.detail
        decision = decide(image, failed, other)
        assert codes(decision) == {Code.IMAGE_VERIFICATION_FAILED}
        assert "unreachable" in decision.violations[0].message
        # ...and the failure is cached only briefly, as a negative.
        assert verifier.cached(image, compiling.requirement_key(other)) == failed
    finally:
        await verifier.close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers (a hung registry)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


async def test_hung_registry_times_out_within_the_deadline(
    silent_server: str, release_key: Key
) -> None:
    verifier = imageverifier.ImageVerifier(
        registry_options=registries.RegistryOptions(
            insecure_hosts=frozenset({silent_server}), request_timeout=30
        )
    )
    try:
        wanted = requirement(("release", release_key[1]))
        started = time.monotonic()
        found = await verifier.verify(
            f"{silent_server}/ml/server:v1", wanted, "k", deadline_seconds=0.5
        )
        elapsed = time.monotonic() - started
        assert found.signature.outcome is facts.Outcome.TIMED_OUT, found.signature
        assert elapsed < 2.0
        assert codes(decide(f"{silent_server}/ml/server:v1", found, wanted)) == {
            Code.IMAGE_VERIFICATION_FAILED
        }
    finally:
        await verifier.close()


async def test_concurrent_verifications_share_one_registry_round(
    registry: localtools.LocalRegistry, cosign: localtools.Cosign, release_key: Key
) -> None:
    verifier = imageverifier.ImageVerifier(registry_options=registry.options())
    calls: list[str] = []
    original = verifier.client.get_manifest

    async def counting(
        host: str, repository: str, identifier: str, **kwargs: Any
    ) -> registries.Manifest:
        calls.append(identifier)
        return await original(host, repository, identifier, **kwargs)

    verifier.client.get_manifest = counting  # type: ignore[method-assign]
    try:
        async with registries.RegistryClient(registry.options()) as client:
            digest = await localtools.push_image(client, registry.host, "ml/flight", "v1", "x")
        image = f"{registry.host}/ml/flight@{digest}"
        cosign.sign(image, release_key[0])
        wanted = requirement(("release", release_key[1]))
        results = await asyncio.gather(
            *(verifier.verify(image, wanted, "k", deadline_seconds=10) for _ in range(20))
        )
        assert {r.signature.outcome for r in results} == {facts.Outcome.VERIFIED}
        # One .sig manifest fetch (and one fallback index) for twenty callers.
        assert calls.count("sha256-" + digest[7:] + ".sig") == 1
    finally:
        await verifier.close()
