"""The NetworkPolicy builder: selectors, rules, intersections, DNS, scraper, monitor."""

from __future__ import annotations

from typing import Any

import pytest

from modelshield.api.v1alpha1 import common, policies
from modelshield.controllers.builders import networkpolicies as np


def _requirements(document: dict[str, Any]) -> policies.NetworkRequirements:
    return policies.NetworkRequirements.model_validate(document)


GATEWAY = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}}


def _build(*requirements: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return np.build(
        name="n",
        namespace="ml",
        pod_selector={"matchLabels": {"app": "fraud"}},
        requirements=[_requirements(r) for r in requirements],
        **extra,
    )


def test_default_deny_in_both_directions() -> None:
    manifest = _build({"allowDNS": False})
    assert manifest["spec"] == {
        "podSelector": {"matchLabels": {"app": "fraud"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [],
        "egress": [],
    }


def test_single_policy_rules_are_translated() -> None:
    manifest = _build(
        {
            "ingress": [{"peers": [GATEWAY], "ports": [{"port": 8080}]}],
            "egress": [{"peers": [{"cidr": "10.0.0.0/8"}], "ports": [{"port": 443}]}],
        }
    )
    assert manifest["spec"]["ingress"] == [
        {
            "from": [{"namespaceSelector": GATEWAY["namespaceSelector"], "podSelector": {}}],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        }
    ]
    egress = manifest["spec"]["egress"]
    assert egress[0] == {
        "to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
        "ports": [{"port": 443, "protocol": "TCP"}],
    }
    assert egress[1]["to"] == [np.DNS_PEER]
    assert egress[1]["ports"] == [{"port": 53, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]


def test_dns_only_when_every_policy_allows_it() -> None:
    manifest = _build({}, {"allowDNS": False})
    assert manifest["spec"]["egress"] == []


def test_two_policies_intersect_never_widen() -> None:
    manifest = _build(
        {
            "ingress": [{"peers": [GATEWAY], "ports": [{"port": 8080}, {"port": 9090}]}],
            "allowDNS": False,
        },
        {
            "ingress": [
                {
                    "peers": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                    "ports": [{"port": 8080}],
                }
            ],
            "allowDNS": False,
        },
    )
    # Gateway namespace AND own namespace: no label can match both names, nothing is allowed.
    assert manifest["spec"]["ingress"] == []


def test_intersection_merges_selectors() -> None:
    manifest = _build(
        {"ingress": [{"peers": [GATEWAY]}], "allowDNS": False},
        {
            "ingress": [
                {
                    "peers": [
                        {
                            "namespaceSelector": {},
                            "podSelector": {"matchLabels": {"role": "client"}},
                        }
                    ],
                    "ports": [{"port": 8080}],
                }
            ],
            "allowDNS": False,
        },
    )
    assert manifest["spec"]["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": GATEWAY["namespaceSelector"],
                    "podSelector": {"matchLabels": {"role": "client"}},
                }
            ],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        }
    ]


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("10.0.0.0/8", "10.1.0.0/16", "10.1.0.0/16"),
        ("10.1.0.0/16", "10.0.0.0/8", "10.1.0.0/16"),
        ("10.0.0.0/16", "192.168.0.0/16", None),
        ("10.0.0.0/8", "fd00::/8", None),
    ],
)
def test_cidr_intersection(first: str, second: str, expected: str | None) -> None:
    found = np.intersect_peers(np.Peer(cidr=first), np.Peer(cidr=second), "ml")
    assert (found.cidr if found else None) == expected


def test_cidr_and_selector_do_not_intersect() -> None:
    assert np.intersect_peers(np.Peer(cidr="10.0.0.0/8"), np.Peer(pod_selector={}), "ml") is None


def test_ports_intersection() -> None:
    assert np.intersect_ports(None, None) is None
    assert np.intersect_ports(frozenset({(80, "TCP")}), None) == frozenset({(80, "TCP")})
    assert np.intersect_ports(frozenset({(80, "TCP")}), frozenset({(81, "TCP")})) == frozenset()


def test_conflicting_match_labels_allow_nothing() -> None:
    a = np.Peer(pod_selector={"matchLabels": {"role": "a"}})
    b = np.Peer(pod_selector={"matchLabels": {"role": "b"}})
    assert np.intersect_peers(a, b, "ml") is None


SCRAPER = np.Peer(namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}})


def test_scraper_and_monitor_are_added() -> None:
    scraper = SCRAPER
    manifest = _build(
        {"allowDNS": False},
        scraper_peers=[scraper],
        scraper_ports=frozenset({(9090, "TCP")}),
        monitor=np.MonitorEndpoint(pod_labels={"m": "x"}, port=8080),
    )
    assert manifest["spec"]["ingress"] == [
        {"from": [scraper.manifest()], "ports": [{"port": 9090, "protocol": "TCP"}]}
    ]
    assert manifest["spec"]["egress"] == [
        {
            "to": [{"podSelector": {"matchLabels": {"m": "x"}}}],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        }
    ]


def test_workload_pod_selectors() -> None:
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {
                "matchLabels": {"app": "x"},
                "matchExpressions": [{"key": "k", "operator": "Exists"}],
            }
        },
    }
    assert np.workload_pod_selector(deployment) == {
        "matchLabels": {"app": "x"},
        "matchExpressions": [{"key": "k", "operator": "Exists"}],
    }
    isvc = {"kind": "InferenceService", "metadata": {"name": "iris"}}
    assert np.workload_pod_selector(isvc) == {"matchLabels": {np.INFERENCE_SERVICE_LABEL: "iris"}}


