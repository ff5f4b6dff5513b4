"""The server's event loop choice: uvloop by default, the standard loop on request."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from modelshield_webhooks import eventloops


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_runs_the_coroutine_on_a_uvloop_loop() -> None:
    assert eventloops.run(_loop_module(), eventloops.UVLOOP).startswith("uvloop")


def test_the_standard_loop_is_asyncio_s_own() -> None:
    assert eventloops.run(_loop_module(), eventloops.STANDARD).startswith("asyncio")


def test_an_unknown_loop_is_refused_and_the_coroutine_is_not_left_unawaited() -> None:
    main = _loop_module()
    with pytest.raises(eventloops.UnavailableLoopError, match="unknown event loop 'tornado'"):
        eventloops.run(main, "tornado")
    # Closed, so no "never awaited" warning (which the test settings turn into an error).
    assert inspect.getcoroutinestate(main) == inspect.CORO_CLOSED


def test_the_webhook_command_runs_on_uvloop_unless_told_otherwise() -> None:
    from modelshield.cli import main as cli_main

    parser = cli_main.build_parser()
    arguments = ["webhook", "--cert=c.pem", "--key=k.pem"]
    assert parser.parse_args(arguments).event_loop == eventloops.UVLOOP
    chosen = parser.parse_args([*arguments, "--event-loop=asyncio"]).event_loop
    assert chosen == eventloops.STANDARD
