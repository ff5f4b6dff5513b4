"""A policy trusts its model signers' keys and identities, not their names (issue 16).

The operator verifies a ModelArtifact against the signers of every governing policy. A
namespace admin could name their own key ``release`` in a namespaced policy, sign a model
with it, and the recorded signer name ``release`` satisfied the cluster baseline's
``release``. Now the operator records which key or keyless identity verified, and each
policy accepts only its own.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelshield.api.v1alpha1 import artifacts, policies
from modelshield.engine import compiling, evaluating, facts, keyids
from modelshield.engine.decisions import Code
from tests.support import workloadbuilders as b

ATTACKER_KEY = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
ATTACKER_KEY_ID = keyids.fingerprint(ATTACKER_KEY.encode())
ISSUER = "https://token.actions.githubusercontent.com"
RELEASE_WORKFLOW = "https://github.com/corp/models/.github/workflows/release.yml@refs/heads/main"


def _baseline(models: dict[str, Any]) -> policies.ClusterModelSecurityPolicy:
    return policies.ClusterModelSecurityPolicy.model_validate(
        {
            "metadata": {"name": "baseline"},
            "spec": {
                "namespaceSelector": {},
                "selector": {"matchLabels": b.LABELS},
                "models": models,
            },
        }
    )


def _team(models: dict[str, Any]) -> policies.ModelSecurityPolicy:
    return b.policy(models=models)


def _violations(
    artifact: facts.ArtifactFacts,
    *policy: policies.ModelSecurityPolicy | policies.ClusterModelSecurityPolicy,
) -> list[tuple[str, Code]]:
    body = b.workload("Deployment", b.pod_spec(b.hardened_container()))
    source = facts.StaticFacts(artifacts={(b.NAMESPACE, b.MODEL): artifact})
    decision = evaluating.evaluate(body, compiling.compile_policies(policy), {}, source, b.NOW)
    return [(v.policy.kind, v.code) for v in decision.violations]


def _signed(
    signer: str = "release",
    signer_key: str = "",
    signer_issuer: str = "",
    signer_identity: str = "",
) -> facts.ArtifactFacts:
    return dataclasses.replace(
        b.artifact(signer=signer),
        signer_key=signer_key,
        signer_issuer=signer_issuer,
        signer_identity=signer_identity,
    )


def test_a_namespaced_key_named_like_the_baselines_does_not_satisfy_the_baseline() -> None:
    baseline = _baseline({"signers": b.SIGNERS, "requireScan": False})
    team = _team(
        {"signers": [{"name": "release", "publicKey": ATTACKER_KEY}], "requireScan": False}
    )
    # The operator verified with the namespaced key named "release" and recorded that key.
    forged = _signed(signer="release", signer_key=ATTACKER_KEY_ID)
    assert _violations(forged, baseline, team) == [
        ("ClusterModelSecurityPolicy", Code.MODEL_SIGNER_UNTRUSTED)
    ]
    # The namespaced policy is satisfied by its own key; the baseline by its own.
    assert _violations(forged, team) == []
    assert _violations(_signed(signer_key=b.RELEASE_KEY_ID), baseline) == []
    # Each policy trusts its own key only: the baseline's key does not satisfy the team's.
    assert _violations(_signed(signer_key=b.RELEASE_KEY_ID), baseline, team) == [
        ("ModelSecurityPolicy", Code.MODEL_SIGNER_UNTRUSTED)
    ]


def test_the_refusal_says_which_key_verified() -> None:
    baseline = _baseline({"signers": b.SIGNERS, "requireScan": False})
    body = b.workload("Deployment", b.pod_spec(b.hardened_container()))
    forged = _signed(signer="release", signer_key=ATTACKER_KEY_ID)
    source = facts.StaticFacts(artifacts={(b.NAMESPACE, b.MODEL): forged})
    decision = evaluating.evaluate(body, compiling.compile_policies([baseline]), {}, source, b.NOW)
    assert ATTACKER_KEY_ID in decision.violations[0].message
    assert "not this policy's signer of that name" in decision.violations[0].message


def test_a_status_without_the_key_fails_closed_until_the_operator_checks_again() -> None:
    baseline = _baseline({"signers": b.SIGNERS, "requireScan": False})
    old = _signed(signer_key="")
    body = b.workload("Deployment", b.pod_spec(b.hardened_container()))
    source = facts.StaticFacts(artifacts={(b.NAMESPACE, b.MODEL): old})
    decision = evaluating.evaluate(body, compiling.compile_policies([baseline]), {}, source, b.NOW)
    assert [v.code for v in decision.violations] == [Code.MODEL_SIGNER_UNTRUSTED]
    assert "older operator" in decision.violations[0].message


def test_a_keyless_signer_is_trusted_by_issuer_and_identity() -> None:
    keyless = [{"name": "release", "keyless": {"issuer": ISSUER, "subject": RELEASE_WORKFLOW}}]
    baseline = _baseline({"signers": keyless, "requireScan": False})
    own = _signed(signer_key="", signer_issuer=ISSUER, signer_identity=RELEASE_WORKFLOW)
    assert _violations(own, baseline) == []
    # A namespaced keyless "release" with a broad subjectRegExp let another workflow sign.
    other = dataclasses.replace(own, signer_identity=RELEASE_WORKFLOW.replace("corp", "evil"))
    assert _violations(other, baseline) == [
        ("ClusterModelSecurityPolicy", Code.MODEL_SIGNER_UNTRUSTED)
    ]
    assert _violations(dataclasses.replace(own, signer_issuer="https://evil.example"), baseline)
    # A key never satisfies a keyless signer, and an identity never a key signer.
    assert _violations(_signed(signer_key=b.RELEASE_KEY_ID), baseline)
    assert _violations(own, _baseline({"signers": b.SIGNERS, "requireScan": False}))
    pattern = [
        {
            "name": "release",
            "keyless": {"issuer": ISSUER, "subjectRegExp": r"https://github\.com/corp/.*"},
        }
    ]
    assert _violations(own, _baseline({"signers": pattern, "requireScan": False})) == []
    assert _violations(other, _baseline({"signers": pattern, "requireScan": False}))


def test_a_key_in_a_secret_is_trusted_by_name() -> None:
    # Namespaced policies only (the engine reads no Secrets), as for trusted builders.
    from_secret = [{"name": "release", "secretRef": {"name": "keys", "key": "release.pub"}}]
    team = _team({"signers": from_secret, "requireScan": False})
    assert _violations(_signed(signer_key=ATTACKER_KEY_ID), team) == []
    assert _violations(_signed(signer="other", signer_key=ATTACKER_KEY_ID), team)


def test_an_unreadable_inline_key_trusts_nothing() -> None:
    unreadable = [{"name": "release", "publicKey": b.PUBLIC_KEY}]  # a PEM header, no key
    team = _team({"signers": unreadable, "requireScan": False})
    assert _violations(_signed(signer_key=keyids.UNREADABLE), team)


def test_the_status_fields_reach_the_engine() -> None:
    written = artifacts.ModelArtifact.model_validate(
        {
            "metadata": {"name": b.MODEL, "namespace": b.NAMESPACE, "generation": 1},
            "spec": {"uri": "s3://models/v1/"},
            "status": {
                "signer": "release",
                "signerKey": ATTACKER_KEY_ID,
                "signerIssuer": ISSUER,
                "signerIdentity": RELEASE_WORKFLOW,
            },
        }
    )
    read = facts.from_model_artifact(written)
    assert (read.signer_key, read.signer_issuer, read.signer_identity) == (
        ATTACKER_KEY_ID,
        ISSUER,
        RELEASE_WORKFLOW,
    )
