"""The aiohttp HTTPS application: /validate, /mutate, /validate-resources, health and metrics.

Keep-alive connections, no per-request I/O beyond the socket (caches and the verifier's
cache answer), and a body limit: what matters for latency is that nothing waits.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
from collections.abc import Awaitable, Callable

from aiohttp import web

from modelshield_webhooks import (
    certificates,
    configurations,
    contexts,
    mutating,
    resources,
    responses,
    validating,
    watching,
)

_logger = logging.getLogger(__name__)

#: The API server sends at most ~3 MiB objects, twice (object and oldObject) on UPDATE.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
#: Longer than the API server's idle-connection timeout (Go's 90 s): the client, not the
#: server, closes an idle keep-alive connection, so a request is never sent on one that
#: the server is closing (a failed call, which failurePolicy: Fail turns into a denial).
KEEPALIVE_SECONDS = 120.0
JSON = "application/json"

Reviewer = Callable[[bytes, contexts.AdmissionContext], Awaitable[responses.ReviewResponse]]

CONTEXT_KEY = web.AppKey("context", contexts.AdmissionContext)


def _json_response(document: object, status: int = 200) -> web.Response:
    return web.Response(body=responses.encode(document), status=status, content_type=JSON)


#: Answered when even the fallback encoder failed: valid, but without the uid the API
#: server matches, so it counts as a failed call (a denial under failurePolicy: Fail).
_UNENCODABLE = json.dumps(
    responses.internal_error("", "an answer that could not be encoded"), separators=(",", ":")
).encode()


def _refused(request: web.Request, status: int, why: str) -> None:
    # The access log is off (a line per review costs latency); what never reaches a
    # handler would otherwise leave no trace. The peer and the sizes only, never the body.
    _logger.warning(
        "refused %s %s from %s with HTTP %d: %s",
        request.method,
        request.path,
        request.remote,
        status,
        why,
    )


def _review_handler(reviewer: Reviewer) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        if request.content_type != JSON:
            _refused(request, 415, f"Content-Type {request.content_type[:100]!r}")
            return _json_response(
                {"error": f"Content-Type must be {JSON}, not {request.content_type!r}"}, 415
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            # aiohttp answers it and keeps serving.
            _refused(
                request,
                413,
                f"body past the limit of {request.client_max_size} bytes "
                f"(Content-Length: {request.content_length})",
            )
            raise
        context = request.app[CONTEXT_KEY]
        answer = await reviewer(body, context)
        try:
            encoded = responses.encode(answer)
        except Exception:  # encode() falls back to json: this is the last line of defence
            _logger.exception("%s: the answer could not be encoded", request.path)
            encoded = _UNENCODABLE
        response = web.Response(body=encoded, content_type=JSON)
        if context.draining:
            # The API server reuses keep-alive connections to this pod, whatever the
            # endpoints say now; closing one when the drain ends races with a review
            # written on it (an EOF, a denial under failurePolicy: Fail). "Connection:
            # close" on the answer ends it cleanly: the next review dials a ready pod.
            response.force_close()
        return response

    return handle


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.Response:
    context = request.app[CONTEXT_KEY]
    state = context.state
    if context.draining:
        return _json_response({"ready": False, "draining": True}, 503)
    if state.synced:
        return _json_response({"ready": True, "cached": state.counts()})
    return _json_response({"ready": False, "notSynced": state.unsynced()}, 503)


async def _metrics(request: web.Request) -> web.Response:
    counters = request.app[CONTEXT_KEY].metrics
    return web.Response(body=counters.render(), headers={"Content-Type": counters.CONTENT_TYPE})


def application(
    context: contexts.AdmissionContext, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> web.Application:
    """The web application; TLS and the listening socket are the runner's business."""
    app = web.Application(client_max_size=max_body_bytes)
    app[CONTEXT_KEY] = context
    # Read at scrape time, from whichever state the context holds then.
    context.metrics.track_caches(lambda: watching.freshness_of(context.state).snapshot())
    app.router.add_post(configurations.VALIDATE_PATH, _review_handler(validating.review))
    app.router.add_post(configurations.MUTATE_PATH, _review_handler(mutating.review))
    app.router.add_post(configurations.VALIDATE_RESOURCES_PATH, _review_handler(resources.review))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


class RunningServer:
    """A started HTTPS server; ``stop()`` drains open requests, then closes."""

    def __init__(
        self, runner: web.AppRunner, site: web.TCPSite, tasks: list[asyncio.Task[None]]
    ) -> None:
        self.runner = runner
        self.site = site
        self.tasks = tasks

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked for)."""
        server = self.site._server  # aiohttp exposes no public accessor for it
        # asyncio's Server or uvloop's: both have sockets, neither subclasses the other.
        sockets: list[socket.socket] = list(getattr(server, "sockets", None) or ())
        if not sockets:
            raise RuntimeError("the server is not listening")
        port: int = sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        """Cancel background tasks and shut the server down gracefully."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.runner.cleanup()
        gc.unfreeze()  # what start() froze may be garbage now (in tests, many servers)


async def start(
    context: contexts.AdmissionContext,
    certificate: certificates.ReloadingCertificate,
    *,
    host: str = "0.0.0.0",  # noqa: S104 - a webhook in a pod listens on the pod's address
    port: int = 8443,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    certificate_poll_seconds: float = certificates.DEFAULT_POLL_SECONDS,
) -> RunningServer:
    """Listen over HTTPS and watch the certificate files."""
    runner = web.AppRunner(
        application(context, max_body_bytes=max_body_bytes),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=5.0,
        keepalive_timeout=KEEPALIVE_SECONDS,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=certificate.context, backlog=1024)
    await site.start()
    watcher = asyncio.create_task(certificate.watch(certificate_poll_seconds))
    # What exists now (imported libraries, compiled models, the app) is never garbage:
    # freezing it keeps full collections from walking it, a pause of ~10 ms that would
    # otherwise land in the tail latency of whichever reviews are in flight.
    gc.freeze()
    _logger.info("modelshield webhook listening on https://%s:%d", host, port)
    return RunningServer(runner, site, [watcher])