def test_requires_a_requirement() -> None:
    with pytest.raises(ValueError, match="at least one"):
        np.build(name="n", namespace="ml", pod_selector={}, requirements=[])


# --- issue 22: never fail open, never widen -------------------------------------------


def test_scraper_reaches_only_the_metrics_ports() -> None:
    # The old rule had no ports: the scraper's whole namespace reached every port.
    manifest = _build({"allowDNS": False}, scraper_peers=[SCRAPER])
    assert manifest["spec"]["ingress"] == []  # no port known: not let in at all
    for rule in _build(
        {"allowDNS": False}, scraper_peers=[SCRAPER], scraper_ports=frozenset({(9090, "TCP")})
    )["spec"]["ingress"]:
        assert rule["ports"] == [{"port": 9090, "protocol": "TCP"}]


def test_metrics_ports_come_from_the_workload() -> None:
    deployment = {
        "kind": "Deployment",
        "spec": {
            "template": {
                "metadata": {"annotations": {"prometheus.io/port": "9102"}},
                "spec": {
                    "containers": [
                        {
                            "name": "m",
                            "ports": [
                                {"name": "http", "containerPort": 8080},
                                {"name": "metrics", "containerPort": 9090},
                            ],
                        }
                    ]
                },
            }
        },
    }
    assert np.metrics_ports(deployment) == frozenset({(9102, "TCP"), (9090, "TCP")})
    assert np.metrics_ports({"kind": "InferenceService", "spec": {}}) == frozenset()


DNS_RULE = {
    "to": [np.DNS_PEER],
    "ports": [{"port": 53, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
}


def test_dns_allowed_when_one_policy_allows_it_by_rule_and_the_other_by_allow_dns() -> None:
    # Every namespace on every port (allowDNS false) AND allowDNS true: both allow DNS.
    # The old builder added DNS only when every policy set allowDNS: the result cut it.
    manifest = _build(
        {"egress": [{"peers": [{"namespaceSelector": {}}]}], "allowDNS": False},
        {"allowDNS": True},
    )
    assert manifest["spec"]["egress"] == [DNS_RULE]


def test_dns_is_intersected_with_the_other_policies_egress() -> None:
    # One policy allows DNS, the other allows only 10.0.0.0/8 on 443: no DNS to kube-dns.
    manifest = _build(
        {"allowDNS": True},
        {
            "egress": [{"peers": [{"cidr": "10.0.0.0/8"}], "ports": [{"port": 443}]}],
            "allowDNS": False,
        },
    )
    assert manifest["spec"]["egress"] == []


def test_dns_ports_narrowed_by_a_policy_that_allows_only_udp_53_to_kube_system() -> None:
    kube_system = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
    }
    manifest = _build(
        {"allowDNS": True},
        {
            "egress": [{"peers": [kube_system], "ports": [{"port": 53, "protocol": "UDP"}]}],
            "allowDNS": False,
        },
    )
    assert manifest["spec"]["egress"] == [
        {"to": [np.DNS_PEER], "ports": [{"port": 53, "protocol": "UDP"}]}
    ]


def _unchecked(document: dict[str, Any]) -> policies.NetworkRequirements:
    """A requirement as a policy stored before today's schema could hold it (no validation)."""
    rules = [
        policies.TrafficRule.model_construct(
            peers=[policies.Peer.model_construct(**peer) for peer in rule["peers"]], ports=[]
        )
        for rule in document.get("egress", [])
    ]
    return policies.NetworkRequirements.model_construct(ingress=[], egress=rules, allow_dns=False)


@pytest.mark.parametrize("cidr", ["10.1.2.3/8", "10.0.0.0/99", "192.168.1.1/24", "FD00::/8"])
def test_a_cidr_the_api_server_refuses_is_never_emitted(cidr: str) -> None:
    # The old builder emitted the string as given; the API server answered 422 and the
    # workload ran with no NetworkPolicy at all.
    with pytest.raises(np.BuildError, match=r"spec\.network\.egress\[0\]\.peers\[0\]\.cidr"):
        np.build(
            name="n",
            namespace="ml",
            pod_selector={},
            requirements=[_unchecked({"egress": [{"peers": [{"cidr": cidr}]}]})],
        )


def test_two_cidrs_that_normalise_equal_never_keep_the_tenants_host_bits() -> None:
    baseline = _requirements({"egress": [{"peers": [{"cidr": "10.0.0.0/8"}]}], "allowDNS": False})
    with pytest.raises(np.BuildError):
        np.build(
            name="n",
            namespace="ml",
            pod_selector={},
            requirements=[_unchecked({"egress": [{"peers": [{"cidr": "10.1.2.3/8"}]}]}), baseline],
        )


def test_a_label_the_api_server_refuses_is_never_emitted() -> None:
    selector = common.LabelSelector.model_construct(
        match_labels={"app": "x y"}, match_expressions=[]
    )
    with pytest.raises(np.BuildError, match="podSelector"):
        np.build(
            name="n",
            namespace="ml",
            pod_selector={},
            requirements=[_unchecked({"egress": [{"peers": [{"pod_selector": selector}]}]})],
        )


def test_deny_all_allows_nothing_either_way() -> None:
    assert np.deny_all(name="n", namespace="ml", pod_selector={"matchLabels": {"a": "b"}})[
        "spec"
    ] == {
        "podSelector": {"matchLabels": {"a": "b"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [],
        "egress": [],
    }


def test_dns_met_through_two_rules_appears_once() -> None:
    everywhere = {"egress": [{"peers": [{"namespaceSelector": {}}]}], "allowDNS": True}
    manifest = _build(everywhere, {"allowDNS": True})
    assert manifest["spec"]["egress"] == [DNS_RULE]
