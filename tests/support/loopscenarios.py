"""The async tests of a module as scenarios to run again on another event loop (uvloop)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any


def async_scenarios(
    namespace: Mapping[str, Any], cases: Mapping[str, Mapping[str, Any]]
) -> dict[str, Callable[[], Awaitable[None]]]:
    """Every ``test_*`` coroutine function in ``namespace`` (a module's ``globals()``) that
    needs no argument, and each value of ``cases[name]`` bound to the one-argument test
    ``name``, keyed by the test's name (``name[case]`` for the bound ones)."""
    scenarios: dict[str, Callable[[], Awaitable[None]]] = {}
    for name, test in list(namespace.items()):
        if not name.startswith("test_") or not asyncio.iscoroutinefunction(test):
            continue
        if name in cases:
            for case, value in cases[name].items():
                scenarios[f"{name}[{case}]"] = functools.partial(test, value)
        elif test.__code__.co_argcount == 0:
            scenarios[name] = test
    return scenarios
