"""Facts for one review: image facts gathered under a deadline, artifact facts from the cache."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from modelshield.engine import compiling
from modelshield.engine import facts as engine_facts
from modelshield_webhooks import caches, metrics, secretreading, signerkeys, verifiers

_logger = logging.getLogger(__name__)

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
    hard_stop: float,
    namespace: str,
    pull_secrets: Sequence[Mapping[str, Any]] = (),
) -> engine_facts.ImageFacts:
    try:
        return await asyncio.wait_for(
            verifier.verify(
                reference,
                requirement.source,
                requirement.key,
                deadline_seconds=deadline_seconds,
                pull_secrets=pull_secrets,
                namespace=namespace,
            ),
            deadline_seconds + hard_stop,
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


#: The pods' ``imagePullSecrets`` names, in order: the operator reads them the same way.
pull_secret_names = secretreading.pull_secret_names


@dataclasses.dataclass(frozen=True)
class SecretAccess:
    """What the verification may read from Secrets (each None: nothing, as by default)."""

    signer_keys: signerkeys.SignerKeys | None = None
    pull_secrets: secretreading.CachedSecrets | None = None


NO_SECRETS = SecretAccess()


async def _prepare(
    pending: list[tuple[ImageKey, compiling.CompiledImages | None, compiling.CompiledImages]],
    access: SecretAccess,
    namespace: str,
    pull_secret_names: Sequence[str],
) -> tuple[list[compiling.CompiledImages], list[Mapping[str, Any]]]:
    signer_keys = access.signer_keys

    async def requirement_for(
        resolved: compiling.CompiledImages | None, original: compiling.CompiledImages
    ) -> compiling.CompiledImages:
        if resolved is not None:
            return resolved
        if signer_keys is None:
            return original
        return await signer_keys.resolve(original, namespace)

    async def pull() -> list[Mapping[str, Any]]:
        if access.pull_secrets is None or not pull_secret_names:
            return []
        found = await asyncio.gather(
            *(access.pull_secrets.get(namespace, name) for name in pull_secret_names)
        )
        return [{"data": data} for data in found if data]

    requirements, pull_secrets = await asyncio.gather(
        asyncio.gather(*(requirement_for(resolved, original) for _, resolved, original in pending)),
        pull(),
    )
    return list(requirements), pull_secrets


async def gather_images(
    requests: Sequence[tuple[str, compiling.CompiledImages]],
    verifier: verifiers.ImageVerifier,
    *,
    deadline_seconds: float,
    namespace: str,
    counters: metrics.Metrics,
    access: SecretAccess = NO_SECRETS,
    pull_secret_names: Sequence[str] = (),
) -> dict[ImageKey, engine_facts.ImageFacts]:
    """Facts for every (image, requirement): cached ones at once, the rest verified concurrently.

    Waits at most ``deadline_seconds`` plus ``hard_stop_seconds(deadline_seconds)``, Secret
    reads included. Facts are keyed by the requirement the engine knows; with ``secretRef`` signers the
    verifier sees (and caches under) the requirement with the Secrets' keys inline.
    """
    found: dict[ImageKey, engine_facts.ImageFacts] = {}
    #: (key, resolved requirement or None when Secrets must be read, original)
    pending: list[tuple[ImageKey, compiling.CompiledImages | None, compiling.CompiledImages]] = []
    signer_keys = access.signer_keys
    for reference, requirement in requests:
        key = (reference, requirement.key)
        effective: compiling.CompiledImages | None = requirement
        if signer_keys is not None:
            effective = signer_keys.resolved_now(requirement, namespace)
        cached = verifier.cached(reference, effective.key) if effective is not None else None
        if cached is not None:
            found[key] = cached
            counters.verification(cached, cached=True)
        else:
            pending.append((key, effective, requirement))
    if pending:
        requirements = [resolved or original for _, resolved, original in pending]
        pull_secrets: list[Mapping[str, Any]] = []
        remaining = deadline_seconds
        reads_pull_secrets = access.pull_secrets is not None and bool(pull_secret_names)
        if reads_pull_secrets or any(resolved is None for _, resolved, _ in pending):
            loop = asyncio.get_running_loop()
            started = loop.time()
            # On timeout the signers stay unresolved and fail to verify: denied, not hung.
            with contextlib.suppress(TimeoutError):
                requirements, pull_secrets = await asyncio.wait_for(
                    _prepare(pending, access, namespace, pull_secret_names), deadline_seconds
                )
            # Secret reads count against the same deadline (rounded down for readable
            # messages, never beyond the deadline).
            left = deadline_seconds - (loop.time() - started)
            remaining = max(0.0, math.floor(left * 100) / 100)
        # The grace of the whole deadline, not of what is left: the budget counted it so.
        hard_stop = hard_stop_seconds(deadline_seconds)
        results = await asyncio.gather(
            *(
                _verify(
                    verifier, key[0], requirement, remaining, hard_stop, namespace, pull_secrets
                )
                for (key, _, _), requirement in zip(pending, requirements, strict=True)
            )
        )
        for (key, _, _), result in zip(pending, results, strict=True):
            found[key] = result
            counters.verification(result, cached=False)
    return found
