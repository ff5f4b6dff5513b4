"""Policy status: conditions, counts, violators, stable transition times."""

from __future__ import annotations

import datetime

from modelshield.controllers import statuses

NOW = datetime.datetime(2026, 11, 26, 1, 0, tzinfo=datetime.UTC)
LATER = NOW + datetime.timedelta(minutes=5)


def _conditions(status: dict[str, object]) -> dict[str, dict[str, object]]:
    conditions = status["conditions"]
    assert isinstance(conditions, list)
    return {c["type"]: c for c in conditions}


def test_counts_and_first_violators() -> None:
    violators = [f"Deployment/ml/d{i:02}" for i in range(8)]
    status = statuses.build(statuses.Observation(governed=10, violators=violators), None, 3, NOW)
    assert status["governed"] == 10
    assert status["violating"] == 8
    assert status["compliant"] == 2
    assert status["violators"] == violators[: statuses.VIOLATORS_LISTED]
    assert status["observedGeneration"] == 3
    conditions = _conditions(status)
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Degraded"]["status"] == "False"
    assert conditions["Ready"]["observedGeneration"] == 3


def test_problems_degrade_with_their_reason() -> None:
    status = statuses.build(
        statuses.Observation(
            governed=1, problems=[("ReferenceProfileMissing", "ConfigMap ref has no key")]
        ),
        None,
        1,
        NOW,
    )
    degraded = _conditions(status)["Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "ReferenceProfileMissing")
    assert "ConfigMap ref" in str(degraded["message"])
    assert _conditions(status)["Ready"]["status"] == "True"


def test_failures_and_invalid_spec_are_not_ready() -> None:
    failed = _conditions(
        statuses.build(statuses.Observation(failures=["NetworkPolicy x: 403"]), None, 1, NOW)
    )
    assert (failed["Ready"]["status"], failed["Ready"]["reason"]) == (
        "False",
        statuses.RECONCILE_FAILED,
    )
    invalid = _conditions(
        statuses.build(statuses.Observation(invalid="bad selector"), None, 1, NOW)
    )
    assert (invalid["Ready"]["reason"], invalid["Degraded"]["reason"]) == (
        statuses.INVALID_SPEC,
    ) * 2


def test_transition_time_kept_while_status_holds() -> None:
    first = statuses.build(statuses.Observation(governed=1), None, 1, NOW)
    again = statuses.build(statuses.Observation(governed=1), first, 1, LATER)
    assert statuses.same(first, again)
    flipped = statuses.build(statuses.Observation(failures=["x"]), first, 1, LATER)
    assert _conditions(flipped)["Ready"]["lastTransitionTime"] == "2026-11-26T01:05:00Z"
    assert _conditions(flipped)["Degraded"]["lastTransitionTime"] == "2026-11-26T01:05:00Z"
    assert not statuses.same(first, flipped)


def test_pending_workloads_are_neither_compliant_nor_violating() -> None:
    status = statuses.build(
        statuses.Observation(governed=3, pending=["Deployment/ml/new"]), None, 1, NOW
    )
    assert (status["compliant"], status["violating"], status["pending"]) == (2, 0, 1)
    compliant = _conditions(status)["Compliant"]
    assert (compliant["status"], compliant["reason"]) == ("Unknown", "VerificationPending")
    assert "Deployment/ml/new" in str(compliant["message"])


def test_compliant_condition_names_the_first_violations() -> None:
    findings = [
        f"Deployment/ml/d{i}: ImageUnsigned: container 'm' has no signature" for i in range(3)
    ]
    status = statuses.build(
        statuses.Observation(
            governed=6,
            violators=[f"Deployment/ml/d{i}" for i in range(5)],
            findings=findings,
            pending=["Deployment/ml/new"],
        ),
        None,
        1,
        NOW,
    )
    compliant = _conditions(status)["Compliant"]
    assert (compliant["status"], compliant["reason"]) == ("False", "Violations")
    message = str(compliant["message"])
    assert message.startswith("5 of 6 governed workload(s) violate the policy: ")
    assert findings[0] in message
    assert "and 2 more" in message
    assert "image verification in progress for 1 workload(s)" in message
    assert (status["compliant"], status["violating"], status["pending"]) == (0, 5, 1)


def test_all_compliant() -> None:
    compliant = _conditions(statuses.build(statuses.Observation(governed=2), None, 1, NOW))
    assert (compliant["Compliant"]["status"], compliant["Compliant"]["reason"]) == (
        "True",
        "AllCompliant",
    )


def test_network_enforced_only_for_policies_with_a_network_block() -> None:
    without = _conditions(statuses.build(statuses.Observation(governed=1), None, 1, NOW))
    assert statuses.NETWORK_ENFORCED not in without
    enforced = _conditions(
        statuses.build(statuses.Observation(governed=1, network="Enforce"), None, 1, NOW)
    )
    assert enforced[statuses.NETWORK_ENFORCED]["status"] == "True"


def test_an_audit_policy_says_what_enforce_would_narrow_without_degrading() -> None:
    note = "Deployment/ml/fraud: network not enforced (Audit); under Enforce only ..."
    conditions = _conditions(
        statuses.build(
            statuses.Observation(governed=1, network="Audit", notes=[note]), None, 1, NOW
        )
    )
    assert conditions[statuses.NETWORK_ENFORCED]["status"] == "False"
    assert conditions[statuses.NETWORK_ENFORCED]["reason"] == statuses.AUDIT_ONLY
    assert note in str(conditions[statuses.NETWORK_ENFORCED]["message"])
    assert conditions["Degraded"]["status"] == "False"
    quiet = _conditions(
        statuses.build(statuses.Observation(governed=2, network="Audit"), None, 1, NOW)
    )
    assert "narrow none of the 2" in str(quiet[statuses.NETWORK_ENFORCED]["message"])
