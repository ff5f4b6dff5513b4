"""The image verifier as its callers see it: one interface, and one way to call it in time.

``Verifier`` is what the admission server, the operator and ``modelshield verify-image``
depend on. ``imageverifier.ImageVerifier`` is the real one and names ``Verifier`` as its
base, so a reader goes from here to it in one step; the tests' stand-ins (which answer
without a registry) name ``Verifier`` too.

``verify_within`` is the one "verify within a deadline, else a failed fact": a verifier
promises to honour its deadline and never to raise, and the caller still stops waiting
a grace after the deadline and turns an exception into an ERROR fact (fail closed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from modelshield.api.v1alpha1 import policies
from modelshield.engine import compiling, facts

_logger = logging.getLogger(__name__)


class Verifier(Protocol):
    """Verifies images against image requirements and caches the results itself."""

    def cached(self, reference: str, requirement_key: str) -> facts.ImageFacts | None:
        """A live cached result, without I/O (admission's hot path)."""
        ...

    async def verify(
        self,
        reference: str,
        requirement: policies.ImageRequirements,
        requirement_key: str,
        *,
        deadline_seconds: float,
        pull_secrets: Sequence[Mapping[str, Any]] = (),
        namespace: str = "",
    ) -> facts.ImageFacts:
        """Verify (or answer from the cache) within the deadline; never raises."""
        ...


def failed(
    reference: str, requirement: compiling.CompiledImages, outcome: facts.Outcome, detail: str
) -> facts.ImageFacts:
    """The facts of a verification that could not conclude: signature and attestations fail."""
    failure = facts.SignatureFact(outcome=outcome, detail=detail)
    return facts.ImageFacts(
        reference=reference,
        digest=None,
        signature=failure,
        attestation_failure=failure if requirement.attestations else None,
    )


async def verify_within(
    verifier: Verifier,
    reference: str,
    requirement: compiling.CompiledImages,
    *,
    deadline_seconds: float,
    grace_seconds: float,
    pull_secrets: Sequence[Mapping[str, Any]] = (),
    namespace: str = "",
) -> facts.ImageFacts:
    """The verifier's facts, or TIMED_OUT a grace after the deadline, or ERROR if it raised."""
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
            deadline_seconds + grace_seconds,
        )
    except TimeoutError:
        return failed(
            reference,
            requirement,
            facts.Outcome.TIMED_OUT,
            f"verification did not finish within {deadline_seconds:g}s",
        )
    except Exception as error:  # the verifier promises not to raise; fail closed if it does
        _logger.exception("image verifier raised for %s", reference)
        return failed(
            reference,
            requirement,
            facts.Outcome.ERROR,
            f"verifier error: {type(error).__name__}",
        )
