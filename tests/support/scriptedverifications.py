"""The operator's verifications scripted: an image, inline keys, and a verifier stand-in
that answers as told (ScriptedVerifierForTests).
"""

from __future__ import annotations

import asyncio
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelshield.engine import facts
from tests.support import verifierfakes

IMAGE = "registry.example/ml/model@sha256:" + "a" * 64


def _pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


KEY_A, KEY_B = _pem(), _pem()


class ScriptedVerifierForTests(verifierfakes.VerifierStandInForTests):
    """Verified when the requirement's first signer carries ``trusted`` inline; counts calls."""

    def __init__(self, trusted: str = KEY_A, delay: float = 0.0) -> None:
        super().__init__()
        self.trusted = trusted
        self.delay = delay
        self.running = 0
        self.most_at_once = 0

    async def answer(self, call: dict[str, Any]) -> facts.ImageFacts:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.running -= 1
        signer = call["requirement"].signers[0]
        outcome = (
            facts.Outcome.VERIFIED
            if signer.public_key == self.trusted
            else facts.Outcome.NO_SIGNATURE
        )
        verdict = facts.ImageFacts(
            reference=call["reference"],
            digest=IMAGE.partition("@")[2],
            signature=facts.SignatureFact(outcome=outcome, signer=signer.name),
        )
        self.cache[(call["reference"], call["key"])] = verdict
        return verdict


INLINE_A = {"name": "release", "publicKey": KEY_A}

POLICY_KEY = ("ModelSecurityPolicy", "ml", "signed")
