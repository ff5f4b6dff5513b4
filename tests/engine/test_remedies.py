"""Every verification outcome is denied with its own remedy, and only its own."""

from __future__ import annotations

import dataclasses

import pytest

from modelshield.engine import compiling, evaluating, facts
from modelshield.engine.decisions import Code
from modelshield.supplychain.images import imageverifier, registries
from tests.support import workloadbuilders as b


@dataclasses.dataclass(frozen=True)
class Expected:
    """What a denial for one outcome says: its code, the problem, and the remedy."""

    code: Code
    problem: str
    remedy: str


SIGN = "sign it with the key of one of: release (cosign sign --key ...)"
NOT_CHECKED = (
    "this is not a verdict on the image: retry, and if it persists check the network "
    "access of the modelshield webhook (or operator) to the registry"
)
PULL_SECRETS = "--read-pull-secrets (chart: webhook.readPullSecrets)"

#: One entry per Outcome: a new outcome without a remedy fails test_every_outcome_is_covered.
EXPECTED = {
    facts.Outcome.VERIFIED: Expected(
        Code.IMAGE_SIGNER_UNTRUSTED,
        "is signed by 'intern', not a trusted signer",
        "only signatures by one of: release are accepted; sign it with one of their keys",
    ),
    facts.Outcome.NO_SIGNATURE: Expected(Code.IMAGE_UNSIGNED, "has no signature", SIGN),
    facts.Outcome.SIGNATURE_MISMATCH: Expected(
        Code.IMAGE_SIGNATURE_INVALID,
        "has a signature that does not verify",
        "it is signed, but not verifiably by a trusted signer: sign it with the key of one of: "
        "release",
    ),
    facts.Outcome.SIGNER_UNTRUSTED: Expected(
        Code.IMAGE_SIGNER_UNTRUSTED,
        "is signed, but by no trusted signer",
        "only signatures by one of: release are accepted; sign it with one of their keys",
    ),
    facts.Outcome.DIGEST_MISMATCH: Expected(
        Code.IMAGE_SIGNATURE_INVALID,
        "has a signature made for another image digest",
        "the signature is for another digest: sign the digest you deploy",
    ),
    facts.Outcome.TIMED_OUT: Expected(
        Code.IMAGE_VERIFICATION_FAILED, "could not be verified in time", NOT_CHECKED
    ),
    facts.Outcome.REGISTRY_UNREACHABLE: Expected(
        Code.IMAGE_VERIFICATION_FAILED,
        "could not be verified: the registry is unreachable",
        NOT_CHECKED,
    ),
    facts.Outcome.NOT_FOUND: Expected(
        Code.IMAGE_VERIFICATION_FAILED,
        "was not found in its registry",
        "check the image reference (registry, repository, tag or digest)",
    ),
    facts.Outcome.ERROR: Expected(
        Code.IMAGE_VERIFICATION_FAILED,
        "could not be verified",
        "the image was not checked: fix what the reason names and retry",
    ),
}
#: Outcomes that say nothing about the image: re-signing it would not help.
UNCHECKED = {
    facts.Outcome.TIMED_OUT,
    facts.Outcome.REGISTRY_UNREACHABLE,
    facts.Outcome.NOT_FOUND,
    facts.Outcome.ERROR,
}
ATTESTATION = {"name": "scan", "predicateType": b.VULN}


def _message(
    outcome: facts.Outcome, requirements: dict[str, object], *, attestation_failure: bool = False
) -> list[tuple[Code, str]]:
    signer = "intern" if outcome is facts.Outcome.VERIFIED else None
    fact = facts.SignatureFact(outcome, signer, "the verifier's reason")
    image = facts.ImageFacts(
        reference=b.SIGNED_IMAGE,
        digest=None,
        signature=fact,
        attestation_failure=fact if attestation_failure else None,
    )
    decision = evaluating.evaluate(
        b.workload("Deployment"),
        compiling.compile_policies([b.policy(images=requirements)]),
        {},
        facts.StaticFacts(images={b.SIGNED_IMAGE: image}),
        b.NOW,
    )
    return [(v.code, v.message) for v in decision.violations]


def test_every_outcome_is_covered() -> None:
    assert set(EXPECTED) == set(facts.Outcome)


def test_every_outcome_the_verifier_produces_is_covered() -> None:
    # Registry errors become outcomes by kind; an unknown kind becomes ERROR.
    kinds = {
        registries.RegistryError,
        registries.RegistryUnreachableError,
        registries.RegistryTimeoutError,
        registries.NotFoundError,
        registries.DigestMismatchError,
    }
    produced = {imageverifier.outcome_of(kind("reason")) for kind in kinds}
    assert produced <= set(EXPECTED)
    assert produced == UNCHECKED | {facts.Outcome.DIGEST_MISMATCH}


@pytest.mark.parametrize("outcome", list(facts.Outcome), ids=str)
def test_a_failed_signature_is_denied_with_its_remedy(outcome: facts.Outcome) -> None:
    expected = EXPECTED[outcome]
    ((code, message),) = _message(outcome, {"signers": b.SIGNERS})
    assert code is expected.code
    what = f"container 'server' image {b.SIGNED_IMAGE!r}"
    reason = " (the verifier's reason)"
    assert message.startswith(f"{what} {expected.problem}{reason}; {expected.remedy}"), message
    if outcome in UNCHECKED:
        assert "sign it" not in message
        assert "cosign" not in message
    else:
        assert "release" in message  # the trusted signers are named


@pytest.mark.parametrize("outcome", sorted(UNCHECKED), ids=str)
def test_unchecked_outcomes_name_the_webhook_not_the_image(outcome: facts.Outcome) -> None:
    ((_, message),) = _message(outcome, {"signers": b.SIGNERS})
    if outcome in (facts.Outcome.TIMED_OUT, facts.Outcome.REGISTRY_UNREACHABLE):
        assert "not a verdict on the image" in message
        assert "retry" in message
    else:
        assert PULL_SECRETS in message


@pytest.mark.parametrize("outcome", sorted(UNCHECKED), ids=str)
def test_attestations_that_could_not_be_read_are_not_told_to_attest(
    outcome: facts.Outcome,
) -> None:
    found = _message(
        outcome, {"signers": b.SIGNERS, "attestations": [ATTESTATION]}, attestation_failure=True
    )
    attestation = [message for code, message in found if code is Code.ATTESTATION_MISSING]
    (message,) = attestation
    assert f"({outcome.value}: the verifier's reason)" in message
    assert "cosign attest" not in message
    assert EXPECTED[outcome].remedy in message


def test_a_missing_attestation_is_told_to_attest() -> None:
    found = _message(
        facts.Outcome.NO_SIGNATURE,
        {"signers": b.SIGNERS, "attestations": [ATTESTATION]},
        attestation_failure=True,
    )
    (message,) = [m for code, m in found if code is Code.ATTESTATION_MISSING]
    assert message.endswith("attach one with cosign attest")
