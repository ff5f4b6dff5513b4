"""Planning the inference guard next to a workload governed by an api block."""

from __future__ import annotations

from typing import Any

import yaml

from modelshield.controllers import caches, planning
from modelshield.controllers.builders import guards
from modelshield.guard import config
from tests.support.guardplanning import API, GUARD, SELECTOR, SETTINGS, _served
from tests.support.planningworld import _policy, _world


def _plan(*bodies: dict[str, Any]) -> planning.Plan:
    world = _world(*bodies)
    return planning.plan(world, ("Deployment", "ml", "fraud"), SETTINGS, None)


def _of_kind(plan: planning.Plan, kind: str) -> dict[caches.Key, dict[str, Any]]:
    return {key: body for key, body in plan.desired.items() if key[0] == kind}


def test_a_guard_is_planned_with_the_config_it_loads() -> None:
    plan = _plan(_policy("api", {"selector": SELECTOR, "api": API}), _served())
    names = {(key[0], key[2]) for key in plan.desired}
    assert {
        ("ConfigMap", GUARD),
        ("ServiceAccount", GUARD),
        ("Deployment", GUARD),
        ("Service", GUARD),
        ("Service", "ms-guard-up-deploy-fraud"),
    } <= names
    config_map = plan.desired[("ConfigMap", "ml", GUARD)]
    loaded = config.GuardConfig.model_validate(
        yaml.safe_load(config_map["data"][guards.CONFIG_KEY])
    )
    assert loaded.upstream == "http://ms-guard-up-deploy-fraud.ml.svc.cluster.local:8080"
    assert loaded.replicas == SETTINGS.guard_replicas
    assert [p.name for p in loaded.policies] == ["api"]
    upstream = plan.desired[("Service", "ml", "ms-guard-up-deploy-fraud")]
    assert upstream["spec"]["selector"] == {"app": "fraud"}
    deployment = plan.desired[("Deployment", "ml", GUARD)]
    assert deployment["metadata"]["labels"]["app.kubernetes.io/component"] == guards.COMPONENT


def test_the_models_port_admits_only_the_guard_even_with_a_wider_network_block() -> None:
    network = {
        "ingress": [{"peers": [{"namespaceSelector": {}}]}],
        "egress": [{"peers": [{"cidr": "10.0.0.0/8"}], "ports": [{"port": 5432}]}],
    }
    plan = _plan(_policy("api", {"selector": SELECTOR, "api": API, "network": network}), _served())
    # The guard's own NetworkPolicy takes the block's ingress (test_guard_network_planning).
    netpol = _of_kind(plan, "NetworkPolicy")[("NetworkPolicy", "ml", "ms-netpol-deploy-fraud")]
    spec = netpol["spec"]
    assert spec["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": guards.pod_labels(GUARD)}}],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        }
    ]
    assert {
        "to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
        "ports": [{"port": 5432, "protocol": "TCP"}],
    } in spec["egress"]
    assert len(netpol["metadata"]["ownerReferences"]) == 2  # the workload and the policy, once


def test_an_api_block_alone_closes_the_model_port_to_all_but_the_guard() -> None:
    plan = _plan(_policy("api", {"selector": SELECTOR, "api": API}), _served())
    (netpol,) = _of_kind(plan, "NetworkPolicy").values()
    assert [rule["from"] for rule in netpol["spec"]["ingress"]] == [
        [{"podSelector": {"matchLabels": guards.pod_labels(GUARD)}}]
    ]


def test_a_model_without_a_port_is_closed_and_reported() -> None:
    plan = _plan(_policy("api", {"selector": SELECTOR, "api": API}), _served(port=None))
    (netpol,) = _of_kind(plan, "NetworkPolicy").values()
    assert netpol["spec"]["ingress"] == []
    assert not _of_kind(plan, "Deployment")
    (problems,) = plan.problems.values()
    assert [p.reason for p in problems] == [planning.GUARD_UPSTREAM_UNKNOWN]


