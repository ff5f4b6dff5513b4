"""The guard feeds the drift monitor: the bodies it forwarded, sent on without waiting.

So a plain Deployment gets drift monitoring without KServe's payload logger. Sending
never delays or fails a request: each body is posted in the background, at most
``max_pending`` at once, and what does not fit is dropped and counted (the monitor
compares distributions; a dropped sample costs a little precision, never correctness).
"""

from __future__ import annotations

import asyncio

import aiohttp
import prometheus_client


class DriftFeed:
    """Posts forwarded request bodies to a drift monitor's URL."""

    def __init__(
        self,
        url: str,
        registry: prometheus_client.CollectorRegistry,
        *,
        max_pending: int = 64,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.max_pending = max_pending
        self.timeout = timeout
        self._pending: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.sent = prometheus_client.Counter(
            "modelshield_guard_drift_feed",
            "Bodies offered to the drift monitor, by outcome (sent, dropped, failed).",
            ["outcome"],
            registry=registry,
        )

    def offer(self, body: bytes, content_type: str) -> None:
        """Send the body in the background, or drop it when too many are on their way."""
        if len(self._pending) >= self.max_pending:
            self.sent.labels("dropped").inc()
            return
        task = asyncio.get_running_loop().create_task(self._send(body, content_type))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, body: bytes, content_type: str) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.post(
                self.url, data=body, headers={"Content-Type": content_type}
            ) as response:
                await response.read()
                outcome = "sent" if response.status < 300 else "failed"
        except (aiohttp.ClientError, TimeoutError):
            outcome = "failed"
        self.sent.labels(outcome).inc()

    async def drain(self) -> None:
        """Wait for the bodies on their way (tests, shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def close(self) -> None:
        """Finish sending and close the session."""
        await self.drain()
        if self._session is not None:
            await self._session.close()
