"""Facts for one review: image facts cached or gathered under a deadline, artifact facts from the cache.

The gathering itself (Secrets, then the verifier, all within the deadline) is the facts
layer's, shared with the operator: ``modelshield.supplychain.images.gathering``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from modelshield.engine import compiling
from modelshield.engine import facts as engine_facts
from modelshield.supplychain.images import gathering, verifiers
from modelshield_webhooks import caches, metrics

#: Beyond the verifier's own deadline, how long the handler waits before it stops
#: trusting the verifier to return and answers "timed out" itself: a quarter of the
#: deadline, at most HARD_STOP_GRACE_SECONDS (the request budget counts it).
HARD_STOP_GRACE_SECONDS = 0.25
HARD_STOP_SHARE = 0.25


def hard_stop_seconds(deadline_seconds: float) -> float:
    """The grace after a verification deadline before the handler stops waiting."""
    return min(HARD_STOP_GRACE_SECONDS, HARD_STOP_SHARE * max(0.0, deadline_seconds))


ImageKey = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class ReviewFacts(engine_facts.FactSource):
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


async def gather_images(
    requests: Sequence[tuple[str, compiling.CompiledImages]],
    verifier: verifiers.Verifier,
    *,
    deadline_seconds: float,
    namespace: str,
    counters: metrics.Metrics,
    access: gathering.SecretAccess = gathering.NO_SECRETS,
    pull_secret_names: Sequence[str] = (),
) -> dict[ImageKey, engine_facts.ImageFacts]:
    """Facts for every (image, requirement): cached ones at once, the rest verified concurrently.

    Waits at most ``deadline_seconds`` plus ``hard_stop_seconds(deadline_seconds)``, Secret
    reads included. Facts are keyed by the requirement the engine knows; with ``secretRef`` signers the
    verifier sees (and caches under) the requirement with the Secrets' keys inline.
    """
    found: dict[ImageKey, engine_facts.ImageFacts] = {}
    pending: list[tuple[ImageKey, gathering.Request]] = []
    for reference, requirement in requests:
        key = (reference, requirement.key)
        effective = access.resolved_now(requirement, namespace)
        cached = verifier.cached(reference, effective.key) if effective is not None else None
        if cached is not None:
            found[key] = cached
            counters.verification(cached, cached=True)
        else:
            pending.append((key, gathering.Request(reference, requirement, effective)))
    if pending:
        gathered = await gathering.gather(
            verifier,
            [request for _, request in pending],
            namespace=namespace,
            deadline_seconds=deadline_seconds,
            # The grace of the whole deadline, not of what is left: the budget counted it so.
            grace_seconds=hard_stop_seconds(deadline_seconds),
            access=access,
            pull_secret_names=pull_secret_names,
        )
        for (key, _), result in zip(pending, gathered, strict=True):
            found[key] = result.image
            counters.verification(result.image, cached=False)
    return found
