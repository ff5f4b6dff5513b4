"""Keyless trusted builders: a provenance statement in a sigstore bundle, verified by the real
sigstore library against a private trust root these tests create (our own CA, CT log and
transparency log: tests/supplychain/sigstoretestroot.py), and judged at admission by the
identity that verified, never by the builder's name.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
from collections.abc import Mapping
from typing import Any

import pytest

from modelshield.api.v1alpha1.common import ConditionStatus
from modelshield.engine import compiling, facts, keyids, provenancechecks
from modelshield.engine.decisions import Code
from modelshield.provenance import checking, envelopes, keyless, statements
from tests.support import sigstoretestroot
from tests.support import workloadbuilders as b

ISSUER = "https://token.actions.example.com"
IDENTITY = "https://git.example.com/ml/fraud/.ci/train.yaml@refs/heads/main"
DIGEST = "sha256:" + "7" * 64
DATA = "s3://data/fraud/tx/"


@pytest.fixture(scope="module")
def trust_root() -> sigstoretestroot.TestTrustRoot:
    return sigstoretestroot.TestTrustRoot()


@pytest.fixture
def trust_root_file(
    trust_root: sigstoretestroot.TestTrustRoot, tmp_path: pathlib.Path
) -> pathlib.Path:
    return trust_root.write(tmp_path / "trusted_root.json")


def _statement(digest: str = DIGEST) -> dict[str, object]:
    now = datetime.datetime.now(datetime.UTC)
    return statements.build(
        subject_name="fraud",
        subject_digest=digest,
        builder_id="https://ci.example.com/pipelines/fraud",
        source="git+https://git.example.com/ml/fraud",
        commit="4f2d9c1e",
        datasets=[statements.Input("tx", DATA, "sha256:" + "d" * 64)],
        started=now,
        finished=now,
    )


def _request(
    trust_root_file: pathlib.Path | None,
    *,
    subject: str | None = IDENTITY,
    regexp: str | None = None,
    issuer: str = ISSUER,
) -> checking.Request:
    return checking.Request(
        uri="file:///unused",
        builders=(),
        keyless=(keyless.KeylessBuilder("pipeline", issuer, subject, regexp),),
        trust_root=trust_root_file,
    )


def test_a_keyless_statement_verifies_and_records_the_identity(
    trust_root: sigstoretestroot.TestTrustRoot, trust_root_file: pathlib.Path
) -> None:
    bundle = trust_root.keyless_bundle(_statement(), IDENTITY, ISSUER)

    result = checking.judge(bundle, _request(trust_root_file), DIGEST)

    assert (result.status, result.reason) == (ConditionStatus.TRUE, checking.VERIFIED)
    assert result.facts is not None
    assert (result.facts.builder, result.facts.builder_key) == ("pipeline", "")
    assert (result.facts.builder_issuer, result.facts.builder_identity) == (ISSUER, IDENTITY)
    assert [d.uri for d in result.facts.datasets] == [DATA]


def test_a_regexp_identity_records_the_identity_that_matched(
    trust_root: sigstoretestroot.TestTrustRoot, trust_root_file: pathlib.Path
) -> None:
    bundle = trust_root.keyless_bundle(_statement(), IDENTITY, ISSUER)
    request = _request(trust_root_file, subject=None, regexp=r"https://git\.example\.com/ml/.*")

    result = checking.judge(bundle + b"\n", request, DIGEST)

    assert result.reason == checking.VERIFIED, result.message
    assert result.facts is not None
    assert result.facts.builder_identity == IDENTITY


@pytest.mark.parametrize(
    ("identity", "issuer", "why"),
    [
        ("https://git.example.com/someone/else@refs/heads/main", ISSUER, "does not match"),
        (IDENTITY, "https://accounts.evil.example", "is not"),
    ],
)
def test_another_identity_or_issuer_is_an_untrusted_builder(
    trust_root: sigstoretestroot.TestTrustRoot,
    trust_root_file: pathlib.Path,
    identity: str,
    issuer: str,
    why: str,
) -> None:
    bundle = trust_root.keyless_bundle(_statement(), identity, issuer)

    result = checking.judge(bundle, _request(trust_root_file), DIGEST)

    assert (result.status, result.reason) == (ConditionStatus.FALSE, checking.UNTRUSTED_BUILDER)
    assert why in result.message


def test_a_certificate_from_another_ca_does_not_verify(trust_root_file: pathlib.Path) -> None:
    rogue = sigstoretestroot.TestTrustRoot("rogue")
    bundle = rogue.keyless_bundle(_statement(), IDENTITY, ISSUER)

    result = checking.judge(bundle, _request(trust_root_file), DIGEST)

    assert result.reason == checking.UNTRUSTED_BUILDER
    assert "sigstore verification failed" in result.message


def test_without_a_trust_root_a_keyless_builder_verifies_nothing(
    trust_root: sigstoretestroot.TestTrustRoot,
) -> None:
    bundle = trust_root.keyless_bundle(_statement(), IDENTITY, ISSUER)

    result = checking.judge(bundle, _request(None), DIGEST)

    assert result.reason == checking.UNTRUSTED_BUILDER
    assert "no sigstore trust root" in result.message


def test_a_keyless_statement_for_another_model_is_a_subject_mismatch(
    trust_root: sigstoretestroot.TestTrustRoot, trust_root_file: pathlib.Path
) -> None:
    bundle = trust_root.keyless_bundle(_statement("sha256:" + "8" * 64), IDENTITY, ISSUER)

    result = checking.judge(bundle, _request(trust_root_file), DIGEST)

    assert result.reason == checking.SUBJECT_MISMATCH


def test_a_changed_payload_does_not_verify(
    trust_root: sigstoretestroot.TestTrustRoot, trust_root_file: pathlib.Path
) -> None:
    bundle = trust_root.keyless_bundle(_statement(), IDENTITY, ISSUER)
    other = trust_root.keyless_bundle(_statement("sha256:" + "9" * 64), IDENTITY, ISSUER)
    # The payload of one bundle with the signature, certificate and log entry of another.
    document, donor = json.loads(bundle), json.loads(other)
    document["dsseEnvelope"]["payload"] = donor["dsseEnvelope"]["payload"]

    result = checking.judge(json.dumps(document).encode(), _request(trust_root_file), DIGEST)

    assert result.reason == checking.UNTRUSTED_BUILDER


# --- admission: a keyless builder is trusted by issuer and identity, not by name ----------


def _judged(provenance: facts.ProvenanceFacts, builder: Mapping[str, Any]) -> list[Code]:
    policy = b.policy(models={"signers": b.SIGNERS, "provenance": {"trustedBuilders": [builder]}})
    requirement = compiling.compile_policies([policy]).namespaced[b.NAMESPACE][0].models
    assert requirement is not None
    artifact = dataclasses.replace(b.artifact(), provenance=provenance)
    found = provenancechecks.check_artifact(
        "path", artifact, requirement.provenance, facts.StaticFacts(), b.NAMESPACE, b.NOW
    )
    return [code for code, _, _ in found]


KEYLESS_BUILDER: dict[str, Any] = {
    "name": "pipeline",
    "keyless": {"issuer": ISSUER, "subject": IDENTITY},
}


def _verified(key: str = "", issuer: str = "", identity: str = "") -> facts.ProvenanceFacts:
    return facts.ProvenanceFacts(
        verified=True,
        reason=checking.VERIFIED,
        builder="pipeline",
        builder_key=key,
        builder_issuer=issuer,
        builder_identity=identity,
    )


def test_admission_accepts_the_policys_own_keyless_builder() -> None:
    verified = _verified(issuer=ISSUER, identity=IDENTITY)

    assert _judged(verified, KEYLESS_BUILDER) == []


def test_a_key_verified_statement_does_not_pass_for_a_keyless_builder_of_that_name() -> None:
    # Another governing policy names its own key "pipeline"; the operator verifies against
    # both, and records that key. Before, a keyless builder was trusted by its name alone.
    by_key = _verified(key=keyids.fingerprint(b.RELEASE_KEY.encode()))

    assert _judged(by_key, KEYLESS_BUILDER) == [Code.PROVENANCE_UNTRUSTED_BUILDER]


def test_another_identity_under_the_builders_name_is_untrusted() -> None:
    other = _verified(issuer=ISSUER, identity="https://git.example.com/fork")

    assert _judged(other, KEYLESS_BUILDER) == [Code.PROVENANCE_UNTRUSTED_BUILDER]


def test_a_keyless_statement_does_not_pass_for_a_key_builder_of_that_name() -> None:
    keyless_verified = _verified(issuer=ISSUER, identity=IDENTITY)
    key_builder = {"name": "pipeline", "publicKey": b.RELEASE_KEY}

    assert _judged(keyless_verified, key_builder) == [Code.PROVENANCE_UNTRUSTED_BUILDER]


def test_envelopes_carry_no_identity_for_a_key() -> None:
    assert envelopes.Verified("pipeline", b"{}").issuer == ""