def test_an_audit_api_block_deploys_the_guard_but_closes_nothing() -> None:
    plan = _plan(
        _policy("api", {"selector": SELECTOR, "api": API, "enforcement": "Audit"}), _served()
    )
    assert ("Deployment", "ml", GUARD) in plan.desired
    assert not _of_kind(plan, "NetworkPolicy")


def test_no_api_block_no_guard() -> None:
    plan = _plan(_policy("net", {"selector": SELECTOR, "network": {}}), _served())
    assert all(key[2] != GUARD for key in plan.desired)


def test_the_guard_feeds_the_drift_monitor_of_a_plain_deployment() -> None:
    drift = {"drift": {"referenceProfile": {"name": "ref", "key": "p.json"}}}
    world = _world(
        _policy("api", {"selector": SELECTOR, "api": API, "monitoring": drift}), _served()
    )
    plan = planning.plan(world, ("Deployment", "ml", "fraud"), SETTINGS, "{}")
    config_map = plan.desired[("ConfigMap", "ml", GUARD)]
    loaded = config.GuardConfig.model_validate(
        yaml.safe_load(config_map["data"][guards.CONFIG_KEY])
    )
    assert loaded.drift_monitor == "http://ms-drift-deploy-fraud.ml.svc.cluster.local:8080/"
    without = _plan(_policy("api", {"selector": SELECTOR, "api": API}), _served())
    loaded = config.GuardConfig.model_validate(
        yaml.safe_load(without.desired[("ConfigMap", "ml", GUARD)]["data"][guards.CONFIG_KEY])
    )
    assert loaded.drift_monitor is None


def test_the_guard_gets_the_reference_profiles_features() -> None:
    drift = {"drift": {"referenceProfile": {"name": "ref", "key": "p.json"}}}
    api = {**API, "requests": {"matchReferenceProfile": True}}
    world = _world(
        _policy("api", {"selector": SELECTOR, "api": api, "monitoring": drift}), _served()
    )
    profile = '{"features": [{"name": "age", "type": "numeric"}, {"name": "country", "type": "categorical"}]}'
    plan = planning.plan(world, ("Deployment", "ml", "fraud"), SETTINGS, profile)
    loaded = config.GuardConfig.model_validate(
        yaml.safe_load(plan.desired[("ConfigMap", "ml", GUARD)]["data"][guards.CONFIG_KEY])
    )
    assert loaded.reference_features is not None
    assert [(f.name, f.type) for f in loaded.reference_features] == [
        ("age", "numeric"),
        ("country", "categorical"),
    ]
    assert guards.profile_features("not json") is None


def test_the_guard_calls_the_upstream_service_by_its_cluster_ip_once_it_has_one() -> None:
    """No cluster DNS needed between the guard and the model (a node without DNS shows it)."""
    world = _world(_policy("api", {"selector": SELECTOR, "api": API}), _served())
    key = ("Deployment", "ml", "fraud")

    def upstream() -> str:
        plan = planning.plan(world, key, SETTINGS, None)
        document = yaml.safe_load(
            plan.desired[("ConfigMap", "ml", GUARD)]["data"][guards.CONFIG_KEY]
        )
        return str(document["upstream"])

    assert upstream() == "http://ms-guard-up-deploy-fraud.ml.svc.cluster.local:8080"
    service = planning.plan(world, key, SETTINGS, None).desired[
        ("Service", "ml", "ms-guard-up-deploy-fraud")
    ]
    for address, expected in (
        ("10.96.0.7", "http://10.96.0.7:8080"),
        ("fd00::7", "http://[fd00::7]:8080"),
    ):
        world.put_child({**service, "spec": {**service["spec"], "clusterIP": address}})
        assert upstream() == expected
    world.put_child({**service, "spec": {**service["spec"], "clusterIP": "None"}})
    assert upstream() == "http://ms-guard-up-deploy-fraud.ml.svc.cluster.local:8080"
