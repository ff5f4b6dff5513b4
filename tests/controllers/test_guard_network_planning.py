"""The guard's own NetworkPolicy: the sources a network block allows to reach the model are
the ones that may reach its guard, so an api block never opens the model to every pod."""

from __future__ import annotations

import dataclasses
from typing import Any

from modelshield.controllers import planning
from modelshield.controllers.builders import guards, networkpolicies
from tests.support.guardplanning import API, GUARD, SELECTOR, SETTINGS, _served
from tests.support.planningworld import _policy, _world

GUARD_NETPOL = "ms-netpol-guard-deploy-fraud"
FRONTEND = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "frontend"}}}
FROM_FRONTEND_ON_MODEL_PORT = {"ingress": [{"peers": [FRONTEND], "ports": [{"port": 8080}]}]}
GUARD_PODS = {"matchLabels": guards.pod_labels(GUARD)}


def _plan(*bodies: dict[str, Any], settings: planning.Settings = SETTINGS) -> planning.Plan:
    return planning.plan(_world(*bodies), ("Deployment", "ml", "fraud"), settings, None)


def _guard_netpol(plan: planning.Plan) -> dict[str, Any]:
    return plan.desired[("NetworkPolicy", "ml", GUARD_NETPOL)]


def _api_policy(network: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": SELECTOR, "api": API, **extra}
    if network is not None:
        spec["network"] = network
    return _policy("api", spec)


def test_only_the_network_blocks_sources_reach_the_guard_on_its_port() -> None:
    plan = _plan(_api_policy(FROM_FRONTEND_ON_MODEL_PORT), _served())
    assert _guard_netpol(plan)["spec"] == {
        "podSelector": GUARD_PODS,
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [{**FRONTEND, "podSelector": {}}],
                "ports": [{"port": guards.PORT, "protocol": "TCP"}],
            }
        ],
    }
    # The model itself still admits the guard alone.
    model = plan.desired[("NetworkPolicy", "ml", "ms-netpol-deploy-fraud")]
    assert [rule["from"] for rule in model["spec"]["ingress"]] == [[{"podSelector": GUARD_PODS}]]


def test_a_rule_for_every_port_admits_its_sources_to_the_guard() -> None:
    network = {"ingress": [{"peers": [FRONTEND]}]}
    plan = _plan(_api_policy(network), _served())
    assert [rule["ports"] for rule in _guard_netpol(plan)["spec"]["ingress"]] == [
        [{"port": guards.PORT, "protocol": "TCP"}]
    ]


def test_a_rule_for_another_port_of_the_model_admits_nobody_to_the_guard() -> None:
    network = {"ingress": [{"peers": [FRONTEND], "ports": [{"port": 9100}]}]}
    plan = _plan(_api_policy(network), _served())
    assert _guard_netpol(plan)["spec"]["ingress"] == []


def test_a_network_block_without_ingress_admits_nobody_to_the_guard() -> None:
    plan = _plan(_api_policy({"egress": [{"peers": [{"cidr": "10.0.0.0/8"}]}]}), _served())
    assert _guard_netpol(plan)["spec"]["ingress"] == []


def test_several_policies_admit_only_the_sources_all_of_them_allow() -> None:
    team = {"podSelector": {"matchLabels": {"team": "fraud"}}}
    plan = _plan(
        _api_policy(FROM_FRONTEND_ON_MODEL_PORT),
        _policy(
            "tenant",
            {"selector": SELECTOR, "network": {"ingress": [{"peers": [{**FRONTEND, **team}]}]}},
        ),
        _served(),
    )
    assert _guard_netpol(plan)["spec"]["ingress"] == [
        {"from": [{**FRONTEND, **team}], "ports": [{"port": guards.PORT, "protocol": "TCP"}]}
    ]
    assert {ref["name"] for ref in _guard_netpol(plan)["metadata"]["ownerReferences"]} == {
        "fraud",
        "api",
        "tenant",
    }


