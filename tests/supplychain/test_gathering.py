"""The facts layer's bounded verification: within the deadline, else a failed fact.

The stand-in verifiers here misbehave on purpose (their names say so); the real verifier
against a real registry is exercised by test_image_verifier.py and test_verifier_flags.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from modelshield.api.v1alpha1 import policies
from modelshield.engine import compiling, facts
from modelshield.supplychain.images import gathering, secretreading, signerkeys, verifiers
from tests.support import admissionscenarios as scenarios
from tests.support import verifierfakes

IMAGE = scenarios.SIGNED


def _requirement(signer: dict[str, Any]) -> compiling.CompiledImages:
    spec = scenarios.policy(scenarios.ENFORCED)
    spec["spec"]["images"]["signers"] = [signer]
    compiled = compiling.compile_policy(policies.ModelSecurityPolicy.model_validate(spec))
    assert compiled.images is not None
    return compiled.images


INLINE = _requirement({"name": "inline", "publicKey": scenarios.PUBLIC_KEY})
FROM_SECRET = _requirement({"name": "release", "secretRef": {"name": "keys", "key": "k"}})


class AnsweringVerifierForTests(verifierfakes.VerifierStandInForTests):
    """Verified at once, or after ``delay`` whatever the deadline, or raising."""

    def __init__(self, delay: float = 0.0, raises: bool = False) -> None:
        super().__init__()
        self.delay = delay
        self.raises = raises

    async def answer(self, call: dict[str, Any]) -> facts.ImageFacts:
        await asyncio.sleep(self.delay)
        if self.raises:
            raise RuntimeError("a verifier that breaks its promise")
        return facts.ImageFacts(
            reference=call["reference"],
            digest=None,
            signature=facts.SignatureFact(outcome=facts.Outcome.VERIFIED, signer="inline"),
        )


class HangingSecretsForTests:
    """A SecretSource whose reads never end."""

    async def read(self, namespace: str, name: str) -> secretreading.SecretData | None:
        await asyncio.sleep(3600)
        return None


async def test_a_verifier_past_its_deadline_and_grace_is_a_timed_out_fact() -> None:
    found = await verifiers.verify_within(
        AnsweringVerifierForTests(delay=60),
        IMAGE,
        INLINE,
        deadline_seconds=0.1,
        grace_seconds=0.05,
    )
    assert found.signature.outcome is facts.Outcome.TIMED_OUT
    assert found.signature.detail == "verification did not finish within 0.1s"


async def test_a_verifier_that_raises_is_an_error_fact() -> None:
    found = await verifiers.verify_within(
        AnsweringVerifierForTests(raises=True), IMAGE, INLINE, deadline_seconds=1, grace_seconds=0
    )
    assert found.signature.outcome is facts.Outcome.ERROR
    assert found.signature.detail == "verifier error: RuntimeError"


async def test_secret_reads_past_the_deadline_leave_the_signer_unresolved_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = secretreading.CachedSecrets(HangingSecretsForTests())
    access = gathering.SecretAccess(signer_keys=signerkeys.SignerKeys(cache))
    verifier = AnsweringVerifierForTests()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.ERROR):
        (gathered,) = await gathering.gather(
            verifier,
            [gathering.Request(IMAGE, FROM_SECRET, access.resolved_now(FROM_SECRET, "ml"))],
            namespace="ml",
            deadline_seconds=0.2,
            grace_seconds=0.05,
            access=access,
        )
    assert loop.time() - started < 0.2 + 0.05 + 0.5
    # The verifier was still asked, with the signer unresolved (it fails to verify).
    assert gathered.requirement is FROM_SECRET
    [call] = verifier.calls
    assert call["requirement"].signers[0].secret_ref is not None
    assert call["deadline_seconds"] == 0.0
    # A timeout is the expected way for a Secret read to end here: nothing is logged.
    assert not caplog.records
