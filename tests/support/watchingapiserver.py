"""A scripted API server that the webhook's caches watch, and the waits of the watching tests."""

from __future__ import annotations

import asyncio
import pathlib
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
import pytest

from modelshield_webhooks import connections
from tests.support import apiservers, pki
from tests.support.httpsclient import client_ssl_context

#: Long enough for a loaded 2-core machine; every wait below ends as soon as it can.
PATIENCE_SECONDS = 10.0


@pytest.fixture
async def apiserver(
    serving_files: tuple[pathlib.Path, pathlib.Path],
) -> AsyncIterator[apiservers.FakeApiServerForTests]:
    """The fake API server on a free loopback port, serving the test CA's certificate."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(*serving_files)
    fake = apiservers.FakeApiServerForTests()
    await fake.start(server_context)
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The informer's HTTP client session."""
    async with aiohttp.ClientSession() as client:
        yield client
    # aiohttp closes TLS connections a moment after the session (its documented graceful
    # shutdown); a loop closed before then warns of an unclosed transport later.
    await asyncio.sleep(0.25)


@pytest.fixture
def connection(
    apiserver: apiservers.FakeApiServerForTests, authority: pki.Authority
) -> connections.Connection:
    """Where the informer finds the fake API server, trusting only the test CA."""
    return connections.Connection(apiserver.base_url, client_ssl_context(authority))


class Sleeps:
    """Records the informer's backoff delays without waiting them out.

    At ``limit`` delays it holds the informer until ``allow()``, so that a test reads a
    bounded sequence and can change the script in between.
    """

    def __init__(self, limit: int) -> None:
        self.delays: list[float] = []
        self.limit = limit
        self.full = asyncio.Event()
        self._go = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if len(self.delays) >= self.limit:
            self._go.clear()
            self.full.set()
            await self._go.wait()
        await asyncio.sleep(0)

    def allow(self, more: int) -> None:
        """Let the informer go on, up to ``more`` further delays."""
        self.limit = len(self.delays) + more
        self.full.clear()
        self._go.set()


async def _until(what: str, condition: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + PATIENCE_SECONDS
    while not condition():
        if loop.time() > give_up:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


def _running(informer: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    return asyncio.create_task(informer)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
