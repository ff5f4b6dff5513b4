"""A real small model server: a scikit-learn classifier behind KServe v1 and v2 routes.

It records every request it receives (path and headers), so tests can prove what the
guard did not let through.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from aiohttp import web
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.pipeline import Pipeline, make_pipeline  # type: ignore[import-untyped]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

FEATURES = 30


def train() -> Pipeline:
    """A classifier trained on scikit-learn's bundled breast cancer data."""
    data = load_breast_cancer()
    model = make_pipeline(StandardScaler(), LogisticRegression())
    model.fit(data.data[:400], data.target[:400])
    return model


def sample_rows(count: int) -> list[list[float]]:
    """Held-out real rows."""
    data = load_breast_cancer()
    return [[float(v) for v in row] for row in data.data[400 : 400 + count]]


@dataclasses.dataclass
class Seen:
    """What reached the model server."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ModelServer:
    """The model server's handlers."""

    def __init__(self, model: Pipeline, *, delay: float = 0.0) -> None:
        self.model = model
        self.delay = delay
        self.seen: list[Seen] = []

    async def _record(self, request: web.Request) -> bytes:
        body = await request.read()
        self.seen.append(Seen(request.method, request.raw_path, dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        return body

    async def predict_v1(self, request: web.Request) -> web.Response:
        await self._record(request)
        document: Any = await request.json()
        rows = np.asarray(document.get("instances") or document.get("inputs"), dtype=float)
        return web.json_response({"predictions": self.model.predict_proba(rows).tolist()})

    async def infer_v2(self, request: web.Request) -> web.Response:
        await self._record(request)
        tensor = (await request.json())["inputs"][0]
        rows = np.asarray(tensor["data"], dtype=float).reshape(tensor["shape"])
        labels = self.model.predict(rows).tolist()
        return web.json_response(
            {
                "model_name": request.match_info["model"],
                "outputs": [
                    {"name": "label", "shape": [len(labels)], "datatype": "INT64", "data": labels}
                ],
            }
        )

    async def metadata(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"name": request.match_info.get("model", ""), "ready": True})

    def app(self) -> web.Application:
        """Routes for any model name (the guard decides which may be called)."""
        app = web.Application()
        app.router.add_post("/v1/models/{model}:predict", self.predict_v1)
        app.router.add_post("/v1/models/{model}:explain", self.predict_v1)
        app.router.add_get("/v1/models/{model}", self.metadata)
        app.router.add_post("/v2/models/{model}/infer", self.infer_v2)
        app.router.add_get("/v2/models/{model}", self.metadata)
        app.router.add_get("/v2/health/ready", self.metadata)
        app.router.add_route("*", "/{tail:.*}", self.metadata)
        return app


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve an app on 127.0.0.1; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def raw_request(
    base: str, request: bytes, *, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client normalises the path) and read one response."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
        return status, headers, body
    finally:
        writer.close()
