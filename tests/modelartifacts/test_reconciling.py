"""The reconciler's core: files and signers in, ModelArtifact status out."""

from __future__ import annotations

import datetime
import pathlib

import pytest

from modelshield.api.v1alpha1 import artifacts, policies
from modelshield.api.v1alpha1.common import ConditionStatus, Severity
from modelshield.modelartifacts import modelverifying, reconciling, signing
from tests.support import modelfiles as models
from tests.support import picklecode as op
from tests.support import signingkeys as keys

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)
LATER = NOW + datetime.timedelta(hours=1)


@pytest.fixture
def pair(tmp_path: pathlib.Path) -> keys.KeyPair:
    return keys.key_pair(tmp_path / "keys", "release")


@pytest.fixture
def signed(tmp_path: pathlib.Path, pair: keys.KeyPair) -> pathlib.Path:
    model = models.benign_model(tmp_path / "model")
    signing.sign_with_key(model, pair.private_path)
    return model


def _spec(digest: str | None = None) -> artifacts.ModelArtifactSpec:
    return artifacts.ModelArtifactSpec(uri="s3://models/fraud/v1/", digest=digest)


def _conditions(status: artifacts.ModelArtifactStatus) -> dict[str, tuple[ConditionStatus, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def _signers(pair: keys.KeyPair) -> list[modelverifying.TrustedSigner]:
    return [modelverifying.KeySigner("release", pair.public_pem)]


def test_signed_clean_model_is_ready(signed: pathlib.Path, pair: keys.KeyPair) -> None:
    verdict = reconciling.reconcile(_spec(), 3, signed, _signers(pair), None, now=NOW)

    assert _conditions(verdict.status) == {
        "Verified": (ConditionStatus.TRUE, "SignatureVerified"),
        "Scanned": (ConditionStatus.TRUE, "ScanComplete"),
        "Ready": (ConditionStatus.TRUE, "Ready"),
    }
    assert verdict.status.signer == "release"
    assert verdict.status.verified_digest is not None
    assert verdict.status.observed_generation == 3
    assert [c.type for c in verdict.transitions] == ["Verified", "Scanned", "Ready"]
    # The status is what the CRD accepts.
    artifacts.ModelArtifactStatus.model_validate(verdict.status.model_dump(by_alias=True))


def test_unchanged_recheck_keeps_transition_times_and_posts_no_event(
    signed: pathlib.Path, pair: keys.KeyPair
) -> None:
    first = reconciling.reconcile(_spec(), 1, signed, _signers(pair), None, now=NOW)

    second = reconciling.reconcile(_spec(), 1, signed, _signers(pair), first.status, now=LATER)

    assert second.transitions == ()
    assert {c.last_transition_time for c in second.status.conditions} == {NOW}
    assert second.status.last_checked == LATER


def test_content_changed_at_the_uri_makes_it_not_ready(
    signed: pathlib.Path, pair: keys.KeyPair
) -> None:
    first = reconciling.reconcile(_spec(), 1, signed, _signers(pair), None, now=NOW)
    (signed / "vocab.txt").write_text("swapped\n")

    second = reconciling.reconcile(_spec(), 1, signed, _signers(pair), first.status, now=LATER)

    conditions = _conditions(second.status)
    assert conditions["Verified"] == (ConditionStatus.FALSE, "ContentMismatch")
    assert conditions["Ready"] == (ConditionStatus.FALSE, "NotVerified")
    assert second.status.verified_digest is None
    assert {c.type for c in second.transitions} == {"Verified", "Ready"}
    ready = next(c for c in second.status.conditions if c.type == "Ready")
    assert "vocab.txt" in ready.message
    assert ready.last_transition_time == LATER


def test_resigned_model_without_pinned_digest_is_a_content_change(
    signed: pathlib.Path, pair: keys.KeyPair
) -> None:
    first = reconciling.reconcile(_spec(), 1, signed, _signers(pair), None, now=NOW)
    (signed / "vocab.txt").write_text("new version\n")
    signing.sign_with_key(signed, pair.private_path)

    second = reconciling.reconcile(_spec(), 1, signed, _signers(pair), first.status, now=LATER)

    assert _conditions(second.status)["Verified"] == (ConditionStatus.FALSE, "ContentChanged")


def test_expected_digest_mismatch(signed: pathlib.Path, pair: keys.KeyPair) -> None:
    verdict = reconciling.reconcile(
        _spec("sha256:" + "a" * 64), 1, signed, _signers(pair), None, now=NOW
    )

    assert _conditions(verdict.status)["Verified"] == (ConditionStatus.FALSE, "DigestMismatch")


def test_blocking_findings(tmp_path: pathlib.Path, pair: keys.KeyPair) -> None:
    model = models.benign_model(tmp_path / "m")
    (model / "extra.pkl").write_bytes(op.call("os", "system", "true"))
    signing.sign_with_key(model, pair.private_path)

    verdict = reconciling.reconcile(_spec(), 1, model, _signers(pair), None, now=NOW)

    conditions = _conditions(verdict.status)
    assert conditions["Verified"][0] is ConditionStatus.TRUE
    assert conditions["Ready"] == (ConditionStatus.FALSE, "BlockingFindings")
    assert verdict.status.findings[0].severity == Severity.CRITICAL
    assert verdict.status.findings[0].file == "extra.pkl"


def test_threshold_from_policies_lets_low_findings_pass(
    signed: pathlib.Path, pair: keys.KeyPair
) -> None:
    # The sklearn estimator import is a Low finding: it blocks only at Low.
    strict = reconciling.reconcile(
        _spec(), 1, signed, _signers(pair), None, now=NOW, block_at_or_above=Severity.LOW
    )

    assert _conditions(strict.status)["Ready"] == (ConditionStatus.FALSE, "BlockingFindings")


def test_fetch_failure(pair: keys.KeyPair) -> None:
    verdict = reconciling.reconcile(
        _spec(), 1, None, _signers(pair), None, now=NOW, fetch_error="HTTP 404"
    )

    assert _conditions(verdict.status) == {
        "Verified": (ConditionStatus.FALSE, "FetchFailed"),
        "Scanned": (ConditionStatus.FALSE, "FetchFailed"),
        "Ready": (ConditionStatus.FALSE, "NotVerified"),
    }


def test_no_signers_is_ready_without_signature(signed: pathlib.Path) -> None:
    verdict = reconciling.reconcile(_spec(), 1, signed, [], None, now=NOW)

    assert _conditions(verdict.status)["Verified"] == (ConditionStatus.FALSE, "NoSigners")
    assert _conditions(verdict.status)["Ready"] == (ConditionStatus.TRUE, "ReadyWithoutSignature")


def test_findings_are_bounded(tmp_path: pathlib.Path) -> None:
    model = tmp_path / "many"
    model.mkdir()
    for index in range(120):
        (model / f"f{index:03}.pkl").write_bytes(op.call("os", "system", "x"))

    verdict = reconciling.reconcile(_spec(), 1, model, [], None, now=NOW)

    assert len(verdict.status.findings) == 100
    assert verdict.status.findings_truncated


def test_trusted_signers_from_policies(tmp_path: pathlib.Path, pair: keys.KeyPair) -> None:
    requirements = [
        policies.ModelRequirements(
            signers=[
                policies.Signer(name="inline", public_key=pair.public_pem.decode()),
                policies.Signer(
                    name="from-secret", secret_ref={"name": "model-keys", "key": "release.pub"}
                ),
                policies.Signer(
                    name="ci",
                    keyless={"issuer": "https://issuer.example", "subjectRegExp": "https://.*"},
                ),
            ],
            block_findings_at_or_above=Severity.MEDIUM,
        ),
        policies.ModelRequirements(
            signers=[policies.Signer(name="inline", public_key=pair.public_pem.decode())]
        ),
    ]

    signers = reconciling.trusted_signers(
        requirements, {("model-keys", "release.pub"): b"PEM"}, tmp_path / "trust.json"
    )

    assert [s.name for s in signers] == ["inline", "from-secret", "ci"]
    assert reconciling.blocking_threshold(requirements) == Severity.MEDIUM
    assert reconciling.blocking_threshold([]) == Severity.HIGH
