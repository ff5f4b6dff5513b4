"""The one base of the tests' stand-ins for the image verifier (they answer without a registry).

It implements the facts layer's ``Verifier`` interface once: a cache by (reference,
requirement key) and a record of every call; a stand-in says only how it answers
(``answer``). Tests that need a registry use the real ``ImageVerifier``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelshield.api.v1alpha1 import policies
from modelshield.engine import facts
from modelshield.supplychain.images import verifiers


class VerifierStandInForTests(verifiers.Verifier):
    """Records each verification (a dict of what it was given) and asks ``answer``."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, str], facts.ImageFacts] = {}
        self.calls: list[dict[str, Any]] = []

    def cached(self, reference: str, requirement_key: str) -> facts.ImageFacts | None:
        """What ``answer`` stored in the cache."""
        return self.cache.get((reference, requirement_key))

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
        """Record the call, then answer."""
        call = {"reference": reference, "key": requirement_key, "requirement": requirement} | {
            "pull_secrets": list(pull_secrets),
            "namespace": namespace,
            "deadline_seconds": deadline_seconds,
        }
        self.calls.append(call)
        return await self.answer(call)

    async def answer(self, call: dict[str, Any]) -> facts.ImageFacts:
        """The verdict for a recorded call (cached in ``self.cache`` when the real one would be)."""
        raise NotImplementedError
