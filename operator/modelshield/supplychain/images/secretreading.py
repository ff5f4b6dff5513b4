"""Reading Secrets by name: a source interface, a TTL cache, and signer keys read once.

Only ``get`` by name, never list or watch: the webhook and the operator read exactly the
Secrets that policies (``secretRef`` signers) and pods (``imagePullSecrets``) name. The
readers themselves (one per process kind: aiohttp in the webhook, the operator's client)
implement ``SecretSource``. ``key_values`` is how the operator reads the keys of model
and builder ``secretRef`` signers (for a ModelArtifact check and for the model-keys
ConfigMap): one read per Secret, through that same source. Values are key
material or registry credentials: nothing here logs them, and errors name only the
Secret. The cache answers the hot path without I/O; entries are re-read in the
background before they expire (``keep_fresh``), so a changed or deleted Secret is seen
within one TTL, and an entry that could not be refreshed expires (fail closed).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from modelshield.engine import workloads

_logger = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 60.0
#: How long a failed read is remembered, so that a broken API does not get one read per review.
ERROR_TTL_SECONDS = 5.0
#: An entry no review asked for in this long is dropped instead of refreshed.
IDLE_SECONDS = 600.0
READ_TIMEOUT_SECONDS = 3.0

#: A Secret's ``data``: base64-encoded values by key, as the API returns them.
SecretData = Mapping[str, str]
#: A key of a Secret, as a ``secretRef`` names it: (Secret name, key).
KeyRef = tuple[str, str]


class SecretReadError(Exception):
    """The API server did not answer a Secret read (other than 404)."""


class SecretSource(Protocol):
    """Where Secrets come from."""

    async def read(self, namespace: str, name: str) -> SecretData | None:
        """The Secret's data, or None when it does not exist; SecretReadError otherwise."""
        ...


def data_of(secret: Mapping[str, Any]) -> SecretData:
    """A Secret object's ``data`` as strings (what a ``SecretSource`` returns); {} without any."""
    data = secret.get("data")
    if not isinstance(data, Mapping):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}


async def key_values(
    source: SecretSource, namespace: str, refs: Iterable[KeyRef]
) -> dict[KeyRef, bytes]:
    """The decoded values of the Secret keys named, each Secret read once (``get`` by name).

    What cannot be had is left out, so that the signer naming it has no key (fail
    closed): a Secret that is missing or unreadable (logged by name, never its data), a
    key it lacks, a value that is not base64.
    """
    read: dict[str, SecretData | None] = {}
    found: dict[KeyRef, bytes] = {}
    for name, key in refs:
        if name not in read:
            try:
                read[name] = await source.read(namespace, name)
            except SecretReadError as error:
                _logger.warning("cannot read Secret %s/%s: %s", namespace, name, error)
                read[name] = None
        value = (read[name] or {}).get(key)
        if value is None:
            continue
        try:
            found[(name, key)] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            _logger.warning("Secret %s/%s: key %s is not base64", namespace, name, key)
    return found


@dataclasses.dataclass
class _Entry:
    data: SecretData | None
    error: str | None
    expires: float
    used: float


class CachedSecrets:
    """Secrets by (namespace, name), each read once per TTL; one event loop, no locks."""

    def __init__(
        self,
        source: SecretSource,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[_Entry]] = {}
        #: Bumped whenever an entry's data changes or an entry expires: what was derived
        #: from the Secrets (resolved signer keys) must be derived again.
        self.version = 0
        #: Reads from the source, for tests and logs.
        self.reads = 0

    def now(self, namespace: str, name: str) -> _Entry | None:
        """The live entry, without I/O (None when absent or expired)."""
        entry = self._entries.get((namespace, name))
        if entry is None:
            return None
        now = self._clock()
        entry.used = now  # a review asked: keep refreshing it
        if entry.expires <= now:
            return None
        return entry

    def data_now(self, namespace: str, name: str) -> tuple[bool, SecretData | None]:
        """(live, data): whether a live entry exists, and the Secret's data if it exists."""
        entry = self.now(namespace, name)
        if entry is None:
            return False, None
        return True, entry.data

    async def get(self, namespace: str, name: str) -> SecretData | None:
        """The Secret's data (None: missing or unreadable), read when not cached."""
        entry = self.now(namespace, name)
        if entry is None:
            entry = await self._read(namespace, name)
        return entry.data

    async def _read(self, namespace: str, name: str) -> _Entry:
        key = (namespace, name)
        task = self._inflight.get(key)
        if task is None:
            # Its own task: a review that stops waiting (its deadline) does not cancel a
            # read that other reviews wait for, and the answer still fills the cache.
            task = asyncio.ensure_future(self._fetch(namespace, name))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _fetch(self, namespace: str, name: str) -> _Entry:
        self.reads += 1
        now = self._clock()
        try:
            data = await self._source.read(namespace, name)
            entry = _Entry(data=data, error=None, expires=now + self.ttl_seconds, used=now)
        except SecretReadError as error:
            _logger.warning("cannot read Secret %s/%s: %s", namespace, name, error)
            entry = _Entry(data=None, error=str(error), expires=now + ERROR_TTL_SECONDS, used=now)
        old = self._entries.get((namespace, name))
        if entry.error is not None and old is not None and old.error is None and old.expires > now:
            return old  # a failed refresh: what was read stays good until its own expiry
        if old is None or old.data != entry.data:
            self.version += 1
        if old is not None:
            entry.used = old.used  # a refresh is not a use: idle entries must age out
        self._entries[(namespace, name)] = entry
        return entry

    async def refresh(self) -> None:
        """Re-read every entry used recently; drop the idle ones."""
        now = self._clock()
        for key, entry in list(self._entries.items()):
            if now - entry.used > IDLE_SECONDS:
                del self._entries[key]
                self.version += 1
        await asyncio.gather(*(self._read(*key) for key in list(self._entries)))

    async def keep_fresh(self) -> None:
        """Refresh twice per TTL, so that the entries reviews read never expire while the API answers."""
        while True:
            await asyncio.sleep(self.ttl_seconds / 2)
            try:
                await self.refresh()
            except Exception:  # keep refreshing; an entry that is not refreshed expires
                _logger.exception("refreshing the Secret cache failed")

    def __len__(self) -> int:
        return len(self._entries)


def pull_secret_names(containers: Sequence[workloads.Container]) -> tuple[str, ...]:
    """The ``imagePullSecrets`` names of the pod specs the containers sit in, in order."""
    names: list[str] = []
    for container in containers:
        entries = container.pod.spec.get("imagePullSecrets")
        if not isinstance(entries, list):
            continue
        for entry in entries:
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and name and name not in names:
                names.append(name)
    return tuple(names)
