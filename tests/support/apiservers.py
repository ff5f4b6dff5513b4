"""A small HTTPS server speaking the Kubernetes list/watch protocol, for the informer tests.

``FakeApiServerForTests`` is a test double, not a kube-apiserver: it serves paginated
lists (``limit`` / ``continue``), watches as newline-delimited events, 410 Gone and
bookmarks, each scripted by the test, so that what a real API server does only now and
then (compaction, an expired continue token, a proxy closing every watch) happens on
cue. The e2e suite runs the webhook against the real kube-apiserver.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

#: A scripted watch: an HTTP status other than 200, or the events to send before the
#: watch ends (``hold=True``: stay open afterwards, until the watch's timeout).
Status = int


@dataclasses.dataclass
class ScriptedWatch:
    """What one watch call does."""

    events: Sequence[Mapping[str, Any]] = ()
    status: Status = 200
    hold: bool = False
    #: With ``hold``: end after this long instead of the watch's timeout.
    hold_seconds: float | None = None


@dataclasses.dataclass
class Call:
    """One request the server saw."""

    path: str
    params: dict[str, str]


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


class FakeApiServerForTests:
    """Lists and watches over HTTPS on 127.0.0.1; every request is recorded."""

    def __init__(self) -> None:
        #: path -> the objects a list returns (in order).
        self.objects: dict[str, list[dict[str, Any]]] = {}
        self.resource_version = 100
        self.lists: list[Call] = []
        self.watches: list[Call] = []
        #: path -> what the next watches do, in order; then ``default_hold`` decides.
        self.scripts: dict[str, list[ScriptedWatch]] = {}
        #: With no script left: hold the watch open (True) or close it at once (False).
        self.default_hold = True
        #: continue tokens answered with 410 Gone (once each).
        self.expired: set[str] = set()
        #: Status codes that the next lists answer with instead of a page.
        self.failing_lists: list[int] = []
        self.list_received = asyncio.Event()
        self.watch_received = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def add(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object, stamped with the next resourceVersion."""
        self.resource_version += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.resource_version)
        self.objects.setdefault(path, []).append(obj)
        return obj

    def script(self, path: str, *watches: ScriptedWatch) -> None:
        """Queue what the next watches of path do."""
        self.scripts.setdefault(path, []).extend(watches)

    async def start(self, ssl_context: ssl.SSLContext) -> None:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        server = site._server  # aiohttp has no public accessor for the bound port
        self.port = next(iter(getattr(server, "sockets", ()))).getsockname()[1]

    async def stop(self) -> None:
        """Release held watches and close."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """https://127.0.0.1:PORT"""
        return f"https://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        if params.get("watch") in ("1", "true"):
            self.watches.append(Call(request.path, params))
            self.watch_received.set()
            return await self._watch(request, params)
        self.lists.append(Call(request.path, params))
        self.list_received.set()
        return self._list(request.path, params)

    def _list(self, path: str, params: Mapping[str, str]) -> web.Response:
        if self.failing_lists:
            code = self.failing_lists.pop(0)
            return web.json_response(
                _status(code, "InternalError", "scripted failure"), status=code
            )
        token = params.get("continue", "")
        if token in self.expired:
            self.expired.discard(token)
            return web.json_response(
                _status(410, "Expired", "The provided continue parameter is too old"), status=410
            )
        offset = int(token.removeprefix("offset-")) if token else 0
        limit = int(params.get("limit") or 0) or len(self.objects.get(path, [])) or 1
        every = self.objects.get(path, [])
        page = every[offset : offset + limit]
        metadata: dict[str, Any] = {"resourceVersion": str(self.resource_version)}
        if offset + limit < len(every):
            metadata["continue"] = f"offset-{offset + limit}"
        return web.json_response({"kind": "List", "metadata": metadata, "items": page})

    async def _watch(self, request: web.Request, params: Mapping[str, str]) -> web.StreamResponse:
        queued = self.scripts.get(request.path) or []
        scripted = queued.pop(0) if queued else ScriptedWatch(hold=self.default_hold)
        if scripted.status != 200:
            return web.json_response(
                _status(scripted.status, "Expired", "too old resource version"),
                status=scripted.status,
            )
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        # The informer may be cancelled (its connection closed) at any point.
        with contextlib.suppress(ConnectionResetError):
            for event in scripted.events:
                await response.write(json.dumps(event).encode() + b"\n")
            if scripted.hold:
                timeout = scripted.hold_seconds or float(params.get("timeoutSeconds") or 60)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), timeout)
            await response.write_eof()
        return response


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """A watch event."""
    return {"type": kind, "object": obj}


def bookmark(resource_version: str) -> dict[str, Any]:
    """A BOOKMARK event: only a resourceVersion, no object change."""
    return event(
        "BOOKMARK", {"kind": "Namespace", "metadata": {"resourceVersion": resource_version}}
    )


def gone_event() -> dict[str, Any]:
    """The ERROR event a watch sends when its resourceVersion was compacted away."""
    return event("ERROR", _status(410, "Expired", "too old resource version: 1 (100)"))
