"""The informers against an HTTPS server speaking list/watch: pages, 410 Gone, bookmarks, backoff.

The server is ``FakeApiServerForTests`` (scripted, so that compaction and misbehaving
watches happen on cue); the informer, its aiohttp client and TLS are the real ones.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import aiohttp
import pytest

from modelshield_webhooks import caches, connections, watching
from tests.support import admissionscenarios as scenarios
from tests.support import apiservers
from tests.support.apiservers import ScriptedWatch
from tests.support.watchingapiserver import (  # fixtures, shared by name
    PATIENCE_SECONDS,
    Sleeps,
    _running,
    _stop,
    _until,
    apiserver,
    connection,
    session,
)

__all__ = ["apiserver", "connection", "session"]

pytestmark = pytest.mark.integration

NAMESPACES = watching.PATHS[caches.NAMESPACES]


def _team(state: caches.ClusterState, namespace: str) -> str | None:
    """The namespace's team label as cached, None when the namespace is not cached."""
    labels = state.namespace_labels_now(namespace)
    return None if labels is None else labels.get("team", "")


def _namespace(name: str) -> dict[str, Any]:
    return scenarios.namespace(name, {"team": name})


async def test_lists_every_page_with_continue_tokens(
    apiserver: apiservers.FakeApiServerForTests,
    session: aiohttp.ClientSession,
    connection: connections.Connection,
) -> None:
    for index in range(5):
        apiserver.add(NAMESPACES, _namespace(f"team-{index}"))
    state = caches.ClusterState()
    freshness = watching.Freshness()
    task = _running(
        watching.informer(
            session, connection, caches.NAMESPACES, state, page_size=2, freshness=freshness
        )
    )
    try:
        await _until("the watch after the list", lambda: bool(apiserver.watches))
    finally:
        await _stop(task)
    assert [call.params for call in apiserver.lists] == [
        {"limit": "2"},
        {"limit": "2", "continue": "offset-2"},
        {"limit": "2", "continue": "offset-4"},
    ]
    assert state.unsynced() == [k for k in caches.KINDS if k != caches.NAMESPACES]
    for index in range(5):
        assert _team(state, f"team-{index}") == f"team-{index}"
    # The watch starts from the list's resourceVersion, asking for bookmarks.
    (watch,) = apiserver.watches
    assert watch.params["resourceVersion"] == str(apiserver.resource_version)
    assert watch.params["allowWatchBookmarks"] == "true"
    assert caches.NAMESPACES in freshness.snapshot()


async def test_an_expired_continue_token_lists_again_from_the_start(
    apiserver: apiservers.FakeApiServerForTests,
    session: aiohttp.ClientSession,
    connection: connections.Connection,
) -> None:
    for index in range(3):
        apiserver.add(NAMESPACES, _namespace(f"team-{index}"))
    apiserver.expired.add("offset-2")
    state = caches.ClusterState()
    sleeps = Sleeps(limit=50)
    task = _running(
        watching.informer(session, connection, caches.NAMESPACES, state, page_size=2, sleep=sleeps)
    )
    try:
        await _until("the watch after the list", lambda: bool(apiserver.watches))
    finally:
        await _stop(task)
    assert [call.params.get("continue") for call in apiserver.lists] == [
        None,
        "offset-2",  # 410: the list starts over
        None,
        "offset-2",
    ]
    assert len(sleeps.delays) == 1  # one short pause before listing again, not a loop
    assert _team(state, "team-2") == "team-2"


