"""API keys: client names by the SHA-256 of their key, read from mounted Secrets.

Each Secret the policies name is mounted as a directory (``<root>/<secret name>/``): one
file per client, named by the client, holding the lowercase hex SHA-256 of its key. The
kubelet updates mounted Secrets in place, so a rotated or revoked key takes effect
without a restart: the directories are read again when their content changes (checked at
most every ``RECHECK`` seconds).

Only digests are compared: the presented key is hashed and looked up. A lookup by digest
leaks nothing useful through timing (an attacker cannot choose a digest's prefix).
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import time

RECHECK = 1.0
_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True, slots=True)
class KeyMatch:
    """The client a key belongs to, and the Secrets that list it."""

    client: str
    secrets: frozenset[str]


def read_secret_dir(directory: pathlib.Path) -> dict[str, str]:
    """digest → client of one mounted Secret; values that are not a SHA-256 are skipped."""
    found: dict[str, str] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.iterdir()):
        # The kubelet's bookkeeping entries (..data, ..2026_...) start with two dots.
        if path.name.startswith(".") or not path.is_file():
            continue
        digest = path.read_text().strip().lower()
        if _DIGEST.fullmatch(digest):
            found[digest] = path.name
    return found


class KeyStore:
    """The API keys of the named Secrets, kept current."""

    def __init__(self, root: pathlib.Path, secrets: frozenset[str]) -> None:
        self.root = root
        self.secrets = sorted(secrets)
        self._by_digest: dict[str, dict[str, str]] = {}
        self._signature: tuple[tuple[str, float, int], ...] = ()
        self._checked = -RECHECK
        #: digest -> its match, for known keys only (unknown digests are not kept: a
        #: stream of made-up keys must not grow it); emptied by ``reload``.
        self._matches: dict[str, KeyMatch] = {}
        self.reload()

    def _current_signature(self) -> tuple[tuple[str, float, int], ...]:
        signature = []
        for name in self.secrets:
            directory = self.root / name
            for path in sorted(directory.glob("*")) if directory.is_dir() else ():
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                signature.append((str(path), stat.st_mtime, stat.st_size))
        return tuple(signature)

    def reload(self) -> None:
        """Read every Secret directory again."""
        self._signature = self._current_signature()
        self._by_digest = {name: read_secret_dir(self.root / name) for name in self.secrets}
        self._matches = {}

    def lookup(self, digest: str, now: float | None = None) -> KeyMatch | None:
        """The client whose key has this digest, or None."""
        moment = time.monotonic() if now is None else now
        if moment - self._checked >= RECHECK:
            self._checked = moment
            if self._current_signature() != self._signature:
                self.reload()
        known = self._matches.get(digest)
        if known is not None:
            return known
        clients = {name: keys[digest] for name, keys in self._by_digest.items() if digest in keys}
        if not clients:
            return None
        client = sorted(set(clients.values()))[0]
        match = KeyMatch(client, frozenset(s for s, c in clients.items() if c == client))
        self._matches[digest] = match
        return match
