"""The verification cache: what admission reads on its hot path, and single-flight for the rest.

Entries are keyed by (image digest, requirement key) — the requirement key is the
engine's fingerprint of the signer set and attestation requirements — and also by
(reference as written, requirement key) so that the webhook can look a pod's image up
without resolving a tag. Verified results live ``positive_ttl``; anything else
(unsigned, registry down...) only ``negative_ttl``, so a fix is seen quickly and a
failing registry is not hammered. A tag's entry never outlives ``tag_ttl``: tags move.
The size is bounded (least recently used entries go first). Concurrent verifications
of one key share a single registry round (single-flight).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import Awaitable, Callable, Hashable

from modelshield.engine import facts


@dataclasses.dataclass(frozen=True)
class CacheSettings:
    """Lifetimes (seconds) and size of the cache."""

    positive_ttl: float = 600.0
    negative_ttl: float = 15.0
    tag_ttl: float = 60.0
    max_entries: int = 10_000


def is_positive(image: facts.ImageFacts) -> bool:
    """A result worth keeping long: signature verified and attestations looked at."""
    return image.signature.outcome is facts.Outcome.VERIFIED and image.attestation_failure is None


class VerificationCache:
    """A bounded TTL cache of ImageFacts with single-flight; one per process, used from one loop."""

    def __init__(
        self,
        settings: CacheSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or CacheSettings()
        self._clock = clock
        self._entries: collections.OrderedDict[Hashable, tuple[float, facts.ImageFacts]] = (
            collections.OrderedDict()
        )
        self._in_flight: dict[Hashable, asyncio.Task[facts.ImageFacts]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _get(self, key: Hashable) -> facts.ImageFacts | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        expires, value = entry
        if expires <= self._clock():
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def by_reference(self, reference: str, requirement_key: str) -> facts.ImageFacts | None:
        """The live result for a reference as written in the pod spec, or None."""
        return self._get(("reference", reference, requirement_key))

    def by_digest(self, digest: str, requirement_key: str) -> facts.ImageFacts | None:
        """The live result for an image digest, or None."""
        return self._get(("digest", digest, requirement_key))

    def _put(self, key: Hashable, ttl: float, value: facts.ImageFacts) -> None:
        self._entries[key] = (self._clock() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.settings.max_entries:
            self._entries.popitem(last=False)

    def store(
        self, reference: str, requirement_key: str, image: facts.ImageFacts, *, pinned: bool
    ) -> None:
        """Remember a result under its reference and, when known, its digest.

        pinned says the reference names a digest; otherwise it names a tag, whose entry
        lives at most ``tag_ttl``.
        """
        ttl = self.settings.positive_ttl if is_positive(image) else self.settings.negative_ttl
        reference_ttl = ttl if pinned else min(ttl, self.settings.tag_ttl)
        self._put(("reference", reference, requirement_key), reference_ttl, image)
        if image.digest is not None and is_positive(image):
            # Only positives by digest: a negative caused by the way one reference was
            # reached (a pull secret, a tag) must not answer for another reference.
            self._put(("digest", image.digest, requirement_key), ttl, image)

    def forget(self) -> None:
        """Drop every entry (tests, key rotation handled by the caller)."""
        self._entries.clear()

    async def single_flight(
        self, key: Hashable, work: Callable[[], Awaitable[facts.ImageFacts]]
    ) -> facts.ImageFacts:
        """Run work once for concurrent callers of one key; each waits on the same task.

        A caller that gives up (its own deadline) does not cancel the shared task, which
        carries its own deadline.
        """
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._in_flight[key] = task
            task.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return await asyncio.shield(task)

    @property
    def in_flight(self) -> int:
        """Verifications currently running."""
        return len(self._in_flight)
