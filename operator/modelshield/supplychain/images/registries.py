"""An OCI distribution client: manifests, blobs and referrers, with auth, timeouts and size bounds.

Why our own (about 300 lines on aiohttp) rather than a library: oras-py is synchronous
(requests) and has no referrers helper, and nothing else on PyPI speaks the
distribution API asynchronously. The verifier needs few calls: GET a manifest (by tag
or digest), GET a blob, list referrers (with the ``sha256-<hex>`` tag-schema fallback);
``pushing`` has the PUTs that tests and benchmarks use to push images. Every response is size-bounded
and every body fetched by digest is checked against that digest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import ssl
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from modelshield.supplychain.images import credentials, references

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)

_MAX_REFERRER_PAGES = 8
MAX_ERROR_BODY = 4096


class RegistryError(Exception):
    """A registry call failed; ``kind`` says how, for the verifier's outcome."""

    kind = "error"


class RegistryUnreachableError(RegistryError):
    """The registry could not be reached or answered with a server error."""

    kind = "unreachable"


class RegistryTimeoutError(RegistryError):
    """A call to the registry took longer than its timeout."""

    kind = "timeout"


class NotFoundError(RegistryError):
    """The registry says the manifest or blob does not exist."""

    kind = "not-found"


class DigestMismatchError(RegistryError):
    """The registry returned content whose digest is not the one asked for."""

    kind = "digest-mismatch"


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A manifest or index as served, with the digest of its exact bytes."""

    digest: str
    media_type: str
    raw: bytes
    document: Mapping[str, Any]

    @property
    def is_index(self) -> bool:
        """An image index or Docker manifest list (several platforms)."""
        return self.media_type in INDEX_TYPES


@dataclasses.dataclass(frozen=True)
class RegistryOptions:
    """How to reach registries. Defaults suit an admission-time verifier."""

    #: Hosts (``host:port``) spoken to over plain HTTP, e.g. a test registry on loopback.
    insecure_hosts: frozenset[str] = frozenset()
    #: Upper bound for any single HTTP call, connect included.
    request_timeout: float = 5.0
    connect_timeout: float = 2.0
    max_manifest_bytes: int = 4 * 1024 * 1024
    max_blob_bytes: int = 16 * 1024 * 1024
    #: Extra trust for registries with a private CA; None uses the system store.
    ssl_context: ssl.SSLContext | None = None
    #: Static credentials by host (e.g. from a mounted docker config).
    credentials: Mapping[str, credentials.Credential] = dataclasses.field(default_factory=dict)


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """The OCI digest (``sha256:<hex>``) of data."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def _check_digest(expected: str, data: bytes) -> None:
    algorithm = expected.partition(":")[0]
    if algorithm not in ("sha256", "sha512"):
        raise DigestMismatchError(f"unsupported digest algorithm in {expected}")
    actual = digest_of(data, algorithm)
    if actual != expected:
        raise DigestMismatchError(f"registry returned {actual} when asked for {expected}")


