"""A policy the API models reject denies only where its selectors pick, when they still read.

An upgrade that adds a stricter rule can make an existing ClusterModelSecurityPolicy
invalid; before this, one such policy denied every workload of every namespace.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelshield_webhooks import caches, contexts, mutating, validating
from tests.support import admissionscenarios as scenarios
from tests.support import imageverdicts as verdicts

TEAM = {"team": "ml"}


def _cluster_policy(**spec_changes: Any) -> dict[str, Any]:
    cluster = scenarios.policy("", name="baseline")
    cluster["kind"] = "ClusterModelSecurityPolicy"
    cluster["spec"]["namespaceSelector"] = {"matchLabels": dict(TEAM)}
    cluster["spec"]["enforcement"] = "Enforced"  # what a stricter rule would now refuse
    cluster["spec"].update(spec_changes)
    return cluster


def _context(*policies: dict[str, Any]) -> contexts.AdmissionContext:
    state = scenarios.synced_state(policies, [scenarios.model_artifact(scenarios.ENFORCED)])
    state.replace(
        caches.NAMESPACES,
        [scenarios.namespace(scenarios.ENFORCED, TEAM), scenarios.namespace(scenarios.UNGOVERNED)],
    )
    return contexts.AdmissionContext(
        state=state,
        verifier=verdicts.FixedVerdictVerifierForTests(),
        verify_deadline_seconds=1.0,
        namespace_wait_seconds=0.0,
        clock=lambda: scenarios.NOW,
    )


async def _answer(
    context: contexts.AdmissionContext,
    namespace: str,
    labels: dict[str, str] = scenarios.LABELS,
    endpoint: str = "validate",
) -> dict[str, Any]:
    info = scenarios.BY_LABEL["Deployment"]
    obj = scenarios.workload(info, namespace=namespace, labels=labels)
    body = json.dumps(scenarios.review(info, "CREATE", obj)).encode()
    handler = validating.review if endpoint == "validate" else mutating.review
    answer = await handler(body, context)
    return dict(answer["response"])


@pytest.mark.parametrize("endpoint", ["validate", "mutate"])
async def test_a_broken_cluster_policy_denies_only_where_its_selectors_match(
    endpoint: str,
) -> None:
    context = _context(_cluster_policy())
    (broken,) = context.state.broken_for("anything")
    assert broken.scope is not None
    # Where it applies: fail closed, saying which policy and why.
    denied = await _answer(context, scenarios.ENFORCED, endpoint=endpoint)
    assert denied["allowed"] is False
    message = denied["status"]["message"]
    assert "ClusterModelSecurityPolicy baseline is invalid" in message
    assert "the workloads its selectors pick" in message
    # A namespace its namespaceSelector does not pick, and a workload its selector does not.
    assert (await _answer(context, scenarios.UNGOVERNED, endpoint=endpoint))["allowed"] is True
    other = await _answer(context, scenarios.ENFORCED, {"app": "web"}, endpoint=endpoint)
    assert other["allowed"] is True


async def test_a_namespace_not_seen_yet_fails_closed() -> None:
    context = _context(_cluster_policy())
    answer = await _answer(context, "created-a-moment-ago")
    assert answer["allowed"] is False
    assert "baseline is invalid" in answer["status"]["message"]


@pytest.mark.parametrize(
    "spec_changes",
    [
        {"namespaceSelector": {"matchLabels": "not a map"}},
        {"selector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}},
        {"selector": None},
        {"namespaceSelector": None},
    ],
    ids=["namespace-selector", "selector-operator", "no-selector", "no-namespace-selector"],
)
async def test_unusable_selectors_keep_denying_everywhere(spec_changes: dict[str, Any]) -> None:
    cluster = _cluster_policy(**spec_changes)
    cluster["spec"] = {k: v for k, v in cluster["spec"].items() if v is not None}
    context = _context(cluster)
    (broken,) = context.state.broken_for("anything")
    assert broken.scope is None
    for namespace, labels in [
        (scenarios.ENFORCED, scenarios.LABELS),
        (scenarios.UNGOVERNED, scenarios.LABELS),
        (scenarios.UNGOVERNED, {"app": "web"}),
    ]:
        answer = await _answer(context, namespace, labels)
        assert answer["allowed"] is False
        assert "its selectors cannot be read either" in answer["status"]["message"]


async def test_a_broken_namespaced_policy_denies_only_what_its_selector_picks() -> None:
    broken = scenarios.policy(scenarios.UNGOVERNED, name="typo")
    broken["spec"]["enforcement"] = "Enforced"
    context = _context(broken)
    assert (await _answer(context, scenarios.UNGOVERNED))["allowed"] is False
    assert (await _answer(context, scenarios.UNGOVERNED, {"app": "web"}))["allowed"] is True
    # Other namespaces never were its concern.
    assert (await _answer(context, scenarios.ENFORCED, {"app": "web"}))["allowed"] is True


async def test_a_fixed_policy_stops_denying() -> None:
    context = _context(_cluster_policy())
    fixed = _cluster_policy(enforcement="Enforce")
    fixed["metadata"]["generation"] = 2
    context.state.apply(caches.CLUSTER_POLICIES, "MODIFIED", fixed)
    assert context.state.broken_for("anything") == []
    answer = await _answer(context, scenarios.ENFORCED)
    assert answer["allowed"] is True, answer