@pytest.mark.parametrize("how", ["http-410", "error-event"])
async def test_gone_lists_again_and_sees_what_changed_meanwhile(
    apiserver: apiservers.FakeApiServerForTests,
    session: aiohttp.ClientSession,
    connection: connections.Connection,
    how: str,
) -> None:
    apiserver.add(NAMESPACES, _namespace("before"))
    gone = (
        ScriptedWatch(status=410)
        if how == "http-410"
        else ScriptedWatch(events=[apiservers.gone_event()])
    )
    apiserver.script(NAMESPACES, gone)
    state = caches.ClusterState()
    sleeps = Sleeps(limit=1)
    task = _running(watching.informer(session, connection, caches.NAMESPACES, state, sleep=sleeps))
    try:
        await asyncio.wait_for(sleeps.full.wait(), PATIENCE_SECONDS)  # the pause after 410
        assert _team(state, "before") == "before"
        # Changed while the watch was failing; only a fresh list can tell.
        apiserver.objects[NAMESPACES] = []
        apiserver.add(NAMESPACES, _namespace("after"))
        sleeps.allow(1)
        await _until("the second watch", lambda: len(apiserver.watches) == 2)
    finally:
        await _stop(task)
    assert len(apiserver.lists) == 2
    assert _team(state, "after") == "after"
    assert _team(state, "before") is None
    # The second watch starts from the second list's version, not the compacted one.
    assert apiserver.watches[1].params["resourceVersion"] == str(apiserver.resource_version)
    assert len(sleeps.delays) == 1
    assert sleeps.delays[0] <= watching.INITIAL_BACKOFF_SECONDS


async def test_events_are_applied_and_bookmarks_move_the_version_only(
    apiserver: apiservers.FakeApiServerForTests,
    session: aiohttp.ClientSession,
    connection: connections.Connection,
) -> None:
    apiserver.add(NAMESPACES, _namespace("kept"))
    apiserver.add(NAMESPACES, _namespace("deleted"))
    added = _namespace("added")
    added["metadata"]["resourceVersion"] = "500"
    deleted = _namespace("deleted")
    deleted["metadata"]["resourceVersion"] = "501"
    apiserver.script(
        NAMESPACES,
        ScriptedWatch(
            events=[apiservers.event("ADDED", added), apiservers.event("DELETED", deleted)]
        ),
        ScriptedWatch(events=[apiservers.bookmark("777")]),
    )
    state = caches.ClusterState()
    ticks = itertools.count()
    freshness = watching.Freshness(clock=lambda: float(next(ticks)))
    heard: list[float] = []
    sleeps = Sleeps(limit=50)
    task = _running(
        watching.informer(
            session, connection, caches.NAMESPACES, state, freshness=freshness, sleep=sleeps
        )
    )
    try:
        await _until("the third watch", lambda: len(apiserver.watches) == 3)
        heard.append(freshness.snapshot()[caches.NAMESPACES])
    finally:
        await _stop(task)
    assert _team(state, "added") == "added"
    assert _team(state, "deleted") is None
    assert _team(state, "kept") == "kept"
    # Each watch resumes where the last one left off; a bookmark changes nothing else.
    assert [w.params["resourceVersion"] for w in apiserver.watches] == [
        str(apiserver.resource_version),
        "501",
        "777",
    ]
    assert state.version == 3  # the list and two events; the bookmark changed nothing
    # Started (0), the list, two events, the end of a watch that made progress, the
    # bookmark, the end of its watch (6): each one heard from the API server.
    assert heard == [6.0]
    # Watches that ended after an event or a bookmark are progress: no backoff at all.
    assert sleeps.delays == []