def test_without_an_enforced_network_block_the_guard_is_open_and_authenticates() -> None:
    assert ("NetworkPolicy", "ml", GUARD_NETPOL) not in _plan(_api_policy(), _served()).desired
    audited = _plan(
        _api_policy(FROM_FRONTEND_ON_MODEL_PORT),
        _policy(
            "trial",
            {"selector": SELECTOR, "network": {}, "enforcement": "Audit"},
        ),
        _served(),
    )
    # The api policy's own network block is enforced: the guard has its NetworkPolicy.
    assert ("NetworkPolicy", "ml", GUARD_NETPOL) in audited.desired
    only_audited = _plan(
        _api_policy(),
        _policy("trial", {"selector": SELECTOR, "network": {}, "enforcement": "Audit"}),
        _served(),
    )
    assert ("NetworkPolicy", "ml", GUARD_NETPOL) not in only_audited.desired


def test_an_audit_api_block_still_keeps_the_network_blocks_sources() -> None:
    # Under Audit the guard only reports, and the model keeps the block's ingress; a client
    # the block leaves out must not reach the model through the guard either.
    plan = _plan(
        _api_policy(FROM_FRONTEND_ON_MODEL_PORT, enforcement="Audit"),
        _policy("net", {"selector": SELECTOR, "network": FROM_FRONTEND_ON_MODEL_PORT}),
        _served(),
    )
    assert ("Deployment", "ml", GUARD) in plan.desired
    assert [rule["from"] for rule in _guard_netpol(plan)["spec"]["ingress"]] == [
        [{**FRONTEND, "podSelector": {}}]
    ]


def test_an_unreadable_network_policy_closes_the_guard() -> None:
    unreadable = _policy(
        "tenant",
        {
            "selector": SELECTOR,
            "network": {"ingress": [{"peers": [{"podSelector": {"matchLabels": {"a": "x y"}}}]}]},
        },
    )
    plan = _plan(_api_policy(), unreadable, _served())
    netpol = _guard_netpol(plan)
    assert netpol["spec"] == {
        "podSelector": GUARD_PODS,
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [],
        "egress": [],
    }
    reasons = {ref.name: [p.reason for p in found] for ref, found in plan.problems.items()}
    assert planning.NETWORK_POLICY_FAILED_CLOSED in reasons["tenant"]


def test_the_guards_network_policy_has_a_deny_all_fallback() -> None:
    plan = _plan(_api_policy(FROM_FRONTEND_ON_MODEL_PORT), _served())
    fallback = plan.fallbacks[("NetworkPolicy", "ml", GUARD_NETPOL)]
    assert fallback["spec"]["podSelector"] == GUARD_PODS
    assert fallback["spec"]["ingress"] == fallback["spec"]["egress"] == []


def test_the_scraper_reaches_the_guards_management_port_only() -> None:
    scraper = networkpolicies.Peer(
        namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    )
    settings = dataclasses.replace(
        SETTINGS, scraper_peers=(scraper,), scraper_ports=frozenset({(9100, "TCP")})
    )
    plan = _plan(_api_policy({"ingress": []}), _served(), settings=settings)
    assert _guard_netpol(plan)["spec"]["ingress"] == [
        {
            "from": [scraper.manifest()],
            "ports": [{"port": guards.MANAGEMENT_PORT, "protocol": "TCP"}],
        }
    ]


def test_no_guard_no_guard_network_policy() -> None:
    no_port = _plan(_api_policy(FROM_FRONTEND_ON_MODEL_PORT), _served(port=None))
    assert ("NetworkPolicy", "ml", GUARD_NETPOL) not in no_port.desired
    no_api = _plan(_policy("net", {"selector": SELECTOR, "network": {}}), _served())
    assert ("NetworkPolicy", "ml", GUARD_NETPOL) not in no_api.desired
