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

import aiohttp
import pytest
from aiohttp import web

from modelshield.api.v1alpha1 import policies
from modelshield.engine import facts
from modelshield.supplychain.images import credentials, registries, verifying
from tests.supplychain import localtools

pytestmark = pytest.mark.integration

USER, PASSWORD, TOKEN = "puller", "s3cret", "token-for-puller"


class AuthProxy:
    """A front end for the real registry: auth challenges, paged referrers, tampering."""

    def __init__(
        self, upstream: str, scheme: str, *, referrers: bool = False, tamper: bool = False
    ) -> None:
        self.upstream, self.scheme, self.referrers, self.tamper = (
            upstream,
            scheme,
            referrers,
            tamper,
        )
        self.token_requests: list[dict[str, str]] = []
        self.host = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> AuthProxy:
        app = web.Application()
        app.router.add_get("/token", self._token)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = localtools.free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.host = f"127.0.0.1:{port}"
        self._session = aiohttp.ClientSession(auto_decompress=False)
        return self

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _basic_ok(self, header: str) -> bool:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return header == expected

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests.append(dict(request.query))
        if not self._basic_ok(request.headers.get("Authorization", "")):
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        return web.json_response({"token": TOKEN, "expires_in": 300})

    def _challenge(self, request: web.Request) -> web.Response:
        if self.scheme == "bearer":
            header = f'Bearer realm="http://{self.host}/token",service="test-registry",scope="repository:ml/private:pull"'
        else:
            header = 'Basic realm="test-registry"'
        return web.json_response(
            {"errors": [{"code": "UNAUTHORIZED"}]}, status=401, headers={"WWW-Authenticate": header}
        )

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        authorization = request.headers.get("Authorization", "")
        allowed = (
            authorization == f"Bearer {TOKEN}"
            if self.scheme == "bearer"
            else self._basic_ok(authorization)
        )
        if not allowed:
            return self._challenge(request)
        if self.referrers and "/referrers/" in request.path:
            return await self._serve_referrers(request)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k in ("Accept", "Content-Type")}
        async with self._session.request(
            request.method,
            f"http://{self.upstream}{request.path_qs}",
            headers=headers,
            data=await request.read(),
        ) as answer:
            body = await answer.read()
            if self.tamper and "/manifests/" in request.path and answer.status == 200:
                body += b" "  # still valid JSON, another digest
            passed = {
                k: v
                for k, v in answer.headers.items()
                if k in ("Content-Type", "Docker-Content-Digest", "Location")
            }
            return web.Response(status=answer.status, body=body, headers=passed)

    async def _serve_referrers(self, request: web.Request) -> web.Response:
        """The Referrers API in pages of one, built from the tag-schema index."""
        repository, _, digest = request.path.removeprefix("/v2/").partition("/referrers/")
        assert self._session is not None
        async with self._session.get(
            f"http://{self.upstream}/v2/{repository}/manifests/{digest.replace(':', '-')}",
            headers={"Accept": registries.OCI_INDEX},
        ) as answer:
            manifests = (
                (await answer.json(content_type=None)).get("manifests", [])
                if answer.status == 200
                else []
            )
        page = int(request.query.get("page", "0"))
        headers = {}
        if page + 1 < len(manifests):
            headers["Link"] = f'</v2/{repository}/referrers/{digest}?page={page + 1}>; rel="next"'
        body = {
            "schemaVersion": 2,
            "mediaType": registries.OCI_INDEX,
            "manifests": manifests[page : page + 1],
        }
        return web.json_response(body, headers=headers, content_type=registries.OCI_INDEX)


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
    verifier = verifying.ImageVerifier(
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
