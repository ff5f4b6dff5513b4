"""A policy's status from what the reconciler and the engine found. Pure.

Conditions follow Kubernetes API conventions: ``Ready`` (every owned object in place) and
``Degraded`` (something keeps the policy from being fully in force, with the reason), each
keeping its ``lastTransitionTime`` while its status does not change, so that writing the
same observation twice changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

READY = "Ready"
DEGRADED = "Degraded"
MAX_VIOLATORS = 10
VIOLATORS_LISTED = 5
MAX_MESSAGE = 2000

INVALID_SPEC = "InvalidSpec"
RECONCILE_FAILED = "ReconcileFailed"
RECONCILED = "Reconciled"
AS_EXPECTED = "AsExpected"


@dataclasses.dataclass(frozen=True)
class Observation:
    """What was found for one policy across the workloads it governs."""

    governed: int = 0
    #: Identities (kind/namespace/name) of the governed workloads that violate it.
    violators: Sequence[str] = ()
    #: (reason, message) of problems that keep it from being fully in force.
    problems: Sequence[tuple[str, str]] = ()
    #: Messages of writes that failed.
    failures: Sequence[str] = ()
    #: The spec could not be read: the validation error.
    invalid: str = ""


def _condition(
    kind: str,
    status: bool,
    reason: str,
    message: str,
    generation: int,
    previous: Mapping[str, Mapping[str, Any]],
    now: datetime.datetime,
) -> dict[str, Any]:
    status_text = "True" if status else "False"
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
    return {
        "observedGeneration": generation,
        "conditions": [
            _condition(READY, *ready, generation, earlier, now),
            _condition(DEGRADED, *degraded, generation, earlier, now),
        ],
        "governed": observation.governed,
        "compliant": observation.governed - len(violators),
        "violating": len(violators),
        "violators": violators[:VIOLATORS_LISTED],
    }


def same(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether writing ``new`` would change nothing."""
    if previous is None:
        return False
    return all(previous.get(key) == value for key, value in new.items())
