"""List+watch with resync, on asyncio, feeding ``caches.ClusterState``.

For each kind: list (paginated) and replace the cache, then watch from the list's
resourceVersion, applying events as they come; a 410 Gone (history compacted) or the
resync period starts over with a fresh list. Whatever ends a watch without progress (an
error, a 410, a watch that closes at once) waits a jittered, doubling, bounded backoff
first, reset by the next event or bookmark: a misbehaving API server or proxy never gets
a tight loop of requests. When each kind last heard from the API server is kept
(``Freshness``: a list, an event, a bookmark, or a long watch that ended without one)
for the cache-age gauge.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from modelshield_webhooks import caches, connections, servingruntimes

_logger = logging.getLogger(__name__)

PATHS = {
    caches.POLICIES: "/apis/modelshield.dev/v1alpha1/modelsecuritypolicies",
    caches.CLUSTER_POLICIES: "/apis/modelshield.dev/v1alpha1/clustermodelsecuritypolicies",
    caches.ARTIFACTS: "/apis/modelshield.dev/v1alpha1/modelartifacts",
    caches.NAMESPACES: "/api/v1/namespaces",
    **servingruntimes.PATHS,
}
DEFAULT_RESYNC_SECONDS = 600.0
#: Server-side timeout of one watch call; the watch is then resumed from its last version.
WATCH_SECONDS = 290
PAGE_SIZE = 500
INITIAL_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
#: A watch that lasted this long was healthy even without events (a quiet kind).
HEALTHY_WATCH_SECONDS = 10.0


class GoneError(Exception):
    """The resourceVersion (or a list's continue token) is too old: list again."""


class ApiError(Exception):
    """The API server answered with an error status."""


class NotServedError(ApiError):
    """404 on a list: the kind's CRD is not installed (KServe's, which is optional)."""


class Backoff:
    """Doubling delays up to a bound, each drawn in [half, all] of the current step.

    The jitter spreads the replicas' retries after an API server restart; the lower half
    is kept so that a retry is never immediate.
    """

    def __init__(
        self,
        initial: float = INITIAL_BACKOFF_SECONDS,
        maximum: float = MAX_BACKOFF_SECONDS,
        *,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.step = initial
        self._uniform = uniform

    def next_delay(self) -> float:
        """The delay before the next attempt; the one after is longer, up to the bound."""
        delay = self._uniform(self.step / 2, self.step)
        self.step = min(self.step * 2, self.maximum)
        return delay

    def reset(self) -> None:
        """Progress was made: the next failure waits the initial delay again."""
        self.step = self.initial


class Freshness:
    """When each kind last heard from the API server, in ``time.monotonic()`` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._last: dict[str, float] = {}
        self._clock = clock

    def started(self, resource: str) -> None:
        """An informer began: until it hears anything, its age counts from now."""
        self._last.setdefault(resource, self._clock())

    def heard(self, resource: str) -> None:
        """A list, a watch event or a bookmark arrived."""
        self._last[resource] = self._clock()

    def snapshot(self) -> Mapping[str, float]:
        """The instants by kind."""
        return dict(self._last)


# Keyed by the state it describes, so that the server (which has the state, not the
# informers) finds it without any wiring through the command line.
_FRESHNESS: weakref.WeakKeyDictionary[caches.ClusterState, Freshness] = weakref.WeakKeyDictionary()


def freshness_of(state: caches.ClusterState) -> Freshness:
    """The Freshness of the informers feeding this state (created on first use)."""
    found = _FRESHNESS.get(state)
    if found is None:
        found = _FRESHNESS[state] = Freshness()
    return found


async def _list(
    session: aiohttp.ClientSession,
    connection: connections.Connection,
    path: str,
    page_size: int = PAGE_SIZE,
) -> tuple[list[dict[str, Any]], str]:
    items: list[dict[str, Any]] = []
    params = {"limit": str(page_size)}
    while True:
        async with session.get(
            connection.base_url + path,
            params=params,
            headers=connection.headers(),
            ssl=connection.ssl_context,
        ) as response:
            if response.status == 410:
                raise GoneError  # the continue token expired mid-list: start over
            if response.status == 404:
                raise NotServedError(f"list {path}: not served (its CRD is not installed)")
            if response.status != 200:
                raise ApiError(
                    f"list {path}: HTTP {response.status}: {(await response.text())[:300]}"
                )
            page = await response.json()
        items.extend(item for item in page.get("items") or [] if isinstance(item, dict))
        metadata = page.get("metadata") or {}
        if not metadata.get("continue"):
            return items, str(metadata.get("resourceVersion", ""))
        params = {"limit": str(page_size), "continue": str(metadata["continue"])}


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
    on_progress: Callable[[], None],
) -> str:
    """Apply events until the server ends the watch; returns the last resourceVersion.

    ``on_progress`` is called for every event, bookmarks included.
    """
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
            on_progress()
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
    page_size: int = PAGE_SIZE,
    backoff: Backoff | None = None,
    freshness: Freshness | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Keep one kind of the state current, until cancelled."""
    loop = asyncio.get_running_loop()
    retry = backoff if backoff is not None else Backoff()
    fresh = freshness if freshness is not None else freshness_of(state)
    fresh.started(resource)
    progressed = False

    def progress() -> None:
        nonlocal progressed
        progressed = True
        fresh.heard(resource)

    while True:
        level, why = logging.WARNING, ""
        try:
            items, version = await _list(session, connection, PATHS[resource], page_size)
            state.replace(resource, items)
            fresh.heard(resource)
            _logger.info("listed %d %s", len(items), resource)
            relist_at = loop.time() + resync_seconds
            while (remaining := relist_at - loop.time()) > 0:
                progressed = False
                began = loop.time()
                version = await _watch(
                    session,
                    connection,
                    resource,
                    version,
                    state,
                    max(1, int(min(remaining, WATCH_SECONDS))),
                    progress,
                )
                if progressed or loop.time() - began >= HEALTHY_WATCH_SECONDS:
                    # Pending events are sent as soon as a watch starts: one that stayed
                    # open this long without any had nothing to deliver, so the cache was
                    # current when it ended (a quiet kind may get no bookmarks at all).
                    fresh.heard(resource)
                    retry.reset()
                    continue
                delay = retry.next_delay()
                _logger.warning(
                    "%s: the watch ended at once without an event; watching again in %.1fs",
                    resource,
                    delay,
                )
                await sleep(delay)
            continue  # the resync period is over: list again at once
        except asyncio.CancelledError:
            raise
        except GoneError:
            # Routine: the API server compacted the history this watch would resume from.
            level, why = logging.INFO, "resourceVersion too old, listing again"
        except NotServedError as error:
            # An optional kind whose CRD is absent: nothing of it exists, which is an
            # answer (the cache is current, and empty); looked for again, quietly.
            state.replace(resource, [])
            fresh.heard(resource)
            level, why = logging.DEBUG, str(error)
        except Exception as error:  # noqa: BLE001 - any failure: back off, list again; the cache stays
            why = f"list/watch failed ({type(error).__name__}: {error})"
        if progressed:
            retry.reset()  # events came before the failure: the API server is not stuck
        progressed = False
        delay = retry.next_delay()
        _logger.log(level, "%s: %s; retrying in %.1fs", resource, why, delay)
        await sleep(delay)


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
        for resource in (*caches.KINDS, *caches.OPTIONAL_KINDS)
    ]
    return session, tasks
