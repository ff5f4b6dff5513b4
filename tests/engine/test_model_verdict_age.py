"""Admission refuses a ModelArtifact verdict older than its recheckInterval plus a grace.

Issue 21: a check that kept failing with an uncaught error left ``Ready`` and the old
``lastChecked`` in place for good, and admission never looked at how old the verdict was.
The engine is pure: the evaluation time comes in as ``now``, as for attestation maxAge.
"""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from modelshield.api.v1alpha1 import artifacts
from modelshield.engine import compiling, evaluating, facts, modelchecks
from modelshield.engine.decisions import Code
from tests.support import workloadbuilders as b

DAY = datetime.timedelta(hours=24)


def _decide(artifact: facts.ArtifactFacts, now: datetime.datetime = b.NOW) -> list[Code]:
    body = b.workload("Deployment", b.pod_spec(b.hardened_container()))
    source = facts.StaticFacts(artifacts={(b.NAMESPACE, b.MODEL): artifact})
    policy_set = compiling.compile_policies([b.policy(models={"signers": b.SIGNERS})])
    decision = evaluating.evaluate(body, policy_set, {}, source, now)
    return [v.code for v in decision.violations]


def _checked(ago: datetime.timedelta, interval: datetime.timedelta = DAY) -> facts.ArtifactFacts:
    return dataclasses.replace(b.artifact(), last_checked=b.NOW - ago, recheck_interval=interval)


def test_a_verdict_within_its_interval_and_grace_is_used() -> None:
    assert _decide(_checked(DAY + modelchecks.VERDICT_GRACE)) == []
    assert _decide(_checked(datetime.timedelta(minutes=5))) == []


@pytest.mark.parametrize(
    ("ago", "interval"),
    [
        (DAY + modelchecks.VERDICT_GRACE + datetime.timedelta(seconds=1), DAY),
        (datetime.timedelta(days=30), DAY),
        (datetime.timedelta(hours=3), datetime.timedelta(minutes=30)),
    ],
)
def test_a_stale_ready_verdict_is_refused(
    ago: datetime.timedelta, interval: datetime.timedelta
) -> None:
    assert _decide(_checked(ago, interval)) == [Code.MODEL_VERDICT_STALE]


def test_the_age_is_judged_at_the_evaluation_time_handed_in() -> None:
    artifact = _checked(datetime.timedelta(0))

    assert _decide(artifact, b.NOW + DAY) == []
    assert _decide(artifact, b.NOW + DAY + modelchecks.VERDICT_GRACE * 2) == [
        Code.MODEL_VERDICT_STALE
    ]


def test_facts_carry_last_checked_and_the_recheck_interval() -> None:
    checked = datetime.datetime(2026, 11, 25, 8, tzinfo=datetime.UTC)
    artifact = artifacts.ModelArtifact.model_validate(
        {
            "metadata": {"name": b.MODEL, "namespace": b.NAMESPACE, "generation": 1},
            "spec": {"uri": "s3://models/v1/", "recheckInterval": "6h"},
            "status": {"observedGeneration": 1, "lastChecked": checked.isoformat()},
        }
    )

    found = facts.from_model_artifact(artifact)

    assert found.last_checked == checked
    assert found.recheck_interval == datetime.timedelta(hours=6)


def test_the_stale_message_hides_credentials_in_the_uri() -> None:
    artifact = dataclasses.replace(
        _checked(datetime.timedelta(days=30)), uri="https://user:hunter2@models.example/m.tar"
    )
    body = b.workload("Deployment", b.pod_spec(b.hardened_container()))
    source = facts.StaticFacts(artifacts={(b.NAMESPACE, b.MODEL): artifact})
    policy_set = compiling.compile_policies([b.policy(models={"signers": b.SIGNERS})])

    decision = evaluating.evaluate(body, policy_set, {}, source, b.NOW)

    assert "hunter2" not in decision.violations[0].message


def test_a_last_checked_without_a_zone_is_read_as_utc() -> None:
    artifact = artifacts.ModelArtifact.model_validate(
        {
            "metadata": {"name": b.MODEL, "namespace": b.NAMESPACE, "generation": 1},
            "spec": {"uri": "s3://models/v1/"},
            "status": {"observedGeneration": 1, "lastChecked": "2026-10-01T00:00:00"},
        }
    )

    found = facts.from_model_artifact(artifact)

    assert found.last_checked == datetime.datetime(2026, 10, 1, tzinfo=datetime.UTC)
    assert _decide(dataclasses.replace(b.artifact(), last_checked=found.last_checked)) == [
        Code.MODEL_VERDICT_STALE
    ]


def test_a_verdict_that_does_not_say_when_it_was_made_is_refused() -> None:
    # Before, a status without lastChecked was judged by its conditions alone, for good.
    assert _decide(b.artifact(last_checked=None)) == [Code.MODEL_VERDICT_STALE]


def test_a_hand_written_status_without_last_checked_is_stale_and_says_why() -> None:
    written = {
        "metadata": {"name": b.MODEL, "namespace": b.NAMESPACE, "generation": 1},
        "spec": {"uri": "s3://models/v1/"},
        "status": {
            "observedGeneration": 1,
            "verifiedDigest": "sha256:" + "b" * 64,
            "signer": "release",
            "signerKey": b.RELEASE_KEY_ID,
            "conditions": [
                {
                    "type": kind,
                    "status": "True",
                    "reason": "Fine",
                    "lastTransitionTime": "2026-11-25T00:00:00Z",
                }
                for kind in (artifacts.VERIFIED, artifacts.SCANNED, "Ready")
            ],
        },
    }
    found = facts.from_model_artifact(artifacts.ModelArtifact.model_validate(written))
    body = b.workload("Deployment", b.pod_spec(b.hardened_container()))
    source = facts.StaticFacts(artifacts={(b.NAMESPACE, b.MODEL): found})
    policy_set = compiling.compile_policies([b.policy(models={"signers": b.SIGNERS})])

    decision = evaluating.evaluate(body, policy_set, {}, source, b.NOW)

    assert [v.code for v in decision.violations] == [Code.MODEL_VERDICT_STALE]
    assert "no status.lastChecked" in decision.violations[0].message

    written["status"]["lastChecked"] = "2026-11-25T23:00:00Z"  # type: ignore[index]
    checked = facts.from_model_artifact(artifacts.ModelArtifact.model_validate(written))
    assert _decide(checked) == []


def test_a_spec_change_still_reads_as_not_checked_rather_than_stale() -> None:
    assert _decide(b.artifact(current=False, last_checked=None)) == [Code.MODEL_NOT_VERIFIED]
