"""The registry client over real HTTP: token and basic auth, size bounds, digests, referrers.

The registry binary has no auth and no Referrers API, so ``AuthProxy`` (a real aiohttp
server, a test double of a registry front end, named as such) sits in front of it:
it demands Bearer tokens from its own token endpoint or Basic credentials, can serve
the Referrers API in pages from the tag-schema index, and can tamper with manifests.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelshield.api.v1alpha1 import policies
from modelshield.engine import facts
from modelshield.supplychain.images import credentials, imageverifier, registries
from tests.support import localtools
from tests.support.authproxy import PASSWORD, USER, AuthProxy

pytestmark = pytest.mark.integration


@pytest.fixture
async def pushed(registry: localtools.LocalRegistry) -> str:
    """An image pushed straight to the registry; returns its digest."""
    async with registries.RegistryClient(registry.options()) as client:
        return await localtools.push_image(client, registry.host, "ml/private", "v1", "private")


async def _proxy(registry: localtools.LocalRegistry, scheme: str, **options: Any) -> AuthProxy:
    return await AuthProxy(registry.host, scheme, **options).start()


@pytest.fixture
async def bearer_proxy(registry: localtools.LocalRegistry) -> AsyncIterator[AuthProxy]:
    proxy = await _proxy(registry, "bearer", referrers=True)
    yield proxy
    await proxy.stop()


def _pull_secret(host: str) -> dict[str, Any]:
    config = {"auths": {host: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}
    encoded = base64.b64encode(json.dumps(config).encode()).decode()
    return {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": encoded}}


async def test_bearer_token_flow_with_pull_secret(bearer_proxy: AuthProxy, pushed: str) -> None:
    credential = credentials.from_pull_secrets([_pull_secret(bearer_proxy.host)])[bearer_proxy.host]
    options = registries.RegistryOptions(insecure_hosts=frozenset({bearer_proxy.host}))
    async with registries.RegistryClient(options) as client:
        manifest = await client.get_manifest(
            bearer_proxy.host, "ml/private", "v1", credential=credential
        )
        assert manifest.digest == pushed
        # The token is reused: a second call does not go back to the token endpoint.
        await client.get_manifest(bearer_proxy.host, "ml/private", pushed, credential=credential)
    assert len(bearer_proxy.token_requests) == 1
    assert bearer_proxy.token_requests[0] == {
        "scope": "repository:ml/private:pull",
        "service": "test-registry",
    }


async def test_bearer_without_credentials_is_refused(bearer_proxy: AuthProxy, pushed: str) -> None:
    options = registries.RegistryOptions(insecure_hosts=frozenset({bearer_proxy.host}))
    async with registries.RegistryClient(options) as client:
        with pytest.raises(registries.RegistryError, match="token endpoint"):
            await client.get_manifest(bearer_proxy.host, "ml/private", "v1")


async def test_basic_auth_from_static_docker_config(
    registry: localtools.LocalRegistry, pushed: str
) -> None:
    proxy = await _proxy(registry, "basic")
    try:
        found = credentials.from_docker_config(
            {"auths": {f"http://{proxy.host}/v2/": {"username": USER, "password": PASSWORD}}}
        )
        options = registries.RegistryOptions(
            insecure_hosts=frozenset({proxy.host}), credentials=found
        )
        async with registries.RegistryClient(options) as client:
            assert (await client.get_manifest(proxy.host, "ml/private", "v1")).digest == pushed
        async with registries.RegistryClient(
            registries.RegistryOptions(insecure_hosts=frozenset({proxy.host}))
        ) as client:
            with pytest.raises(registries.RegistryError, match="access denied"):
                await client.get_manifest(proxy.host, "ml/private", "v1")
    finally:
        await proxy.stop()


async def test_referrers_api_pages_are_followed(
    bearer_proxy: AuthProxy,
    registry: localtools.LocalRegistry,
    cosign: localtools.Cosign,
    release_key: tuple[Any, str],
) -> None:
    async with registries.RegistryClient(registry.options()) as client:
        digest = await localtools.push_image(
            client, registry.host, "ml/private", "v2", "with referrers"
        )
    image = f"{registry.host}/ml/private@{digest}"
    cosign.sign(image, release_key[0], bundle_format=True)
    cosign.attest(
        image,
        release_key[0],
        localtools.vuln_predicate([], "2026-11-01T00:00:00Z"),
        bundle_format=True,
    )
    credential = credentials.Credential(USER, PASSWORD)
    options = registries.RegistryOptions(insecure_hosts=frozenset({bearer_proxy.host}))
    async with registries.RegistryClient(options) as client:
        found = await client.referrers(
            bearer_proxy.host, "ml/private", digest, credential=credential
        )
    async with registries.RegistryClient(registry.options()) as client:
        direct = await client.referrers(registry.host, "ml/private", digest)  # tag-schema fallback
    assert len(found) == 2
    assert {d["digest"] for d in found} == {d["digest"] for d in direct}


async def test_tampered_manifest_is_refused(
    registry: localtools.LocalRegistry, pushed: str
) -> None:
    proxy = await _proxy(registry, "basic", tamper=True)
    try:
        options = registries.RegistryOptions(
            insecure_hosts=frozenset({proxy.host}),
            credentials={proxy.host: credentials.Credential(USER, PASSWORD)},
        )
        async with registries.RegistryClient(options) as client:
            with pytest.raises(registries.DigestMismatchError):
                await client.get_manifest(proxy.host, "ml/private", pushed)
    finally:
        await proxy.stop()


async def test_responses_are_size_bounded(registry: localtools.LocalRegistry, pushed: str) -> None:
    async with registries.RegistryClient(registry.options(max_manifest_bytes=64)) as client:
        with pytest.raises(registries.RegistryError, match="exceeds 64"):
            await client.get_manifest(registry.host, "ml/private", pushed)


async def test_missing_manifest_and_unreachable_registry(
    registry: localtools.LocalRegistry,
) -> None:
    async with registries.RegistryClient(registry.options()) as client:
        with pytest.raises(registries.NotFoundError):
            await client.get_manifest(registry.host, "ml/nothing", "v1")
    closed = f"127.0.0.1:{localtools.free_port()}"
    options = registries.RegistryOptions(insecure_hosts=frozenset({closed}))
    async with registries.RegistryClient(options) as client:
        with pytest.raises(registries.RegistryUnreachableError):
            await client.get_manifest(closed, "ml/server", "v1")


async def test_verifier_uses_the_pods_pull_secrets(
    bearer_proxy: AuthProxy,
    registry: localtools.LocalRegistry,
    cosign: localtools.Cosign,
    release_key: tuple[Any, str],
) -> None:
    async with registries.RegistryClient(registry.options()) as client:
        digest = await localtools.push_image(
            client, registry.host, "ml/private", "v3", "behind auth"
        )
    cosign.sign(f"{registry.host}/ml/private@{digest}", release_key[0])
    wanted = policies.ImageRequirements.model_validate(
        {"signers": [{"name": "release", "publicKey": release_key[1]}]}
    )
    verifier = imageverifier.ImageVerifier(
        registry_options=registries.RegistryOptions(insecure_hosts=frozenset({bearer_proxy.host}))
    )
    image = f"{bearer_proxy.host}/ml/private:v3"
    try:
        refused = await verifier.verify(image, wanted, "k", deadline_seconds=5)
        assert refused.signature.outcome is facts.Outcome.ERROR
        assert "token endpoint" in refused.signature.detail
        found = await verifier.verify(
            image, wanted, "k2", deadline_seconds=5, pull_secrets=[_pull_secret(bearer_proxy.host)]
        )
        assert found.signature.outcome is facts.Outcome.VERIFIED, found.signature
        assert found.digest == digest
    finally:
        await verifier.close()
