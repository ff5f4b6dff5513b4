"""``AuthProxy``: a test double of a registry front end, named as such.

A real aiohttp server in front of the real registry binary (which has no auth and no
Referrers API): it demands Bearer tokens from its own token endpoint or Basic credentials,
can serve the Referrers API in pages from the tag-schema index, and can tamper with
manifests. Used by the registry client tests and the webhook's pull-secret e2e test.
"""

from __future__ import annotations

import base64

import aiohttp
from aiohttp import web

from modelshield.supplychain.images import registries
from tests.support import localtools

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
