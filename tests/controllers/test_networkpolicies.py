"""The NetworkPolicy builder: selectors, rules, intersections, DNS, scraper, monitor."""

from __future__ import annotations

from typing import Any

import pytest

from modelshield.api.v1alpha1 import policies
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


def test_scraper_and_monitor_are_added() -> None:
    scraper = np.Peer(
        namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    )
    manifest = _build(
        {"allowDNS": False},
        scraper_peers=[scraper],
        monitor=np.MonitorEndpoint(pod_labels={"m": "x"}, port=8080),
    )
    assert manifest["spec"]["ingress"] == [{"from": [scraper.manifest()]}]
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
