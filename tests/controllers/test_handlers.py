"""What each watch event does to the World and the queue (no API calls are made here)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from modelshield.controllers import caches, planning, policies, reconciling, writing
from modelshield.controllers.builders import driftmonitors, ownership


@pytest.fixture
def controller() -> reconciling.Controller:
    # An ApiClient that is never called: these handlers only record and queue.
    kube = writing.Kube(client.ApiClient(client.Configuration()), max_workers=1)
    settings = planning.Settings(monitor=driftmonitors.MonitorSettings(image="i"))
    return reconciling.Controller(caches.World(), kube, settings)


def _deployment(name: str, labels: dict[str, str], generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "ml", "uid": f"u-{name}", "generation": generation},
        "spec": {"template": {"metadata": {"labels": labels}}},
    }


def _queued(controller: reconciling.Controller) -> set[caches.Key]:
    return set(controller._pending)


def test_status_only_updates_of_a_workload_are_ignored(controller: reconciling.Controller) -> None:
    body = _deployment("d", {"app": "x"})
    policies.handle_workload(controller, {"type": "ADDED", "object": body})
    assert _queued(controller) == {("Deployment", "ml", "d")}
    controller._pending.clear()
    policies.handle_workload(
        controller, {"type": "MODIFIED", "object": {**body, "status": {"replicas": 1}}}
    )
    assert _queued(controller) == set()
    changed = _deployment("d", {"app": "y"}, generation=2)
    policies.handle_workload(controller, {"type": "MODIFIED", "object": changed})
    assert _queued(controller) == {("Deployment", "ml", "d")}


def test_initial_listing_always_reconciles(controller: reconciling.Controller) -> None:
    body = _deployment("d", {"app": "x"})
    controller.world.put_workload(body)
    policies.handle_workload(controller, {"type": None, "object": body})
    assert _queued(controller) == {("Deployment", "ml", "d")}


def test_deleted_workload_is_forgotten_and_reconciled(controller: reconciling.Controller) -> None:
    body = _deployment("d", {"app": "x"})
    controller.world.put_workload(body)
    policies.handle_workload(controller, {"type": "DELETED", "object": body})
    assert ("Deployment", "ml", "d") not in controller.world.workloads
    assert _queued(controller) == {("Deployment", "ml", "d")}


def _owned(resource_version: str) -> dict[str, Any]:
    stamped = ownership.stamp(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "ml"},
            "data": {},
        },
        ownership.Governance(
            ownership.ObjectRef("apps/v1", "Deployment", "d", "u-d", "ml"), (), "x"
        ),
    )
    stamped["metadata"].update({"resourceVersion": resource_version, "uid": "u-c"})
    return stamped


def test_echo_of_our_own_write_is_dropped_but_an_edit_is_not(
    controller: reconciling.Controller,
) -> None:
    controller.world.put_child(_owned("5"))
    policies.handle_owned(controller, {"type": "MODIFIED", "object": _owned("5")})
    assert _queued(controller) == set()
    policies.handle_owned(controller, {"type": "MODIFIED", "object": _owned("6")})
    assert _queued(controller) == {("Deployment", "ml", "d")}
    assert controller.world.children[("ConfigMap", "ml", "c")]["metadata"]["resourceVersion"] == "6"


def test_deleted_owned_object_is_restored(controller: reconciling.Controller) -> None:
    controller.world.put_child(_owned("5"))
    policies.handle_owned(controller, {"type": "DELETED", "object": _owned("5")})
    assert ("ConfigMap", "ml", "c") not in controller.world.children
    assert _queued(controller) == {("Deployment", "ml", "d")}


def test_policy_change_reconciles_its_scope(controller: reconciling.Controller) -> None:
    controller.world.put_workload(_deployment("a", {}))
    other = _deployment("b", {})
    other["metadata"]["namespace"] = "elsewhere"
    controller.world.put_workload(other)
    policy = {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "p", "namespace": "ml", "uid": "u-p"},
        "spec": {"selector": {}},
    }
    policies.handle_policy(controller, {"type": "ADDED", "object": policy})
    assert _queued(controller) == {("Deployment", "ml", "a")}
    controller._pending.clear()
    policies.handle_policy(
        controller, {"type": "MODIFIED", "object": {**policy, "status": {"conditions": [{}]}}}
    )
    assert _queued(controller) == set()


def test_namespace_labels_matter_only_with_cluster_policies(
    controller: reconciling.Controller,
) -> None:
    controller.world.put_workload(_deployment("a", {}))
    namespace = {"metadata": {"name": "ml", "labels": {"tier": "prod"}}}
    policies.handle_namespace(controller, {"type": "ADDED", "object": namespace})
    assert _queued(controller) == set()
    controller.world.put_policy(
        {
            "apiVersion": "modelshield.dev/v1alpha1",
            "kind": "ClusterModelSecurityPolicy",
            "metadata": {"name": "base", "uid": "u-b"},
            "spec": {"selector": {}},
        }
    )
    policies.handle_namespace(
        controller, {"type": "MODIFIED", "object": {"metadata": {"name": "ml", "labels": {}}}}
    )
    assert _queued(controller) == {("Deployment", "ml", "a")}