async def test_watches_that_close_at_once_back_off_and_progress_resets_it(
    apiserver: apiservers.FakeApiServerForTests,
    session: aiohttp.ClientSession,
    connection: connections.Connection,
) -> None:
    apiserver.add(NAMESPACES, _namespace("kept"))
    apiserver.default_hold = False  # a proxy that closes every watch at once
    sleeps = Sleeps(limit=8)
    backoff = watching.Backoff(0.1, 1.6, uniform=random.Random(7).uniform)  # noqa: S311 - reproducible jitter
    state = caches.ClusterState()
    task = _running(
        watching.informer(
            session, connection, caches.NAMESPACES, state, backoff=backoff, sleep=sleeps
        )
    )
    try:
        await asyncio.wait_for(sleeps.full.wait(), PATIENCE_SECONDS)
        assert len(apiserver.watches) == 8
        # Progress (one event) resets the backoff: the next empty watch waits briefly again.
        changed = _namespace("kept")
        changed["metadata"]["resourceVersion"] = "900"
        apiserver.script(NAMESPACES, ScriptedWatch(events=[apiservers.event("MODIFIED", changed)]))
        sleeps.allow(1)
        await asyncio.wait_for(sleeps.full.wait(), PATIENCE_SECONDS)
    finally:
        await _stop(task)
    delays, after_progress = sleeps.delays[:8], sleeps.delays[8:]
    steps = [0.1, 0.2, 0.4, 0.8, 1.6, 1.6, 1.6, 1.6]
    for delay, step in zip(delays, steps, strict=True):
        assert step / 2 <= delay <= step, (delays, steps)
    assert len(set(delays[4:])) > 1  # jittered, not in lockstep with other replicas
    # The event's watch was followed at once by another (no pause), which closed empty.
    assert len(apiserver.watches) == 10
    assert apiserver.watches[9].params["resourceVersion"] == "900"
    assert after_progress == [pytest.approx(after_progress[0])]
    assert 0.05 <= after_progress[0] <= 0.1
    assert len(apiserver.lists) == 1  # an empty watch is watched again, not relisted


async def test_failing_lists_back_off_too(
    apiserver: apiservers.FakeApiServerForTests,
    session: aiohttp.ClientSession,
    connection: connections.Connection,
) -> None:
    apiserver.failing_lists = [500] * 6
    sleeps = Sleeps(limit=6)
    backoff = watching.Backoff(0.1, 0.4)
    state = caches.ClusterState()
    task = _running(
        watching.informer(
            session, connection, caches.NAMESPACES, state, backoff=backoff, sleep=sleeps
        )
    )
    try:
        await asyncio.wait_for(sleeps.full.wait(), PATIENCE_SECONDS)
        assert not state.synced
        sleeps.allow(1)
        await _until("the list to succeed", lambda: bool(apiserver.watches))
    finally:
        await _stop(task)
    assert len(apiserver.lists) == 7
    for delay, step in zip(sleeps.delays, [0.1, 0.2, 0.4, 0.4, 0.4, 0.4], strict=True):
        assert step / 2 <= delay <= step
    assert state.unsynced() == [k for k in caches.KINDS if k != caches.NAMESPACES]


async def test_a_quiet_watch_that_ends_cleanly_keeps_the_cache_fresh(
    apiserver: apiservers.FakeApiServerForTests,
    session: aiohttp.ClientSession,
    connection: connections.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A kind nobody changes may get no bookmark: a watch that stayed open without events
    # shows the cache was current. One that closes at once shows nothing.
    monkeypatch.setattr(watching, "HEALTHY_WATCH_SECONDS", 0.2)
    apiserver.add(NAMESPACES, _namespace("kept"))
    apiserver.default_hold = False
    apiserver.script(NAMESPACES, ScriptedWatch(hold=True, hold_seconds=0.3))
    ticks = itertools.count()
    freshness = watching.Freshness(clock=lambda: float(next(ticks)))
    sleeps = Sleeps(limit=1)
    state = caches.ClusterState()
    task = _running(
        watching.informer(
            session, connection, caches.NAMESPACES, state, freshness=freshness, sleep=sleeps
        )
    )
    try:
        await asyncio.wait_for(sleeps.full.wait(), PATIENCE_SECONDS)
    finally:
        await _stop(task)
    # started (0), listed (1), the quiet watch ended cleanly (2); then a watch closed at
    # once (backed off, nothing heard).
    assert freshness.snapshot()[caches.NAMESPACES] == 2.0
    assert len(apiserver.watches) == 2
