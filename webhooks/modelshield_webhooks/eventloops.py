"""Which asyncio event loop the server runs on: uvloop by default, the standard one on request.

uvloop (libuv) serves ~10 % more reviews per CPU-second than the standard loop with the
same aiohttp application (``python -m bench.bench_admission server`` prints both); the
standard loop stays selectable for debugging and for platforms without a uvloop wheel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

UVLOOP = "uvloop"
STANDARD = "asyncio"
CHOICES = (UVLOOP, STANDARD)

T = TypeVar("T")


class UnavailableLoopError(RuntimeError):
    """The event loop asked for cannot be created here."""


def factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function that makes a new loop of the named kind."""
    if name == STANDARD:
        return asyncio.new_event_loop
    if name == UVLOOP:
        try:
            import uvloop
        except ImportError as error:
            raise UnavailableLoopError(
                f"uvloop is not installed ({error}); install it or pass --event-loop={STANDARD}"
            ) from error
        new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return new_loop
    raise UnavailableLoopError(f"unknown event loop {name!r}; choose one of {', '.join(CHOICES)}")


def run(main: Coroutine[Any, Any, T], name: str) -> T:
    """``asyncio.run`` on the named loop."""
    try:
        loop_factory = factory(name)
    except UnavailableLoopError:
        main.close()  # never awaited: without this Python warns about the coroutine
        raise
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)
