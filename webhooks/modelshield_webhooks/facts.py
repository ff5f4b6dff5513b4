"""Facts for one review: image facts gathered under a deadline, artifact facts from the cache."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence

from modelshield.engine import compiling
from modelshield.engine import facts as engine_facts
from modelshield_webhooks import caches, metrics, verifiers

_logger = logging.getLogger(__name__)

#: Beyond the verifier's own deadline, how long the handler waits before it stops
#: trusting the verifier to return and answers "timed out" itself.
HARD_STOP_GRACE_SECONDS = 0.25

ImageKey = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class ReviewFacts:
    """A FactSource for one review: the images verified for it and the artifact cache."""

    images: dict[ImageKey, engine_facts.ImageFacts]
    state: caches.ClusterState

    def image(self, reference: str, requirement_key: str) -> engine_facts.ImageFacts | None:
        """The facts gathered for this review (absent means not verified)."""
        return self.images.get((reference, requirement_key))

    def artifact(self, namespace: str, name: str) -> engine_facts.ArtifactFacts | None:
        """From the ModelArtifact cache."""
        return self.state.artifact(namespace, name)

    def artifact_by_uri(self, namespace: str, uri: str) -> engine_facts.ArtifactFacts | None:
        """From the ModelArtifact cache."""
        return self.state.artifact_by_uri(namespace, uri)


def _failed(
    reference: str,
    requirement: compiling.CompiledImages,
    outcome: engine_facts.Outcome,
    detail: str,
) -> engine_facts.ImageFacts:
    failure = engine_facts.SignatureFact(outcome=outcome, detail=detail)
    return engine_facts.ImageFacts(
        reference=reference,
        digest=None,
        signature=failure,
        attestation_failure=failure if requirement.attestations else None,
    )


async def _verify(
    verifier: verifiers.ImageVerifier,
    reference: str,
    requirement: compiling.CompiledImages,
    deadline_seconds: float,
    namespace: str,
) -> engine_facts.ImageFacts:
    try:
        return await asyncio.wait_for(
            verifier.verify(
                reference,
                requirement.source,
                requirement.key,
                deadline_seconds=deadline_seconds,
                namespace=namespace,
            ),
            deadline_seconds + HARD_STOP_GRACE_SECONDS,
        )
    except TimeoutError:
        return _failed(
            reference,
            requirement,
            engine_facts.Outcome.TIMED_OUT,
            f"verification did not finish within {deadline_seconds:g}s",
        )
    except Exception as error:  # the verifier promises not to raise; fail closed if it does
        _logger.exception("image verifier raised for %s", reference)
        return _failed(
            reference,
            requirement,
            engine_facts.Outcome.ERROR,
            f"verifier error: {type(error).__name__}",
        )


async def gather_images(
    requests: Sequence[tuple[str, compiling.CompiledImages]],
    verifier: verifiers.ImageVerifier,
    *,
    deadline_seconds: float,
    namespace: str,
    counters: metrics.Metrics,
) -> dict[ImageKey, engine_facts.ImageFacts]:
    """Facts for every (image, requirement): cached ones at once, the rest verified concurrently."""
    found: dict[ImageKey, engine_facts.ImageFacts] = {}
    pending: list[tuple[ImageKey, compiling.CompiledImages]] = []
    for reference, requirement in requests:
        key = (reference, requirement.key)
        cached = verifier.cached(reference, requirement.key)
        if cached is not None:
            found[key] = cached
            counters.verification(cached, cached=True)
        else:
            pending.append((key, requirement))
    if pending:
        results = await asyncio.gather(
            *(
                _verify(verifier, key[0], requirement, deadline_seconds, namespace)
                for key, requirement in pending
            )
        )
        for (key, _), result in zip(pending, results, strict=True):
            found[key] = result
            counters.verification(result, cached=False)
    return found
