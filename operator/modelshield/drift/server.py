"""The drift monitor's HTTP service (aiohttp).

- ``POST /`` (and ``/events``): one KServe CloudEvent or plain JSON batch. Answers 202
  when queued, 4xx with ``{"reason", "message"}`` when malformed (counted by reason),
  429 with ``Retry-After`` when the queue is full (counted as dropped): the KServe payload
  logger has no backpressure of its own, so the monitor must shed load rather than grow.
- ``GET /metrics``: Prometheus text; ``GET /healthz``: the process serves;
  ``GET /readyz``: the window worker runs and the queue has room.

Parsing happens in the request handler (so a bad request is answered with its reason);
counting happens in one worker task that drains the queue in bulk, so that a burst of
single-row events costs one vectorised update rather than one per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import prometheus_client
from aiohttp import web

from modelshield.drift import alarms, config, metrics, monitoring, notifying, payloads

log = logging.getLogger(__name__)

DRAIN_LIMIT = 4096
"""Events taken from the queue per worker step: bounds one step's latency and memory."""
GATHER_SECONDS = 0.01
"""How long the worker lets events gather before a step: a window of rows needs no
sub-millisecond latency, and one vectorised update per 10 ms costs far less than one per
event."""

LARGE_BODY_BYTES = 1024 * 1024
"""Bodies larger than this (or of unknown length) are read and parsed one at a time: the
parsed form of a body takes several times its size, and bodies read at the same time
would add up."""

MISMATCH_LABELS = 100
"""Distinct (feature, problem) pairs logged and labelled; the rest count under OTHER_FEATURES."""
OTHER_FEATURES = "(other)"


