"""One local node per machine, one session at a time.

A node takes fixed host resources (its veth pair, the pod bridge, kubelet's paths, the
`kubepods` cgroups). A session that starts one holds an exclusive lock on NODE_LOCK until
the node is torn down, so a second session (another run of `make test`, CI, a human's
`python -m e2e.cluster up --with-node`) waits for the first to finish instead of failing on
its links or tearing its node down. The lock is the kernel's (flock): it goes with the
process that held it, even when that process is killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import sys
import time
from pathlib import Path
from typing import IO

from e2e.cluster import ControlPlaneError

NODE_LOCK = Path("/tmp/modelshield-e2e-node-session.lock")
# A whole node suite takes about 7 minutes warm, `make test`'s node session no longer.
DEFAULT_WAIT_SECONDS = 40 * 60
POLL_SECONDS = 2.0


class NodeBusyError(ControlPlaneError):
    """Another session kept its node up for longer than this one would wait."""


class NodeLock:
    def __init__(self, path: Path = NODE_LOCK) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self, wait_seconds: float = DEFAULT_WAIT_SECONDS) -> None:
        """Takes the lock, waiting up to `wait_seconds` for the session that holds it; says
        on stderr that it waits (pytest captures fixture output, so the real stderr)."""
        lock_file = self.path.open("a")
        deadline = time.monotonic() + wait_seconds
        said_so = False
        while not _try_lock(lock_file):
            if time.monotonic() > deadline:
                lock_file.close()
                raise NodeBusyError(
                    f"another session has kept its local node up for over {wait_seconds:.0f} s "
                    f"(it holds {self.path}); try again when it ends"
                )
            if not said_so:
                print(
                    f"local node: another session holds {self.path}; waiting for it to end",
                    file=sys.__stderr__,
                    flush=True,
                )
                said_so = True
            time.sleep(POLL_SECONDS)
        self._file = lock_file

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def held_by_a_session(path: Path = NODE_LOCK) -> bool:
    """Whether a running session holds the lock (its node is up, or it is starting one)."""
    if not path.exists():
        return False
    with path.open("a") as lock_file:
        if not _try_lock(lock_file):
            return True
        fcntl.flock(lock_file, fcntl.LOCK_UN)
        return False


def _try_lock(lock_file: IO[str]) -> bool:
    with contextlib.suppress(BlockingIOError):
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    return False
