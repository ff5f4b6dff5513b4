"""Token buckets and quotas: exact refills, Retry-After, bounded memory."""

from __future__ import annotations

import pytest

from modelshield.guard import ratelimits


def test_burst_then_the_rate() -> None:
    buckets = ratelimits.TokenBuckets(rate=2.0, burst=3)
    for _ in range(3):
        assert buckets.wait("a", 100.0) == 0.0
        buckets.take("a", 100.0)
    assert buckets.wait("a", 100.0) == pytest.approx(0.5)
    assert buckets.wait("a", 100.25) == pytest.approx(0.25)
    assert buckets.wait("a", 100.5) == 0.0
    buckets.take("a", 100.5)
    assert buckets.wait("a", 100.5) == pytest.approx(0.5)


def test_keys_are_independent() -> None:
    buckets = ratelimits.TokenBuckets(rate=1.0, burst=1)
    buckets.take("a", 0.0)
    assert buckets.wait("a", 0.0) > 0
    assert buckets.wait("b", 0.0) == 0.0


def test_wait_takes_nothing() -> None:
    buckets = ratelimits.TokenBuckets(rate=1.0, burst=1)
    for _ in range(5):
        assert buckets.wait("a", 0.0) == 0.0


def test_refill_never_exceeds_burst() -> None:
    buckets = ratelimits.TokenBuckets(rate=100.0, burst=2)
    buckets.take("a", 0.0)
    for _ in range(2):
        buckets.take("a", 1000.0)
    assert buckets.wait("a", 1000.0) > 0


def test_memory_is_bounded_least_recently_used_first() -> None:
    buckets = ratelimits.TokenBuckets(rate=1.0, burst=1, max_keys=2)
    buckets.take("a", 0.0)
    buckets.take("b", 0.0)
    buckets.wait("a", 0.0)  # a is used again: b is now the oldest
    buckets.take("c", 0.0)
    assert len(buckets) == 2
    assert buckets.wait("a", 0.0) > 0  # a kept its empty bucket


def test_daily_quota_until_utc_midnight() -> None:
    quotas = ratelimits.DailyQuotas(2)
    noon = 86400.0 * 20000 + 43200
    quotas.take("a", noon)
    quotas.take("a", noon)
    assert quotas.wait("a", noon) == pytest.approx(43200)
    assert quotas.wait("a", noon + 43200) == 0.0  # the next day
    quotas.take("a", noon + 43200)
    assert quotas.wait("a", noon + 43200) == 0.0


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert ratelimits.retry_after(0.01) == 1
    assert ratelimits.retry_after(1.2) == 2
    assert ratelimits.retry_after(3.0) == 3


def test_a_bucket_needs_a_rate_and_a_burst() -> None:
    with pytest.raises(ValueError, match="positive rate"):
        ratelimits.TokenBuckets(rate=0, burst=1)
