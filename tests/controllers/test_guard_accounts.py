"""Which ServiceAccounts the operator binds for TokenReviews: exactly the guards its plans
create, each in its workload's own namespace, whatever a namespaced policy asks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelshield.controllers import caches, guardplans, planning
from modelshield.controllers.builders import tokenreviewers
from tests.support.guardplanning import API, SETTINGS, _served
from tests.support.planningworld import _deployment, _policy, _world

EVERYTHING: dict[str, Any] = {"matchLabels": {}}


def _in(namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    moved = copy.deepcopy(body)
    moved["metadata"]["namespace"] = namespace
    return moved


def _planned_accounts(world: caches.World) -> set[tuple[str, str]]:
    """The guard ServiceAccounts the plans of every workload would create."""
    return {
        (key[1], key[2])
        for workload in world.workloads_in(None)
        for key, body in planning.plan(world, workload, SETTINGS, None).desired.items()
        if key[0] == "ServiceAccount"
        and body["metadata"]["labels"]["app.kubernetes.io/component"] == "inference-guard"
    }


def _world_with(*bodies: dict[str, Any]) -> caches.World:
    world = _world(*bodies)
    for namespace in ("other", "attacker"):
        world.put_namespace({"metadata": {"name": namespace}})
    return world


def _inference_service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": f"uid-{name}",
            "labels": {"app": name},
        },
        "spec": {
            "predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://m/"}}
        },
    }


SCENARIOS: dict[str, tuple[dict[str, Any], ...]] = {
    "api": (_policy("api", {"selector": EVERYTHING, "api": API}), _served()),
    "no api block": (_policy("net", {"selector": EVERYTHING, "network": {}}), _served()),
    "no port: no guard": (_policy("api", {"selector": EVERYTHING, "api": API}), _served(None)),
    "audit: the guard runs, and reviews tokens": (
        _policy("api", {"selector": EVERYTHING, "api": API, "enforcement": "Audit"}),
        _served(),
    ),
    "an InferenceService": (
        _policy("api", {"selector": EVERYTHING, "api": API}),
        _inference_service("iris"),
    ),
    "a selector a Service cannot hold: no guard": (
        _policy("api", {"selector": EVERYTHING, "api": API}),
        {
            **_served(),
            "spec": {
                **_served()["spec"],
                "selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
            },
        },
    ),
    "several workloads, one unselected": (
        _policy("api", {"selector": {"matchLabels": {"app": "fraud"}}, "api": API}),
        _served(),
        _deployment("other", {"app": "other"}),
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_bound_accounts_are_exactly_the_planned_guards_accounts(name: str) -> None:
    world = _world_with(*SCENARIOS[name])
    assert guardplans.guard_accounts(world) == _planned_accounts(world)


def test_the_expected_accounts_in_the_plain_cases() -> None:
    assert guardplans.guard_accounts(_world_with(*SCENARIOS["api"])) == {
        ("ml", "ms-guard-deploy-fraud")
    }
    audited = _world_with(*SCENARIOS["audit: the guard runs, and reviews tokens"])
    assert guardplans.guard_accounts(audited) == {("ml", "ms-guard-deploy-fraud")}
    assert guardplans.guard_accounts(_world_with(*SCENARIOS["an InferenceService"])) == {
        ("ml", "ms-guard-isvc-iris")
    }
    for empty in (
        "no api block",
        "no port: no guard",
        "a selector a Service cannot hold: no guard",
    ):
        assert guardplans.guard_accounts(_world_with(*SCENARIOS[empty])) == set(), empty


def test_a_namespaced_policy_selecting_everything_binds_only_its_own_namespaces_guards() -> None:
    world = _world_with(
        _policy("grab", {"selector": EVERYTHING, "api": API}, namespace="attacker"),
        _in("attacker", _served()),
        _served(),  # in ml: no policy of ml asks for an api block
        _in("other", _served()),
    )
    assert guardplans.guard_accounts(world) == {("attacker", "ms-guard-deploy-fraud")}
    assert guardplans.guard_accounts(world) == _planned_accounts(world)


def test_a_workload_name_cannot_place_a_subject_in_another_namespace() -> None:
    named = _served()
    named["metadata"]["name"] = "kube-system"
    world = _world_with(
        _policy("grab", {"selector": EVERYTHING, "api": API}, namespace="attacker"),
        _in("attacker", named),
    )
    ((namespace, name),) = guardplans.guard_accounts(world)
    assert namespace == "attacker"
    assert name == "ms-guard-deploy-kube-system"


def test_no_guard_account_in_namespaces_that_are_never_governed() -> None:
    cluster = _policy(
        "base", {"selector": EVERYTHING, "api": API}, kind="ClusterModelSecurityPolicy"
    )
    world = _world_with(cluster, _in("kube-system", _served()), _served())
    world.put_namespace({"metadata": {"name": "kube-system"}})
    assert guardplans.guard_accounts(world) == {("ml", "ms-guard-deploy-fraud")}


def test_the_account_goes_when_the_api_block_or_the_workload_goes() -> None:
    world = _world_with(*SCENARIOS["api"])
    assert guardplans.guard_accounts(world)
    world.put_policy(_policy("api", {"selector": EVERYTHING, "network": {}}))
    assert guardplans.guard_accounts(world) == set()
    world.put_policy(_policy("api", {"selector": EVERYTHING, "api": API}))
    world.remove_workload(("Deployment", "ml", "fraud"))
    assert guardplans.guard_accounts(world) == set()


# --- the binding -------------------------------------------------------------------


def _binding(role_ref_name: str, subjects: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "guards", "resourceVersion": "7", "managedFields": [{"manager": "x"}]},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role_ref_name,
        },
        **({"subjects": subjects} if subjects is not None else {}),
    }


def test_subjects_are_service_accounts_in_a_stable_order_without_duplicates() -> None:
    assert tokenreviewers.subjects([("b", "x"), ("a", "y"), ("b", "x")]) == [
        {"kind": "ServiceAccount", "name": "y", "namespace": "a"},
        {"kind": "ServiceAccount", "name": "x", "namespace": "b"},
    ]


def test_a_hand_added_subject_of_another_kind_never_passes_for_ours() -> None:
    wanted = tokenreviewers.subjects([("ml", "ms-guard-deploy-fraud")])
    assert tokenreviewers.bound(_binding("guards", list(wanted))) == wanted
    extra = [*wanted, {"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}]
    assert tokenreviewers.bound(_binding("guards", extra)) != wanted
    group = [{"kind": "Group", "name": "ms-guard-deploy-fraud", "namespace": "ml"}]
    assert tokenreviewers.bound(_binding("guards", group)) != wanted
    assert tokenreviewers.bound(_binding("guards")) == []


def test_a_binding_of_another_role_is_never_written() -> None:
    assert tokenreviewers.role_ref_problem(_binding("guards"), "guards") is None
    problem = tokenreviewers.role_ref_problem(_binding("cluster-admin"), "guards")
    assert problem is not None
    assert "cluster-admin" in problem
    as_role = _binding("guards")
    as_role["roleRef"]["kind"] = "Role"
    assert tokenreviewers.role_ref_problem(as_role, "guards") is not None


def test_the_written_binding_changes_only_its_subjects() -> None:
    stored = _binding("guards", [{"kind": "User", "name": "mallory"}])
    wanted = tokenreviewers.subjects([("ml", "g")])
    written = tokenreviewers.with_subjects(stored, wanted)
    assert written["subjects"] == wanted
    assert written["roleRef"] == stored["roleRef"]
    assert written["metadata"] == {"name": "guards", "resourceVersion": "7"}
