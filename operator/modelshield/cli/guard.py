"""``modelshield guard``: run the inference guard in front of a model server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
from typing import Any

from aiohttp import web

from modelshield.guard import config, server
from modelshield_webhooks import eventloops


def register(subparsers: Any) -> None:
    """Add the ``guard`` command."""
    parser = subparsers.add_parser(
        "guard",
        help="run the inference guard (API protection) in front of a model server",
        description=(
            "Authenticate, authorize, rate-limit and check every request to a model "
            "server, as the governing policies' api blocks say (docs/api-protection.md)."
        ),
    )
    parser.add_argument(
        "--config", type=pathlib.Path, required=True, help="the guard's configuration file"
    )
    parser.add_argument(
        "--event-loop",
        default=eventloops.UVLOOP,
        choices=eventloops.CHOICES,
        help="asyncio event loop implementation (uvloop: less CPU per request, "
        "bench/bench_guard_cpu.py; asyncio: the standard one)",
    )
    parser.add_argument(
        "--http-server",
        default=OWN,
        choices=HTTP_SERVERS,
        help="the clients' port's HTTP server: the guard's own (guard/httpserving.py: "
        "less work per request, bench/bench_guard_cpu.py) or aiohttp's; the management "
        "port is always aiohttp's",
    )
    parser.set_defaults(handler=run)


OWN, AIOHTTP = "own", "aiohttp"
HTTP_SERVERS = (OWN, AIOHTTP)


async def serve(settings: config.GuardConfig, http_server: str = OWN) -> None:
    """Serve the clients' port and the management port until cancelled."""
    pipeline = server.pipeline_from_config(settings)
    runners = [web.AppRunner(server.build_management_app(pipeline), access_log=None)]
    ports = [settings.management_port]
    clients = None
    if http_server == AIOHTTP:
        # Its cleanup closes the pipeline.
        runners.append(web.AppRunner(server.build_app(pipeline), access_log=None))
        ports.append(settings.port)
    else:
        clients = server.build_server(pipeline)
        await clients.start(settings.host, settings.port)
    for runner, port in zip(runners, ports, strict=True):
        await runner.setup()
        await web.TCPSite(runner, settings.host, port).start()
    try:
        await asyncio.Event().wait()
    finally:
        if clients is not None:
            await clients.close()
            await pipeline.close()
        for runner in runners:
            await runner.cleanup()


def run(arguments: argparse.Namespace) -> int:
    """Run the guard; exit code 2 when the configuration cannot be used."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        settings = config.load(arguments.config)
    except (OSError, ValueError) as error:
        logging.getLogger(__name__).error("modelshield guard: %s", error)
        return 2
    eventloops.run(serve(settings, arguments.http_server), arguments.event_loop)
    return 0
