"""Pushing blobs and manifests: what tests, benchmarks and tooling need, never the verifier."""

from __future__ import annotations

import urllib.parse

from modelshield.supplychain.images import credentials, registries


async def put_blob(
    client: registries.RegistryClient,
    host: str,
    repository: str,
    data: bytes,
    *,
    credential: credentials.Credential | None = None,
) -> str:
    """Upload a blob (POST to open an upload, then one monolithic PUT); returns its digest."""
    digest = registries.digest_of(data)
    status, headers, body = await client.request(
        "POST",
        host,
        repository,
        f"/v2/{repository}/blobs/uploads/",
        credential=credential,
        max_bytes=registries.MAX_ERROR_BODY,
        push=True,
    )
    if status != 202:
        client.raise_for(status, f"{host}/{repository} blob upload", body)
    location = urllib.parse.urljoin(client.url(host, "/"), headers.get("Location", ""))
    parsed = urllib.parse.urlsplit(location)
    query = [*urllib.parse.parse_qsl(parsed.query), ("digest", digest)]
    status, _, body = await client.request(
        "PUT",
        host,
        repository,
        f"{parsed.path}?{urllib.parse.urlencode(query)}",
        credential=credential,
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        max_bytes=registries.MAX_ERROR_BODY,
        push=True,
    )
    if status != 201:
        client.raise_for(status, f"{host}/{repository} blob upload", body)
    return digest


async def put_manifest(
    client: registries.RegistryClient,
    host: str,
    repository: str,
    identifier: str,
    raw: bytes,
    media_type: str,
    *,
    credential: credentials.Credential | None = None,
) -> str:
    """Upload a manifest under a tag or its digest; returns its digest."""
    status, _, body = await client.request(
        "PUT",
        host,
        repository,
        f"/v2/{repository}/manifests/{identifier}",
        credential=credential,
        data=raw,
        headers={"Content-Type": media_type},
        max_bytes=registries.MAX_ERROR_BODY,
        push=True,
    )
    if status != 201:
        client.raise_for(status, f"{host}/{repository}:{identifier} manifest upload", body)
    return registries.digest_of(raw)
