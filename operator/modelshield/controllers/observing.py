"""A policy's observation for its status: the reconciler's outcomes judged by the engine.

Each governed workload is evaluated against the one policy with the image verdicts of
``imageverdicts`` (asking for any that are missing or stale: a cache entry may have expired)
and judged compliant, violating, or pending while its verdicts are on their way.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from modelshield.api.v1alpha1 import policies, validation
from modelshield.controllers import caches, imageverdicts, plans, statuses, verdicts
from modelshield.engine import compiling, evaluating, modelchecks, s3endpoints, workloads


def observe(
    policy_key: caches.Key,
    world: caches.World,
    outcomes: Mapping[caches.Key, plans.Outcome],
    verifications: imageverdicts.Verifications,
    now: datetime.datetime,
    *,
    startup: modelchecks.StartupCheck | None = None,
    store: s3endpoints.ModelStore = s3endpoints.DEFAULT,
) -> statuses.Observation:
    """What the outcomes and the engine say about one policy.

    ``startup``: modelshield's own startup init container is judged as admission judges
    it (``imageverdicts.image_subject``).
    """
    entry = world.policies.get(policy_key)
    if entry is None:
        return statuses.Observation()
    if entry.model is None:
        return statuses.Observation(invalid=entry.error)
    compiled = compiling.compile_policies([entry.model])
    governed = 0
    violating: list[str] = []
    pending: list[str] = []
    findings: list[str] = []
    # What admission refuses is reported here too (a policy stored before a rule existed).
    problems: list[tuple[str, str]] = [
        (statuses.INVALID_SPEC, f"{path}: {problem}")
        for path, problem in validation.semantic_problems(
            entry.model.spec,
            cluster=isinstance(entry.model, policies.ClusterModelSecurityPolicy),
        )
    ]
    failures: list[str] = []
    notes: list[str] = []
    for key, outcome in sorted(outcomes.items()):
        ref = next(
            (r for r in outcome.governing if (r.kind, r.namespace, r.name) == policy_key), None
        )
        body = world.workloads.get(key)
        if ref is None or body is None:
            continue
        governed += 1
        parsed = workloads.parse(body)
        governing = evaluating.governing_policies(
            parsed, compiled, world.namespaces.get(key[1], {})
        )
        subject = imageverdicts.image_subject(parsed, world, startup)
        looked = verifications.look_up(key, subject, governing)
        decision = evaluating.decide(
            parsed, governing, looked.source(world), now, startup=startup, store=store
        )
        judged = verdicts.judge(decision, parsed, looked.missing, verifying=verifications.verifying)
        if judged is verdicts.Judgement.VIOLATING:
            violating.append(parsed.identity)
            if len(findings) < statuses.FINDINGS_LISTED:
                found = verdicts.established(decision, parsed, looked.missing)
                findings.append(verdicts.finding(parsed.identity, found))
        elif judged is verdicts.Judgement.PENDING:
            pending.append(parsed.identity)
        problems.extend((p.reason, p.message) for p in outcome.problems.get(ref, []))
        notes.extend(note.message for note in outcome.notes.get(ref, []))
        failures.extend(outcome.failures)
    network = entry.model.spec.network is not None
    return statuses.Observation(
        governed=governed,
        violators=violating,
        pending=pending,
        findings=findings,
        problems=problems,
        failures=failures,
        network=entry.model.spec.enforcement.value if network else "",
        notes=notes,
    )
