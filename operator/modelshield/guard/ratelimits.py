"""Token buckets and daily quotas, keyed by client or model, in bounded memory. Pure.

Why our own and not a library: a request must pass every governing policy's bucket, so a
check has to look at all of them before it takes from any (a request refused by one
policy's limit must not spend another's), and it must say exactly when a token will be
back (``Retry-After``). The time is passed in, so tests drive the clock. ``limits`` and
``pyrate-limiter`` take on hit and keep windows rather than buckets; ``aiolimiter`` waits
instead of refusing.

Memory is bounded: at most ``max_keys`` buckets are kept, the least recently used dropped
first (a dropped bucket comes back full, which can only favour a client that has been
idle longest). Each guard replica keeps its own buckets; the operator gives each replica
its share of the policy's rate (``engine.apiprotection``), so replicas never add up to
more than the policy allows.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import math
from collections.abc import Hashable

SECONDS_PER_DAY = 86400.0


@dataclasses.dataclass(slots=True)
class _State:
    tokens: float
    updated: float


class TokenBuckets:
    """Token buckets of one size, one per key."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._states: collections.OrderedDict[Hashable, _State] = collections.OrderedDict()

    def _refilled(self, key: Hashable, now: float) -> _State:
        state = self._states.get(key)
        if state is None:
            state = _State(self.burst, now)
            self._states[key] = state
            if len(self._states) > self.max_keys:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(key)
            elapsed = max(0.0, now - state.updated)
            state.tokens = min(self.burst, state.tokens + elapsed * self.rate)
            state.updated = now
        return state

    def wait(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` has a token (0: one is there now). Takes nothing."""
        state = self._refilled(key, now)
        return 0.0 if state.tokens >= 1.0 else (1.0 - state.tokens) / self.rate

    def take(self, key: Hashable, now: float) -> None:
        """Spend one token of ``key`` (after ``wait`` said one is there)."""
        state = self._refilled(key, now)
        state.tokens -= 1.0

    def __len__(self) -> int:
        return len(self._states)


class DailyQuotas:
    """Requests per key per UTC day."""

    def __init__(self, quota: int, *, max_keys: int = 100_000) -> None:
        self.quota = quota
        self.max_keys = max_keys
        self._counts: collections.OrderedDict[Hashable, tuple[int, int]] = collections.OrderedDict()

    def wait(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` may call again (0: now): the next UTC midnight when spent."""
        day = int(now // SECONDS_PER_DAY)
        counted_day, count = self._counts.get(key, (day, 0))
        if counted_day == day and count >= self.quota:
            return (day + 1) * SECONDS_PER_DAY - now
        return 0.0

    def take(self, key: Hashable, now: float) -> None:
        """Count one request of ``key``."""
        day = int(now // SECONDS_PER_DAY)
        counted_day, count = self._counts.get(key, (day, 0))
        self._counts[key] = (day, count + 1 if counted_day == day else 1)
        self._counts.move_to_end(key)
        if len(self._counts) > self.max_keys:
            self._counts.popitem(last=False)


def retry_after(seconds: float) -> int:
    """The ``Retry-After`` header value: whole seconds, at least 1."""
    return max(1, math.ceil(seconds))


def utc_seconds(moment: datetime.datetime) -> float:
    """A moment as seconds since the epoch (buckets and quotas count in these)."""
    return moment.timestamp()
