"""The processes of the guard's CPU benchmark (``bench_guard_cpu``) and how they start.

Each is ``python -m bench.bench_guard_cpu --role=...`` in a process of its own, so that
its CPU can be read from /proc: the model server (a fixed answer), the guard beside a bare
aiohttp proxy in **one** process (the baseline shares the guard's process, its event loop
and its share of the machine), and nginx's authentication endpoint (``nginxauth``). A
guard may run the code of another git revision (``extract``), to compare a change with
what it replaces in one run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pathlib
import socket
import subprocess
import sys
import time

import aiohttp
from aiohttp import web

from bench import bench_guard, nginxauth
from modelshield.guard import forwarding
from modelshield_webhooks import eventloops

ME = [sys.executable, "-m", "bench.bench_guard_cpu"]


def serve_model(port: int) -> None:
    """The model server: a fixed small JSON answer (its own cost is not counted)."""

    async def main() -> None:
        runner = web.AppRunner(bench_guard._upstream_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(main())


def bare_proxy_app(upstream: str) -> web.Application:
    """The baseline: what any aiohttp reverse proxy does per request, and nothing more:
    read the body, forward it with a pooled client, relay the answer in one Response."""
    sessions: list[aiohttp.ClientSession] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        if not sessions:
            sessions.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)))
        body = await request.read()
        async with sessions[0].post(
            upstream + request.raw_path,
            data=body,
            headers={"Content-Type": request.headers.get("Content-Type", "")},
        ) as answer:
            content = await answer.read()
        return web.Response(status=answer.status, body=content, content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", forward)
    return app


def bare_proxy_own_client_app(upstream: str) -> web.Application:
    """The bare proxy with the guard's own client to the model server (``forwarding``)
    instead of aiohttp's ``ClientSession``: the ceiling of a guard built on aiohttp's server
    and that client."""
    clients: list[forwarding.Client] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        if not clients:
            clients.append(forwarding.Client(upstream, timeout=30.0, connect_timeout=5.0))
        body = await request.read()
        headers = [("Content-Type", request.headers.get("Content-Type", ""))]
        answer = await clients[0].request("POST", request.raw_path, headers, body)
        return web.Response(status=answer.status, body=answer.body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", forward)
    return app


def serve_guard(
    upstream: str,
    guard_port: int,
    bare_port: int,
    scratch: str,
    event_loop: str,
    bare_own_client_port: int = 0,
) -> None:
    """The guard (as ``modelshield guard`` runs it) and the bare proxies, one process."""
    # As `modelshield guard` runs: its event loop, audit lines through logging at INFO.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=open(os.devnull, "w"))  # noqa: SIM115

    async def main() -> None:
        pipeline = bench_guard._pipeline(upstream, pathlib.Path(scratch))
        from modelshield.guard import server

        apps = [(server.build_app(pipeline), guard_port), (bare_proxy_app(upstream), bare_port)]
        if bare_own_client_port:
            apps.append((bare_proxy_own_client_app(upstream), bare_own_client_port))
        for app, port in apps:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    eventloops.run(main(), event_loop)


def serve_auth(port: int, event_loop: str) -> None:
    """nginx's ``auth_request`` endpoint."""

    async def main() -> None:
        runner = web.AppRunner(nginxauth.auth_app(bench_guard.KEY), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    eventloops.run(main(), event_loop)


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    """Return when ``port`` accepts connections; raise when ``process`` exits first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def extract(revision: str, directory: pathlib.Path) -> pathlib.Path:
    """The tree of a git revision (its operator/, webhooks/, bench/, tests/ and e2e/)."""
    root = pathlib.Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision, "operator", "webhooks", "bench", "tests",
         "e2e"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    directory.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


@dataclasses.dataclass
class Guard:
    """A running guard process: its guard's port and its bare proxies'."""

    process: subprocess.Popen[bytes]
    port: int
    bare_port: int
    bare_own_client_port: int | None = None  # this tree's guards only

    def wait(self) -> None:
        """Until every port accepts connections."""
        for port in (self.port, self.bare_port, self.bare_own_client_port):
            if port is not None:
                wait_listening(port, self.process)


def start_guard(
    upstream: str, scratch: pathlib.Path, event_loop: str, source: pathlib.Path | None = None
) -> Guard:
    """Start a guard process, with this tree's code or, from ``source``, another's."""
    port, bare_port = free_port(), free_port()
    scratch.mkdir(parents=True, exist_ok=True)
    environment = None
    # Another revision's bench may not know the bare proxy with the guard's own client.
    own_client_port = free_port() if source is None else None
    extra = [f"--bare-own-client-port={own_client_port}"] if own_client_port else []
    if source is not None:
        paths = [str(source / "operator"), str(source / "webhooks"), str(source)]
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    process = subprocess.Popen(
        [*ME, "--role=guard", f"--upstream={upstream}", f"--port={port}",
         f"--bare-port={bare_port}", f"--scratch={scratch}", f"--event-loop={event_loop}",
         *extra],
        cwd=source, env=environment,
    )  # fmt: skip
    return Guard(process, port, bare_port, own_client_port)
