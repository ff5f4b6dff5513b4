"""One local node per machine: a second session waits for the first (e2e/nodelock.py).

No cluster: these take the lock on a file of their own.
"""

from __future__ import annotations

import contextlib
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from e2e import nodelock


def test_a_second_session_waits_and_gives_up_while_the_first_holds_the_node(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "node.lock"
    first, second = nodelock.NodeLock(path), nodelock.NodeLock(path)
    first.acquire(wait_seconds=0)
    assert nodelock.held_by_a_session(path)
    started = time.monotonic()
    with pytest.raises(nodelock.NodeBusyError, match="another session has kept its local node"):
        second.acquire(wait_seconds=1)
    assert time.monotonic() - started >= 1
    first.release()
    assert not nodelock.held_by_a_session(path)
    second.acquire(wait_seconds=0)
    assert nodelock.held_by_a_session(path)
    second.release()


def test_a_waiting_session_starts_once_the_first_ends(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "node.lock"
    with _holding_process(path) as holder:
        waiting = nodelock.NodeLock(path)
        holder.send_signal(signal.SIGTERM)
        waiting.acquire(wait_seconds=30)
        waiting.release()


def test_the_lock_goes_with_a_killed_session(tmp_path: pathlib.Path) -> None:
    """A session killed with no chance to clean up leaves no lock behind (the node's
    leftovers, if any, are refused by nodeteardown, not waited for)."""
    path = tmp_path / "node.lock"
    with _holding_process(path) as holder:
        assert nodelock.held_by_a_session(path)
        holder.kill()
        holder.wait(timeout=10)
        assert not nodelock.held_by_a_session(path)


HOLDER = """
import pathlib, sys, time
from e2e import nodelock
lock = nodelock.NodeLock(pathlib.Path(sys.argv[1]))
lock.acquire(0)
print("held", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def _holding_process(path: pathlib.Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that holds the lock until it is signalled."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=pathlib.Path(__file__).resolve().parent.parent,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"
            yield holder
        finally:
            holder.kill()
            holder.wait(timeout=10)
