"""Planning from what the operator has seen: which objects, for which policies."""

from __future__ import annotations

from modelshield.controllers import caches, planning
from modelshield.controllers.builders import driftmonitors, ownership
from tests.support.planningworld import SETTINGS, _deployment, _policy, _world

DRIFT = {"drift": {"referenceProfile": {"name": "ref", "key": "p.json"}}}


def test_network_policy_for_a_governed_workload() -> None:
    world = _world(
        _policy("p", {"selector": {"matchLabels": {"app": "fraud"}}, "network": {}}),
        _deployment("fraud", {"app": "fraud"}),
        _deployment("other", {"app": "other"}),
    )
    plan = planning.plan(world, ("Deployment", "ml", "fraud"), SETTINGS, None)
    assert [key[0] for key in plan.desired] == ["NetworkPolicy"]
    manifest = next(iter(plan.desired.values()))
    assert manifest["spec"]["podSelector"] == {"matchLabels": {"app": "fraud"}}
    assert manifest["metadata"]["ownerReferences"][1]["uid"] == "uid-p"
    assert planning.plan(world, ("Deployment", "ml", "other"), SETTINGS, None).desired == {}


def test_cluster_policy_follows_namespace_labels() -> None:
    cluster = _policy(
        "base",
        {"namespaceSelector": {"matchLabels": {"tier": "prod"}}, "selector": {}, "network": {}},
        kind="ClusterModelSecurityPolicy",
    )
    world = _world(cluster, _deployment("fraud", {"app": "fraud"}))
    key = ("Deployment", "ml", "fraud")
    assert len(planning.plan(world, key, SETTINGS, None).desired) == 1
    assert world.put_namespace({"metadata": {"name": "ml", "labels": {"tier": "dev"}}})
    assert planning.plan(world, key, SETTINGS, None).desired == {}


def test_drift_monitor_objects_and_missing_profile() -> None:
    world = _world(
        _policy("p", {"selector": {"matchLabels": {"app": "fraud"}}, "monitoring": DRIFT}),
        _deployment("fraud", {"app": "fraud"}),
    )
    key = ("Deployment", "ml", "fraud")
    plan = planning.plan(world, key, SETTINGS, '{"rows": 1}')
    assert sorted(k[0] for k in plan.desired) == [
        "ConfigMap",
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    with_account = planning.Settings(
        monitor=driftmonitors.MonitorSettings(image="modelshield:test", service_account="drift")
    )
    assert sorted(k[0] for k in planning.plan(world, key, with_account, "{}").desired) == [
        "ConfigMap",
        "Deployment",
        "Service",
    ]
    missing = planning.plan(world, key, SETTINGS, None)
    assert missing.desired == {}
    [problems] = missing.problems.values()
    assert problems[0].reason == planning.REFERENCE_PROFILE_MISSING


def test_inference_service_logger_conflict_is_reported() -> None:
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "namespace": "ml", "uid": "u", "labels": {"app": "iris"}},
        "spec": {"predictor": {"logger": {"url": "http://elsewhere/"}}},
    }
    world = _world(
        _policy("p", {"selector": {"matchLabels": {"app": "iris"}}, "monitoring": DRIFT}), isvc
    )
    plan = planning.plan(world, ("InferenceService", "ml", "iris"), SETTINGS, "{}")
    assert plan.logger_patch is None
    [problems] = plan.problems.values()
    assert problems[0].reason == planning.PAYLOAD_LOGGER_IN_USE


def test_status_only_changes_do_not_count_as_policy_changes() -> None:
    body = _policy("p", {"selector": {}})
    world = caches.World()
    assert world.put_policy(body)
    assert not world.put_policy({**body, "status": {"governed": 3}})
    assert world.put_policy({**body, "spec": {"selector": {"matchLabels": {"a": "b"}}}})


def test_invalid_policy_governs_nothing() -> None:
    world = _world(
        _policy("bad", {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}})
    )
    entry = world.policies[("ModelSecurityPolicy", "ml", "bad")]
    assert entry.model is None
    assert entry.error
    assert len(world.policy_set()) == 0


def test_children_are_indexed_by_their_workload() -> None:
    world = caches.World()
    child = ownership.stamp(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ml"}},
        ownership.Governance(
            ownership.ObjectRef("apps/v1", "Deployment", "fraud", "u", "ml"), (), "x"
        ),
    )
    world.put_child(child)
    assert list(world.children_of(("Deployment", "ml", "fraud"))) == [("ConfigMap", "ml", "c")]
    world.remove_child(("ConfigMap", "ml", "c"))
    assert world.children_of(("Deployment", "ml", "fraud")) == {}


def test_children_stay_indexed_when_the_gc_strips_the_workload_reference() -> None:
    world = caches.World()
    child = ownership.stamp(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ml"}},
        ownership.Governance(
            ownership.ObjectRef("apps/v1", "Deployment", "fraud", "u", "ml"),
            (
                ownership.ObjectRef(
                    "modelshield.dev/v1alpha1", "ModelSecurityPolicy", "p", "up", "ml"
                ),
            ),
            "x",
        ),
    )
    child["metadata"]["ownerReferences"] = child["metadata"]["ownerReferences"][1:]
    world.put_child(child)
    assert list(world.children_of(("Deployment", "ml", "fraud"))) == [("ConfigMap", "ml", "c")]


def test_a_label_alone_does_not_make_a_workload_ours() -> None:
    body = _deployment("sneaky", {"app": "fraud"})
    body["metadata"]["labels"] = {ownership.MANAGED_BY_LABEL: ownership.MANAGED_BY}
    assert not caches.is_managed(body)
    stamped = ownership.stamp(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ml"}},
        ownership.Governance(
            ownership.ObjectRef("apps/v1", "Deployment", "fraud", "u", "ml"), (), "x"
        ),
    )
    assert caches.is_managed(stamped)