class RegistryClient:
    """One aiohttp session for every registry, with bearer tokens cached per repository."""

    def __init__(self, options: RegistryOptions | None = None) -> None:
        self.options = options or RegistryOptions()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # (host, scope, username) -> (Authorization header value, monotonic expiry)
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session; the client may be used again afterwards."""
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None

    def _session_for_loop(self) -> aiohttp.ClientSession:
        # A session belongs to the event loop that made it; a client reused from another
        # loop (a CLI run, a test) gets a new one rather than a session that cannot work.
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            timeout = aiohttp.ClientTimeout(
                total=self.options.request_timeout, sock_connect=self.options.connect_timeout
            )
            connector = aiohttp.TCPConnector(
                ssl=self.options.ssl_context if self.options.ssl_context else True, limit=64
            )
            self._session = aiohttp.ClientSession(
                timeout=timeout, connector=connector, auto_decompress=False
            )
            self._loop = loop
        return self._session

    def url(self, host: str, path: str) -> str:
        """The URL of a path on a registry (plain HTTP only for the configured insecure hosts)."""
        scheme = "http" if host in self.options.insecure_hosts else "https"
        return f"{scheme}://{host}{path}"

    def _credential(
        self, host: str, credential: credentials.Credential | None
    ) -> credentials.Credential | None:
        return credential or self.options.credentials.get(host)

    async def request(
        self,
        method: str,
        host: str,
        repository: str,
        path: str,
        *,
        credential: credentials.Credential | None,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        max_bytes: int,
        push: bool = False,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One call, answering an auth challenge once; returns status, headers and bounded body."""
        credential = self._credential(host, credential)
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"
        token_key = (host, scope, credential.username if credential else "")
        request_headers = dict(headers or {})
        cached = self._tokens.get(token_key)
        if cached and cached[1] > time.monotonic():
            request_headers["Authorization"] = cached[0]
        url = self.url(host, path)
        for attempt in range(2):
            status, response_headers, body = await self._send(
                method, url, request_headers, data, max_bytes
            )
            if status != 401 or attempt == 1:
                return status, response_headers, body
            challenge = credentials.parse_challenge(response_headers.get("WWW-Authenticate", ""))
            if challenge is None:
                return status, response_headers, body
            authorization = await self._answer(host, challenge, scope, credential)
            if authorization is None:
                return status, response_headers, body
            self._tokens[token_key] = (authorization, time.monotonic() + 240)
            request_headers["Authorization"] = authorization
        raise AssertionError("unreachable")  # pragma: no cover

    async def _answer(
        self,
        host: str,
        challenge: credentials.Challenge,
        scope: str,
        credential: credentials.Credential | None,
    ) -> str | None:
        """The Authorization header that answers a challenge, or None when we cannot."""
        if challenge.scheme == "basic":
            return credential.basic_header() if credential else None
        if challenge.scheme != "bearer" or "realm" not in challenge.parameters:
            return None
        realm = challenge.parameters["realm"]
        query = {"scope": challenge.parameters.get("scope") or scope}
        if "service" in challenge.parameters:
            query["service"] = challenge.parameters["service"]
        separator = "&" if "?" in realm else "?"
        token_url = f"{realm}{separator}{urllib.parse.urlencode(query)}"
        headers = {"Authorization": credential.basic_header()} if credential else {}
        status, _, body = await self._send("GET", token_url, headers, None, 1024 * 1024)
        if status != 200:
            raise RegistryError(f"token endpoint {realm} answered HTTP {status}")
        try:
            answer = json.loads(body)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError) as error:
            raise RegistryError(f"token endpoint {realm} sent no token") from error
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token endpoint {realm} sent no token")
        return f"Bearer {token}"

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        data: bytes | None,
        max_bytes: int,
    ) -> tuple[int, Mapping[str, str], bytes]:
        session = self._session_for_loop()
        try:
            async with session.request(
                method, url, headers=headers, data=data, allow_redirects=True
            ) as response:
                length = response.content_length
                if length is not None and length > max_bytes:
                    raise RegistryError(f"{url}: response of {length} bytes exceeds {max_bytes}")
                body = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    body.extend(chunk)
                    if len(body) > max_bytes:
                        raise RegistryError(f"{url}: response exceeds {max_bytes} bytes")
                return response.status, dict(response.headers), bytes(body)
        except TimeoutError as error:
            raise RegistryTimeoutError(f"{url}: no answer within the timeout") from error
        except (aiohttp.ClientConnectionError, OSError) as error:
            raise RegistryUnreachableError(f"{url}: {error}") from error
        except aiohttp.ClientError as error:
            raise RegistryError(f"{url}: {error}") from error

    @staticmethod
    def raise_for(status: int, what: str, body: bytes) -> None:
        """Raise the RegistryError an unexpected HTTP status stands for."""
        if status == 404:
            raise NotFoundError(f"{what}: not found")
        text = body[:MAX_ERROR_BODY].decode("utf-8", "replace").strip()
        if status >= 500:
            raise RegistryUnreachableError(f"{what}: registry answered HTTP {status} {text}")
        if status in (401, 403):
            raise RegistryError(f"{what}: access denied (HTTP {status}); check the pull secret")
        raise RegistryError(f"{what}: unexpected HTTP {status} {text}")

    async def get_manifest(
        self,
        host: str,
        repository: str,
        identifier: str,
        *,
        credential: credentials.Credential | None = None,
        accept: Sequence[str] = MANIFEST_TYPES,
    ) -> Manifest:
        """The manifest at a tag or digest; a digest is checked against the bytes returned."""
        what = f"{host}/{repository}:{identifier}"
        status, headers, body = await self.request(
            "GET",
            host,
            repository,
            f"/v2/{repository}/manifests/{identifier}",
            credential=credential,
            headers={"Accept": ", ".join(accept)},
            max_bytes=self.options.max_manifest_bytes,
        )
        if status != 200:
            self.raise_for(status, what, body)
        if identifier.startswith(("sha256:", "sha512:")):
            _check_digest(identifier, body)
            digest = identifier
        else:
            digest = digest_of(body)
            announced = headers.get("Docker-Content-Digest")
            if announced and announced.startswith("sha256:") and announced != digest:
                raise DigestMismatchError(f"{what}: header says {announced}, content is {digest}")
        try:
            document = json.loads(body)
        except ValueError as error:
            raise RegistryError(f"{what}: manifest is not JSON") from error
        if not isinstance(document, dict):
            raise RegistryError(f"{what}: manifest is not a JSON object")
        media_type = document.get("mediaType") or headers.get("Content-Type", "").split(";")[0]
        return Manifest(digest=digest, media_type=str(media_type), raw=body, document=document)

    async def get_blob(
        self,
        host: str,
        repository: str,
        digest: str,
        *,
        credential: credentials.Credential | None = None,
        max_bytes: int | None = None,
    ) -> bytes:
        """A blob's bytes, checked against its digest."""
        status, _, body = await self.request(
            "GET",
            host,
            repository,
            f"/v2/{repository}/blobs/{digest}",
            credential=credential,
            max_bytes=max_bytes or self.options.max_blob_bytes,
        )
        if status != 200:
            self.raise_for(status, f"{host}/{repository}@{digest} (blob)", body)
        _check_digest(digest, body)
        return body

    async def referrers(
        self,
        host: str,
        repository: str,
        digest: str,
        *,
        artifact_type: str | None = None,
        credential: credentials.Credential | None = None,
    ) -> list[Mapping[str, Any]]:
        """Descriptors of the manifests whose subject is digest (Referrers API, then tag schema)."""
        path = f"/v2/{repository}/referrers/{digest}"
        if artifact_type:
            path += "?" + urllib.parse.urlencode({"artifactType": artifact_type})
        found: list[Mapping[str, Any]] = []
        for _ in range(_MAX_REFERRER_PAGES):
            status, headers, body = await self.request(
                "GET",
                host,
                repository,
                path,
                credential=credential,
                headers={"Accept": OCI_INDEX},
                max_bytes=self.options.max_manifest_bytes,
            )
            if status == 404 and not found:
                return await self._referrers_by_tag(
                    host, repository, digest, artifact_type, credential
                )
            if status != 200:
                self.raise_for(status, f"{host}/{repository} referrers of {digest}", body)
            found.extend(_descriptors(body))
            next_path = _next_link(headers.get("Link", ""))
            if next_path is None:
                break
            path = next_path
        return [d for d in found if not artifact_type or d.get("artifactType") == artifact_type]

    async def _referrers_by_tag(
        self,
        host: str,
        repository: str,
        digest: str,
        artifact_type: str | None,
        credential: credentials.Credential | None,
    ) -> list[Mapping[str, Any]]:
        tag = references.signature_tag(digest, "")
        try:
            index = await self.get_manifest(
                host, repository, tag, credential=credential, accept=(OCI_INDEX,)
            )
        except NotFoundError:
            return []
        return [
            d
            for d in _descriptors(index.raw)
            if not artifact_type or d.get("artifactType") == artifact_type
        ]


def _descriptors(raw: bytes) -> list[Mapping[str, Any]]:
    try:
        document = json.loads(raw)
    except ValueError:
        return []
    manifests = document.get("manifests") if isinstance(document, dict) else None
    if not isinstance(manifests, list):
        return []
    return [m for m in manifests if isinstance(m, dict) and isinstance(m.get("digest"), str)]


def _next_link(header: str) -> str | None:
    """The path of a ``Link: <...>; rel="next"`` header (referrers pagination)."""
    for part in header.split(","):
        url, _, parameters = part.partition(";")
        if 'rel="next"' in parameters.replace(" ", ""):
            target = urllib.parse.urlsplit(url.strip().strip("<>"))
            return f"{target.path}?{target.query}" if target.query else target.path
    return None
