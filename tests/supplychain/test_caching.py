"""The verification cache: TTLs, tags, bounds, single-flight."""

from __future__ import annotations

import asyncio

import pytest

from modelshield.engine import facts
from modelshield.supplychain.images import caching

DIGEST = "sha256:" + "12" * 32
PINNED = f"r.example.com/ml/server@{DIGEST}"
TAGGED = "r.example.com/ml/server:v1"


def result(
    outcome: facts.Outcome, reference: str = PINNED, *, attestation_failed: bool = False
) -> facts.ImageFacts:
    signature = facts.SignatureFact(
        outcome, "release" if outcome is facts.Outcome.VERIFIED else None
    )
    failure = (
        facts.SignatureFact(facts.Outcome.REGISTRY_UNREACHABLE) if attestation_failed else None
    )
    return facts.ImageFacts(reference, DIGEST, signature, attestation_failure=failure)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(clock: Clock, **settings: float) -> caching.VerificationCache:
    return caching.VerificationCache(caching.CacheSettings(**settings), clock=clock)  # type: ignore[arg-type]


def test_positive_lives_its_ttl_by_reference_and_digest(clock: Clock) -> None:
    cache = make(clock, positive_ttl=600, negative_ttl=10)
    verified = result(facts.Outcome.VERIFIED)
    cache.store(PINNED, "k", verified, pinned=True)
    clock.now += 599
    assert cache.by_reference(PINNED, "k") is verified
    assert cache.by_digest(DIGEST, "k") is verified
    assert cache.by_reference(PINNED, "other-requirement") is None
    clock.now += 2
    assert cache.by_reference(PINNED, "k") is None
    assert cache.by_digest(DIGEST, "k") is None


def test_negative_is_short_and_never_answers_by_digest(clock: Clock) -> None:
    cache = make(clock, positive_ttl=600, negative_ttl=10)
    cache.store(PINNED, "k", result(facts.Outcome.NO_SIGNATURE), pinned=True)
    assert cache.by_reference(PINNED, "k") is not None
    assert cache.by_digest(DIGEST, "k") is None
    clock.now += 11
    assert cache.by_reference(PINNED, "k") is None


def test_verified_signature_with_unreadable_attestations_is_a_negative(clock: Clock) -> None:
    cache = make(clock, positive_ttl=600, negative_ttl=10)
    cache.store(PINNED, "k", result(facts.Outcome.VERIFIED, attestation_failed=True), pinned=True)
    clock.now += 11
    assert cache.by_reference(PINNED, "k") is None


def test_tag_entry_lives_at_most_tag_ttl(clock: Clock) -> None:
    cache = make(clock, positive_ttl=600, tag_ttl=30)
    cache.store(TAGGED, "k", result(facts.Outcome.VERIFIED, TAGGED), pinned=False)
    clock.now += 31
    assert cache.by_reference(TAGGED, "k") is None
    assert cache.by_digest(DIGEST, "k") is not None  # the digest's result stays valid


def test_size_is_bounded_least_recently_used_first(clock: Clock) -> None:
    cache = make(clock, max_entries=3)
    for index in range(3):
        cache.store(
            f"r.example.com/ml/s{index}:v1", "k", result(facts.Outcome.NO_SIGNATURE), pinned=False
        )
    assert cache.by_reference("r.example.com/ml/s0:v1", "k") is not None  # now most recent
    cache.store("r.example.com/ml/s3:v1", "k", result(facts.Outcome.NO_SIGNATURE), pinned=False)
    assert len(cache) == 3
    assert cache.by_reference("r.example.com/ml/s1:v1", "k") is None
    assert cache.by_reference("r.example.com/ml/s0:v1", "k") is not None


async def test_single_flight_runs_work_once_and_survives_an_impatient_caller() -> None:
    cache = caching.VerificationCache()
    runs = 0
    release = asyncio.Event()

    async def work() -> facts.ImageFacts:
        nonlocal runs
        runs += 1
        await release.wait()
        return result(facts.Outcome.VERIFIED)

    waiters = [asyncio.create_task(cache.single_flight("key", work)) for _ in range(10)]
    impatient = asyncio.create_task(asyncio.wait_for(cache.single_flight("key", work), 0.01))
    await asyncio.sleep(0.05)
    assert cache.in_flight == 1
    with pytest.raises(TimeoutError):
        await impatient
    release.set()
    outcomes = await asyncio.gather(*waiters)
    assert runs == 1
    assert all(o.signature.outcome is facts.Outcome.VERIFIED for o in outcomes)
    assert cache.in_flight == 0