class Service:
    """The queue, the worker and the handlers of one monitor."""

    def __init__(
        self,
        settings: config.MonitorConfig,
        monitor: monitoring.Monitor,
        sink: notifying.EventSink | None = None,
    ) -> None:
        """Wire a monitor to its metrics; the queue is created with the event loop."""
        self.settings = settings
        self.monitor = monitor
        self.metrics = metrics.Metrics()
        self.metrics.declare(monitor)
        self.sink = sink
        self.layouts = monitor.layouts_by_stream
        self.queue: asyncio.Queue[payloads.Batch] = asyncio.Queue(maxsize=settings.queue_size)
        # Events vary from one row to a whole body of them: the queue is bounded in values
        # too, so that its memory is bounded whatever the mix.
        self.queued_values = 0
        self.worker: asyncio.Task[None] | None = None
        self._posting: set[asyncio.Task[bool]] = set()
        self._warned: set[tuple[str, str]] = set()
        self._large_body = asyncio.Lock()

    async def ingest(self, request: web.Request) -> web.StreamResponse:
        """Parse one event and queue it."""
        length = request.content_length
        if length is None or length > LARGE_BODY_BYTES:
            async with self._large_body:
                return await self._ingest(request)
        return await self._ingest(request)

    async def _ingest(self, request: web.Request) -> web.StreamResponse:
        too_large = payloads.PayloadError(
            "too-large", f"the body exceeds {self.settings.max_body_bytes} bytes", 413
        )
        if (request.content_length or 0) > self.settings.max_body_bytes:
            return self._reject(too_large)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._reject(too_large)
        # Every value but the last is followed by a comma: a body with more commas than the
        # queue holds values is refused before it is parsed (its parsed form would be the
        # largest thing in memory), whatever its byte size.
        if body.count(b",") >= self.settings.max_queued_values:
            return self._reject(
                payloads.PayloadError(
                    "too-many-values",
                    f"the body holds more than maxQueuedValues "
                    f"({self.settings.max_queued_values}) values; send smaller batches",
                    413,
                )
            )
        try:
            batch = payloads.parse(request.headers, body, self.layouts)
        except payloads.PayloadError as error:
            return self._reject(error)
        except Exception:  # a parser bug must be a 4xx for the client, and a log line for us
            log.exception("could not parse a request of %d bytes", len(body))
            return self._reject(
                payloads.PayloadError("unprocessable", "the payload could not be read")
            )
        del body
        if batch is None:
            self.metrics.event_counters["ignored"].inc()
            return web.Response(status=202)
        if batch.mismatches:
            self._mismatched(batch.mismatches)
        values = batch.values
        if values > self.settings.max_queued_values:
            return self._reject(
                payloads.PayloadError(
                    "too-many-values",
                    f"the event holds {values} values, more than maxQueuedValues "
                    f"({self.settings.max_queued_values}); send smaller batches",
                    413,
                )
            )
        try:
            if self.queued_values and self.queued_values + values > self.settings.max_queued_values:
                raise asyncio.QueueFull
            self.queue.put_nowait(batch)
        except asyncio.QueueFull:
            self.metrics.dropped.inc()
            return web.json_response(
                {"reason": "queue-full", "message": "the monitor is behind; retry later"},
                status=429,
                headers={"Retry-After": "1"},
            )
        self.queued_values += values
        self.metrics.event_counters[batch.stream].inc()
        return web.Response(status=202)

    def _reject(self, error: payloads.PayloadError) -> web.Response:
        self.metrics.rejected.labels(error.reason).inc()
        return web.json_response(
            {"reason": error.reason, "message": error.message}, status=error.status
        )

    def _mismatched(self, mismatches: tuple[tuple[str, str], ...]) -> None:
        for feature, problem in mismatches:
            if (feature, problem) not in self._warned:
                # Extra names come from clients: their number (labels, memory) is capped.
                if len(self._warned) >= MISMATCH_LABELS:
                    self.metrics.mismatches.labels(OTHER_FEATURES, problem).inc()
                    continue
                self._warned.add((feature, problem))
                log.warning(
                    "payload does not match the profile: feature %r is %s (%s)",
                    feature,
                    problem,
                    "counted as missing" if problem == "missing" else "not in the profile; ignored",
                )
            self.metrics.mismatches.labels(feature, problem).inc()

    async def run_worker(self) -> None:
        """Drain the queue forever, counting rows and scoring full windows."""
        while True:
            batches = [await self.queue.get()]
            if self.queue.qsize() < DRAIN_LIMIT:
                await asyncio.sleep(GATHER_SECONDS)
            while len(batches) < DRAIN_LIMIT:
                try:
                    batches.append(self.queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            self.queued_values -= sum(batch.values for batch in batches)
            self.metrics.queue_depth.set(self.queue.qsize())
            try:
                results = self.monitor.add(batches)
            except Exception:  # one bad batch must not stop the monitor
                log.exception("could not count %d batches; they are skipped", len(batches))
                continue
            for stream in self.layouts:
                rows = sum(batch.rows for batch in batches if batch.stream == stream)
                if rows:
                    self.metrics.counted(stream, rows, self.monitor.fill(stream))
            for result in results:
                self.metrics.publish(result)
                for crossing in result.crossings:
                    self._announce(crossing)

    def _announce(self, crossing: monitoring.Crossing) -> None:
        raised = crossing.transition is alarms.Transition.RAISED
        log.log(
            logging.WARNING if raised else logging.INFO,
            "drift %s: stream=%s feature=%s statistic=%s score=%.4g threshold=%.4g window=%d",
            "detected" if raised else "cleared",
            crossing.stream,
            crossing.feature,
            crossing.measure,
            crossing.score,
            crossing.threshold,
            crossing.window,
        )
        if self.sink is not None:
            task = asyncio.get_running_loop().create_task(self.sink.post(crossing))
            self._posting.add(task)
            task.add_done_callback(self._posting.discard)

    async def healthz(self, request: web.Request) -> web.Response:
        """The process serves HTTP."""
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        """Ready while the worker runs and the queue has room."""
        if self.worker is None or self.worker.done():
            return web.Response(status=503, text="window worker is not running\n")
        if self.queue.full() or self.queued_values >= self.settings.max_queued_values:
            return web.Response(status=503, text="queue full\n")
        return web.Response(text="ok\n")

    async def metrics_text(self, request: web.Request) -> web.Response:
        """Prometheus exposition."""
        self.metrics.queue_depth.set(self.queue.qsize())
        return web.Response(
            body=prometheus_client.generate_latest(self.metrics.registry),
            headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST},
        )


SERVICE_KEY = web.AppKey("drift_service", Service)


def build_app(service: Service, *, start_worker: bool = True) -> web.Application:
    """The aiohttp application; start_worker=False leaves the queue undrained (tests)."""
    app = web.Application(client_max_size=service.settings.max_body_bytes)
    app[SERVICE_KEY] = service
    for path in ("/", "/events"):
        app.router.add_post(path, service.ingest)
    app.router.add_get("/healthz", service.healthz)
    app.router.add_get("/readyz", service.readyz)
    app.router.add_get("/metrics", service.metrics_text)

    async def worker_context(app: web.Application) -> AsyncIterator[None]:
        if start_worker:
            service.worker = asyncio.get_running_loop().create_task(service.run_worker())
        yield
        if service.worker is not None:
            service.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await service.worker

    app.cleanup_ctx.append(worker_context)
    return app
