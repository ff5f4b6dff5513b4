"""The image verifier as the admission server sees it: an interface and an honest stand-in.

The server depends on this Protocol, not on the verifier's module, so that it can be
run and tested with any implementation; ``modelshield.supplychain.images.verifying``'s
``ImageVerifier`` is the real one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from modelshield.api.v1alpha1 import policies
from modelshield.engine import facts


class ImageVerifier(Protocol):
    """Verifies images against image requirements; caches results by itself."""

    def cached(self, reference: str, requirement_key: str) -> facts.ImageFacts | None:
        """A live cached result, without I/O (the hot path)."""
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
        """Verify within the deadline; never raises (a failure is an Outcome)."""
        ...


class UnavailableVerifier:
    """Answers every verification with an error: used when no verifier could be built.

    Workloads whose policies need signatures are then denied with a message saying why,
    which is the honest result; workloads that need no verification are unaffected.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def cached(self, reference: str, requirement_key: str) -> facts.ImageFacts | None:
        """Nothing is ever cached."""
        return None

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
        """An ERROR outcome naming why no verification is possible."""
        failure = facts.SignatureFact(outcome=facts.Outcome.ERROR, detail=self.reason)
        return facts.ImageFacts(
            reference=reference,
            digest=None,
            signature=failure,
            attestation_failure=failure if requirement.attestations else None,
        )
