"""The informers against a real kube-apiserver: pages, watch events, 410 Gone, bookmarks.

A local control plane (etcd + kube-apiserver + controller manager from the binaries that
e2e/tools/build-tools.sh caches) stands in for the cluster; tests/webhooks/test_watching.py
scripts what a real API server does only now and then (an expired continue token, a watch
that closes at once) with a test double.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace

import aiohttp
import pytest
from kubernetes import client

from e2e.clients import close_api_client, new_api_client
from e2e.cluster import LocalControlPlane
from e2e.toolcache import ControlPlaneBinaries
from modelshield_webhooks import caches, connections, watching

pytestmark = pytest.mark.e2e

PATIENCE_SECONDS = 30.0
TEAMS = [f"watch-e2e-{index}" for index in range(7)]


@pytest.fixture(scope="module")
def control_plane(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[LocalControlPlane, client.ApiClient]]:
    """A control plane with seven labelled namespaces (eleven with the built-in ones)."""
    if request.config.getoption("--kubeconfig") or os.environ.get("MODELSHIELD_E2E_KUBECONFIG"):
        pytest.skip(
            "starts a control plane of its own (the cached binaries), not for a given cluster"
        )
    # Absent binaries raise MissingToolsError, which says to run e2e/tools/build-tools.sh.
    plane = LocalControlPlane(ControlPlaneBinaries.locate())
    plane.start()
    api = new_api_client(plane.kubeconfig_path)
    try:
        core = client.CoreV1Api(api)
        for name in TEAMS:
            core.create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"team": name}))
            )
        yield plane, api
    finally:
        close_api_client(api)
        plane.stop()
        plane.remove_work_dir()


class Requests:
    """The URLs the informer's session asked for (an aiohttp trace, not a stand-in)."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.config = aiohttp.TraceConfig()
        self.config.on_request_start.append(self._started)

    async def _started(
        self,
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        self.urls.append(str(params.url))


@pytest.fixture
async def traced() -> AsyncIterator[tuple[aiohttp.ClientSession, Requests]]:
    """A client session whose requests are recorded."""
    requests = Requests()
    async with aiohttp.ClientSession(trace_configs=[requests.config]) as session:
        yield session, requests
    # aiohttp closes TLS connections a moment after the session (its documented graceful
    # shutdown); a loop closed before then warns of an unclosed transport later.
    await asyncio.sleep(0.25)


@pytest.fixture
def connection(
    control_plane: tuple[LocalControlPlane, client.ApiClient],
) -> connections.Connection:
    """From the control plane's admin kubeconfig, as the webhook reads one."""
    return connections.connect(str(control_plane[0].kubeconfig_path))


async def _until(what: str, condition: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + PATIENCE_SECONDS
    while not condition():
        if loop.time() > give_up:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


def _team(state: caches.ClusterState, namespace: str) -> str | None:
    labels = state.namespace_labels_now(namespace)
    return None if labels is None else labels.get("team", "")


async def test_lists_in_pages_then_applies_watch_events(
    control_plane: tuple[LocalControlPlane, client.ApiClient],
    traced: tuple[aiohttp.ClientSession, Requests],
    connection: connections.Connection,
) -> None:
    session, requests = traced
    state = caches.ClusterState()
    ticks = itertools.count()
    freshness = watching.Freshness(clock=lambda: float(next(ticks)))
    task = asyncio.create_task(
        watching.informer(
            session, connection, caches.NAMESPACES, state, page_size=2, freshness=freshness
        )
    )
    try:
        await _until("the list", lambda: caches.NAMESPACES not in state.unsynced())
        assert [_team(state, name) for name in TEAMS] == TEAMS
        assert state.namespace_labels_now("kube-system") is not None
        lists = [url for url in requests.urls if "watch=" not in url]
        # Eleven namespaces or more, two a page: a request per page, each after the first
        # with the continue token the one before returned.
        listed = state.counts()["namespaces"]
        assert listed >= len(TEAMS) + 4  # default, kube-system, kube-public, kube-node-lease
        assert len(lists) == (listed + 1) // 2, lists
        assert sum("continue=" in url for url in lists) == len(lists) - 1
        heard = freshness.snapshot()[caches.NAMESPACES]
        client.CoreV1Api(control_plane[1]).patch_namespace(
            TEAMS[0], {"metadata": {"labels": {"team": "renamed"}}}
        )
        await _until("the watch event", lambda: _team(state, TEAMS[0]) == "renamed")
        assert freshness.snapshot()[caches.NAMESPACES] > heard
        (watch,) = [url for url in requests.urls if "watch=" in url]
        assert "allowWatchBookmarks=true" in watch
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_watch_from_the_list_version_misses_nothing_in_between(
    control_plane: tuple[LocalControlPlane, client.ApiClient],
    traced: tuple[aiohttp.ClientSession, Requests],
    connection: connections.Connection,
) -> None:
    session, _ = traced
    state = caches.ClusterState()
    path = watching.PATHS[caches.NAMESPACES]
    items, version = await watching._list(session, connection, path, page_size=3)
    state.replace(caches.NAMESPACES, items)
    # Created after the list, before the watch: the watch replays it from the version.
    client.CoreV1Api(control_plane[1]).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name="between", labels={"team": "b"}))
    )
    events: list[None] = []
    resumed = await watching._watch(
        session, connection, caches.NAMESPACES, version, state, 2, lambda: events.append(None)
    )
    assert events
    assert _team(state, "between") == "b"
    assert int(resumed) > int(version)
