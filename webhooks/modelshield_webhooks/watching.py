"""List+watch with resync, on asyncio, feeding ``caches.ClusterState``.

For each kind: list (paginated) and replace the cache, then watch from the list's
resourceVersion, applying events as they come; a 410 Gone (history compacted) or the
resync period starts over with a fresh list; any error backs off and starts over.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from modelshield_webhooks import caches, connections

_logger = logging.getLogger(__name__)

PATHS = {
    caches.POLICIES: "/apis/modelshield.dev/v1alpha1/modelsecuritypolicies",
    caches.CLUSTER_POLICIES: "/apis/modelshield.dev/v1alpha1/clustermodelsecuritypolicies",
    caches.ARTIFACTS: "/apis/modelshield.dev/v1alpha1/modelartifacts",
    caches.NAMESPACES: "/api/v1/namespaces",
}
DEFAULT_RESYNC_SECONDS = 600.0
#: Server-side timeout of one watch call; the watch is then resumed from its last version.
WATCH_SECONDS = 290
PAGE_SIZE = 500
MAX_BACKOFF_SECONDS = 30.0


class GoneError(Exception):
    """The resourceVersion is too old: list again."""


class ApiError(Exception):
    """The API server answered with an error status."""


async def _list(
    session: aiohttp.ClientSession, connection: connections.Connection, path: str
) -> tuple[list[dict[str, Any]], str]:
    items: list[dict[str, Any]] = []
    params = {"limit": str(PAGE_SIZE)}
    while True:
        async with session.get(
            connection.base_url + path,
            params=params,
            headers=connection.headers(),
            ssl=connection.ssl_context,
        ) as response:
            if response.status != 200:
                raise ApiError(
                    f"list {path}: HTTP {response.status}: {(await response.text())[:300]}"
                )
            page = await response.json()
        items.extend(item for item in page.get("items") or [] if isinstance(item, dict))
        metadata = page.get("metadata") or {}
        if not metadata.get("continue"):
            return items, str(metadata.get("resourceVersion", ""))
        params = {"limit": str(PAGE_SIZE), "continue": str(metadata["continue"])}


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    # Not response.content's readline: it refuses lines past 128 KiB, and one watch
    # event is one line as large as its object.
    buffer = b""
    async for chunk in response.content.iter_any():
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


async def _watch(
    session: aiohttp.ClientSession,
    connection: connections.Connection,
    resource: str,
    resource_version: str,
    state: caches.ClusterState,
    seconds: int,
) -> str:
    """Apply events until the server ends the watch; returns the last resourceVersion."""
    params = {
        "watch": "1",
        "allowWatchBookmarks": "true",
        "resourceVersion": resource_version,
        "timeoutSeconds": str(seconds),
    }
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=seconds + 30)
    async with session.get(
        connection.base_url + PATHS[resource],
        params=params,
        headers=connection.headers(),
        ssl=connection.ssl_context,
        timeout=timeout,
    ) as response:
        if response.status == 410:
            raise GoneError
        if response.status != 200:
            raise ApiError(
                f"watch {resource}: HTTP {response.status}: {(await response.text())[:300]}"
            )
        async for line in _lines(response):
            event = json.loads(line)
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise GoneError
                raise ApiError(f"watch {resource}: {obj.get('message')}")
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if version:
                resource_version = str(version)
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                state.apply(resource, kind, obj)
    return resource_version


async def informer(
    session: aiohttp.ClientSession,
    connection: connections.Connection,
    resource: str,
    state: caches.ClusterState,
    *,
    resync_seconds: float = DEFAULT_RESYNC_SECONDS,
) -> None:
    """Keep one kind of the state current, until cancelled."""
    loop = asyncio.get_running_loop()
    backoff = 0.5
    while True:
        try:
            items, version = await _list(session, connection, PATHS[resource])
            state.replace(resource, items)
            _logger.info("listed %d %s", len(items), resource)
            backoff = 0.5
            relist_at = loop.time() + resync_seconds
            while (remaining := relist_at - loop.time()) > 0:
                version = await _watch(
                    session,
                    connection,
                    resource,
                    version,
                    state,
                    max(1, int(min(remaining, WATCH_SECONDS))),
                )
        except asyncio.CancelledError:
            raise
        except GoneError:
            _logger.info("%s: resourceVersion too old, listing again", resource)
        except Exception as error:  # noqa: BLE001 - any failure: back off, list again; the cache stays
            _logger.warning(
                "%s: list/watch failed (%s: %s); retrying in %.1fs",
                resource,
                type(error).__name__,
                error,
                backoff,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


def start(
    connection: connections.Connection,
    state: caches.ClusterState,
    *,
    resync_seconds: float = DEFAULT_RESYNC_SECONDS,
) -> tuple[aiohttp.ClientSession, list[asyncio.Task[None]]]:
    """Start one informer per kind; the caller closes the session after cancelling the tasks."""
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    tasks = [
        asyncio.create_task(
            informer(session, connection, resource, state, resync_seconds=resync_seconds),
            name=f"informer-{resource}",
        )
        for resource in caches.KINDS
    ]
    return session, tasks
