"""What a decision says about one workload for a policy's status, while verifications run. Pure.

The engine turns an image without a verification result into ``ImageNotVerified``: right
for admission (nothing is admitted unproven), wrong for a status read a second after a
workload was applied, whose verification has only just started. Here such a workload is
*pending* until the verdict arrives, unless it already violates something else.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from modelshield.engine import decisions, workloads

#: A finding shown in the policy's Compliant condition is cut to this many characters.
MAX_FINDING = 400


class Judgement(enum.Enum):
    """Where a governed workload stands with one policy."""

    COMPLIANT = "compliant"
    VIOLATING = "violating"
    PENDING = "pending"


def unverified_paths(workload: workloads.Workload, missing_images: Iterable[str]) -> frozenset[str]:
    """The JSON paths of the image fields whose verification result is missing."""
    missing = set(missing_images)
    return frozenset(f"{c.path}.image" for c in workload.containers if c.image in missing)


def established(
    decision: decisions.Decision, workload: workloads.Workload, missing_images: Iterable[str]
) -> list[decisions.Violation]:
    """The violations and warnings that do not stand for a verification still to come."""
    waiting = unverified_paths(workload, missing_images)
    return [
        violation
        for violation in (*decision.violations, *decision.warnings)
        if not (violation.code is decisions.Code.IMAGE_NOT_VERIFIED and violation.path in waiting)
    ]


def judge(
    decision: decisions.Decision,
    workload: workloads.Workload,
    missing_images: Iterable[str],
    *,
    verifying: bool,
) -> Judgement:
    """Compliant, violating, or pending (verifying: the missing results are on their way)."""
    missing = frozenset(missing_images) if verifying else frozenset()
    if established(decision, workload, missing):
        return Judgement.VIOLATING
    if decision.violations or decision.warnings:
        return Judgement.PENDING
    return Judgement.COMPLIANT


def finding(identity: str, violations: Iterable[decisions.Violation]) -> str:
    """One line naming the workload and its first violation, for the Compliant condition."""
    first = next(iter(violations), None)
    if first is None:
        return identity
    line = f"{identity}: {first.code.value}: {first.message}"
    return line if len(line) <= MAX_FINDING else line[: MAX_FINDING - 3] + "..."
