"""Image verdicts for the tests: what a real verifier would establish about the test images.

``FixedVerdictVerifierForTests`` answers from this table instead of a registry; tests
that need a registry use the real ``ImageVerifier`` (see test_validating.py and e2e/).
"""

from __future__ import annotations

import asyncio
from typing import Any

from modelshield.engine import facts
from tests.support import verifierfakes
from tests.support.admissionscenarios import DIGEST, SIGNED, SIGNED_BY_TAG, SIGNER


def image_facts(reference: str) -> facts.ImageFacts:
    """What a real verifier establishes for the test images."""
    if reference in (SIGNED, SIGNED_BY_TAG) or reference.startswith(f"{SIGNED_BY_TAG}@"):
        return facts.ImageFacts(
            reference=reference,
            digest=DIGEST,
            signature=facts.SignatureFact(outcome=facts.Outcome.VERIFIED, signer=SIGNER),
        )
    return facts.ImageFacts(
        reference=reference,
        digest="sha256:" + "c" * 64,
        signature=facts.SignatureFact(
            outcome=facts.Outcome.NO_SIGNATURE, detail="no signature at the .sig tag"
        ),
    )


class FixedVerdictVerifierForTests(verifierfakes.VerifierStandInForTests):
    """A verifier that answers from ``image_facts`` instead of a registry, after a delay.

    Used where a test needs a verdict, not a registry: the signed/unsigned answer is
    fixed, the caching and deadline behaviour match the real verifier's contract.
    ``honours_deadline=False`` makes it ignore the deadline (a hung verifier).
    """

    def __init__(self, *, delay: float = 0.0, honours_deadline: bool = True) -> None:
        super().__init__()
        self.delay = delay
        self.honours_deadline = honours_deadline

    @property
    def verifications(self) -> int:
        """How many verifications were asked for."""
        return len(self.calls)

    async def answer(self, call: dict[str, Any]) -> facts.ImageFacts:
        """The fixed verdict; TimedOut when the delay passes an honoured deadline."""
        reference, deadline_seconds = call["reference"], call["deadline_seconds"]
        if self.honours_deadline and self.delay > deadline_seconds:
            await asyncio.sleep(deadline_seconds)
            return facts.ImageFacts(
                reference=reference,
                digest=None,
                signature=facts.SignatureFact(
                    outcome=facts.Outcome.TIMED_OUT,
                    detail=f"verification did not finish within {deadline_seconds:g}s",
                ),
            )
        if self.delay:
            await asyncio.sleep(self.delay)
        found = image_facts(reference)
        self.cache[(reference, call["key"])] = found
        return found
