"""The watch-fed state: events, resync, compiled policies, broken policies, namespace waits."""

from __future__ import annotations

import asyncio

from modelshield_webhooks import caches
from tests.support import admissionscenarios as scenarios


def test_synced_only_after_every_kind_was_listed() -> None:
    state = caches.ClusterState()
    for kind in caches.KINDS[:-1]:
        state.replace(kind, [])
        assert not state.synced
    state.replace(caches.KINDS[-1], [])
    assert state.synced
    assert state.unsynced() == []


def test_policy_events_rebuild_the_policy_set() -> None:
    state = scenarios.synced_state()
    assert not state.policy_set.could_govern(scenarios.ENFORCED)
    policy = scenarios.policy(scenarios.ENFORCED)
    state.apply(caches.POLICIES, "ADDED", policy)
    assert state.policy_set.could_govern(scenarios.ENFORCED)
    assert not state.policy_set.could_govern(scenarios.UNGOVERNED)
    state.apply(caches.POLICIES, "DELETED", policy)
    assert not state.policy_set.could_govern(scenarios.ENFORCED)


def test_cluster_policies_govern_everywhere_and_resync_replaces_them() -> None:
    state = scenarios.synced_state()
    cluster = scenarios.policy("", name="baseline")
    cluster["kind"] = "ClusterModelSecurityPolicy"
    cluster["spec"]["namespaceSelector"] = {}
    state.apply(caches.CLUSTER_POLICIES, "ADDED", cluster)
    assert state.policy_set.could_govern("anything")
    state.replace(caches.CLUSTER_POLICIES, [])
    assert not state.policy_set.could_govern("anything")


def test_an_invalid_policy_is_kept_as_broken_until_fixed() -> None:
    state = scenarios.synced_state()
    broken = scenarios.policy(scenarios.ENFORCED)
    broken["spec"]["enforcement"] = "Maybe"
    state.apply(caches.POLICIES, "ADDED", broken)
    (found,) = state.broken_for(scenarios.ENFORCED)
    assert "ModelSecurityPolicy ml/fraud-model is invalid" in found.describe()
    assert state.broken_for(scenarios.UNGOVERNED) == []
    state.apply(caches.POLICIES, "MODIFIED", scenarios.policy(scenarios.ENFORCED, generation=2))
    assert state.broken_for(scenarios.ENFORCED) == []
    assert state.policy_set.could_govern(scenarios.ENFORCED)


def test_operator_status_never_breaks_a_policy() -> None:
    state = scenarios.synced_state()
    policy = scenarios.policy(scenarios.ENFORCED)
    policy["status"] = {"something": "the models do not know"}
    state.apply(caches.POLICIES, "ADDED", policy)
    assert state.broken_for(scenarios.ENFORCED) == []


def test_artifacts_by_name_and_uri_follow_events() -> None:
    state = scenarios.synced_state()
    artifact = scenarios.model_artifact(scenarios.ENFORCED)
    state.apply(caches.ARTIFACTS, "ADDED", artifact)
    found = state.artifact(scenarios.ENFORCED, scenarios.ARTIFACT)
    assert found is not None
    assert found.verified
    assert found.current
    assert state.artifact_by_uri(scenarios.ENFORCED, "s3://models/fraud-v7/") == found
    moved = scenarios.model_artifact(scenarios.ENFORCED)
    moved["spec"]["uri"] = "s3://models/elsewhere/"
    state.apply(caches.ARTIFACTS, "MODIFIED", moved)
    assert state.artifact_by_uri(scenarios.ENFORCED, "s3://models/fraud-v7/") is None
    assert state.artifact_by_uri(scenarios.ENFORCED, "s3://models/elsewhere/") is not None
    state.apply(caches.ARTIFACTS, "DELETED", moved)
    assert state.artifact(scenarios.ENFORCED, scenarios.ARTIFACT) is None


def test_an_artifact_with_an_unreadable_status_proves_nothing() -> None:
    state = scenarios.synced_state()
    artifact = scenarios.model_artifact(scenarios.ENFORCED)
    artifact["status"]["conditions"] = "garbage"
    state.apply(caches.ARTIFACTS, "ADDED", artifact)
    found = state.artifact(scenarios.ENFORCED, scenarios.ARTIFACT)
    assert found is not None
    assert not found.verified
    assert not found.current


async def test_a_new_namespace_is_waited_for_briefly() -> None:
    state = scenarios.synced_state()
    assert await state.namespace_labels("late", 0.05) is None

    async def arrive() -> None:
        await asyncio.sleep(0.05)
        state.apply(caches.NAMESPACES, "ADDED", scenarios.namespace("late", {"team": "ml"}))

    arriving = asyncio.create_task(arrive())
    labels = await state.namespace_labels("late", 5.0)
    await arriving
    assert labels == {"kubernetes.io/metadata.name": "late", "team": "ml"}


def test_status_updates_do_not_recompile() -> None:
    state = scenarios.synced_state([scenarios.policy(scenarios.ENFORCED)])
    compiled = state.policy_set
    version = state.version
    with_status = scenarios.policy(scenarios.ENFORCED)
    with_status["status"] = {"governed": 3}
    state.apply(caches.POLICIES, "MODIFIED", with_status)
    assert state.policy_set is compiled
    assert state.version == version
    state.apply(caches.POLICIES, "MODIFIED", scenarios.policy(scenarios.AUDITED, generation=2))
    assert state.policy_set is not compiled


def test_equal_requirement_blocks_are_shared_between_policies() -> None:
    # The engine memoizes checks by block identity.
    state = scenarios.standard_state()
    (enforced,) = state.policy_set.namespaced[scenarios.ENFORCED]
    (audited,) = state.policy_set.namespaced[scenarios.AUDITED]
    assert enforced.runtime is audited.runtime
    assert enforced.images is audited.images


def test_blocks_that_differ_only_in_mutate_to_digest_are_not_shared() -> None:
    # CompiledImages compares without its source; sharing would lose mutateToDigest.
    state = scenarios.synced_state(
        [
            scenarios.policy(scenarios.ENFORCED),
            scenarios.policy(scenarios.AUDITED, mutate_to_digest=True),
        ]
    )
    (enforced,) = state.policy_set.namespaced[scenarios.ENFORCED]
    (audited,) = state.policy_set.namespaced[scenarios.AUDITED]
    assert enforced.images is not None
    assert audited.images is not None
    assert not enforced.images.source.mutate_to_digest
    assert audited.images.source.mutate_to_digest
