"""A policy's status from what the reconciler and the engine found. Pure.

Conditions follow Kubernetes API conventions: ``Ready`` (every owned object in place),
``Degraded`` (something keeps the policy from being fully in force, with the reason),
``Compliant`` (whether the governed workloads pass: ``Unknown`` while image verifications
are still running, ``False`` naming the first violations) and, for a policy with a
``network`` block, ``NetworkEnforced`` (``False`` under Audit, saying what Enforce would
narrow: an Audit policy never restricts traffic), each keeping its
``lastTransitionTime`` while its status does not change, so that writing the same
observation twice changes nothing. A workload awaiting its image verdicts counts as
``pending``: neither compliant nor violating.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

READY = "Ready"
DEGRADED = "Degraded"
COMPLIANT = "Compliant"
NETWORK_ENFORCED = "NetworkEnforced"
MAX_VIOLATORS = 10
VIOLATORS_LISTED = 5
MAX_MESSAGE = 2000
#: Violating workloads whose first violation the Compliant condition names.
FINDINGS_LISTED = 3

INVALID_SPEC = "InvalidSpec"
RECONCILE_FAILED = "ReconcileFailed"
RECONCILED = "Reconciled"
AS_EXPECTED = "AsExpected"
ALL_COMPLIANT = "AllCompliant"
VIOLATIONS = "Violations"
VERIFICATION_PENDING = "VerificationPending"
ENFORCED = "Enforced"
AUDIT_ONLY = "AuditOnly"


@dataclasses.dataclass(frozen=True)
class Observation:
    """What was found for one policy across the workloads it governs."""

    governed: int = 0
    #: Identities (kind/namespace/name) of the governed workloads that violate it.
    violators: Sequence[str] = ()
    #: Identities of the governed workloads whose image verdicts are still being reached.
    pending: Sequence[str] = ()
    #: One line per listed violator: its identity and first violation.
    findings: Sequence[str] = ()
    #: (reason, message) of problems that keep it from being fully in force.
    problems: Sequence[tuple[str, str]] = ()
    #: Messages of writes that failed.
    failures: Sequence[str] = ()
    #: The spec could not be read: the validation error.
    invalid: str = ""
    #: The enforcement of the policy's ``network`` block; empty when it has none.
    network: str = ""
    #: Under Audit: per governed workload, what Enforce would narrow.
    notes: Sequence[str] = ()


def _condition(
    kind: str,
    status: bool | None,
    reason: str,
    message: str,
    generation: int,
    previous: Mapping[str, Mapping[str, Any]],
    now: datetime.datetime,
) -> dict[str, Any]:
    status_text = "Unknown" if status is None else "True" if status else "False"
    before = previous.get(kind)
    transition = (
        before["lastTransitionTime"]
        if before is not None
        and before.get("status") == status_text
        and before.get("lastTransitionTime")
        else now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    return {
        "type": kind,
        "status": status_text,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "lastTransitionTime": transition,
        "observedGeneration": generation,
    }


def _summarise(messages: Sequence[str]) -> str:
    shown = list(messages[:3])
    more = len(messages) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def build(
    observation: Observation,
    previous: Mapping[str, Any] | None,
    generation: int,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The status document (wire form) for a policy."""
    earlier = {
        str(c.get("type")): c
        for c in ((previous or {}).get("conditions") or [])
        if isinstance(c, Mapping)
    }
    if observation.invalid:
        ready = (False, INVALID_SPEC, observation.invalid)
        degraded = (True, INVALID_SPEC, observation.invalid)
    elif observation.failures:
        message = _summarise(observation.failures)
        ready = (False, RECONCILE_FAILED, message)
        degraded = (True, RECONCILE_FAILED, message)
    else:
        ready = (
            True,
            RECONCILED,
            f"controls in place for {observation.governed} governed workload(s)",
        )
        if observation.problems:
            reason = observation.problems[0][0]
            degraded = (True, reason, _summarise([message for _, message in observation.problems]))
        else:
            degraded = (False, AS_EXPECTED, "")
    violators = sorted(observation.violators)
    pending = sorted(observation.pending)
    compliant = _compliance(observation, violators, pending)
    conditions = [
        _condition(READY, *ready, generation, earlier, now),
        _condition(DEGRADED, *degraded, generation, earlier, now),
        _condition(COMPLIANT, *compliant, generation, earlier, now),
    ]
    if observation.network:
        conditions.append(
            _condition(NETWORK_ENFORCED, *_network(observation), generation, earlier, now)
        )
    return {
        "observedGeneration": generation,
        "conditions": conditions,
        "governed": observation.governed,
        "compliant": max(0, observation.governed - len(violators) - len(pending)),
        "violating": len(violators),
        "pending": len(pending),
        "violators": violators[:VIOLATORS_LISTED],
    }


def _network(observation: Observation) -> tuple[bool, str, str]:
    """The NetworkEnforced condition: (status, reason, message)."""
    if observation.network == "Enforce":
        return True, ENFORCED, "the network block is enforced by operator-owned NetworkPolicies"
    if observation.notes:
        return False, AUDIT_ONLY, _summarise(observation.notes)
    return (
        False,
        AUDIT_ONLY,
        "Audit: the network block restricts no traffic; under Enforce it would narrow "
        f"none of the {observation.governed} governed workload(s)",
    )


def _compliance(
    observation: Observation, violators: Sequence[str], pending: Sequence[str]
) -> tuple[bool | None, str, str]:
    """The Compliant condition: (status, reason, message)."""
    if observation.invalid:
        return None, INVALID_SPEC, "the spec cannot be read; nothing is judged"
    waiting = (
        f"image verification in progress for {len(pending)} workload(s): {_summarise(pending)}"
        if pending
        else ""
    )
    if violators:
        shown = list(observation.findings[:FINDINGS_LISTED]) or list(violators[:FINDINGS_LISTED])
        more = len(violators) - len(shown)
        message = (
            f"{len(violators)} of {observation.governed} governed workload(s) violate the "
            f"policy: {'; '.join(shown)}" + (f"; and {more} more" if more > 0 else "")
        )
        return False, VIOLATIONS, f"{message}; {waiting}" if waiting else message
    if pending:
        return None, VERIFICATION_PENDING, waiting
    return True, ALL_COMPLIANT, f"all {observation.governed} governed workload(s) comply"


def same(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether writing ``new`` would change nothing."""
    if previous is None:
        return False
    return all(previous.get(key) == value for key, value in new.items())
