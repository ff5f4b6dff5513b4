"""The NetworkPolicy next to a governed workload: allowed traffic only, everything else denied.

A NetworkPolicy selects exactly the workload's pods and lists both policy types, so any
traffic no rule allows is denied. When several policies with ``network`` requirements
govern one workload, the operator writes one NetworkPolicy whose rules are the
*intersection* of theirs: Kubernetes adds NetworkPolicies up (a union), and a namespaced
policy must never widen what the platform's cluster policy allows.

Intersections the NetworkPolicy API cannot express (an IP block with a pod selector, two
disjoint IP blocks) allow nothing: the safe side.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from modelshield.api.v1alpha1 import common, policies

COMPONENT = "network-policy"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
INFERENCE_SERVICE_LABEL = "serving.kserve.io/inferenceservice"
DNS_PEER: dict[str, Any] = {
    "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
DNS_PORTS: tuple[tuple[int, str], ...] = ((53, "UDP"), (53, "TCP"))

Selector = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Peer:
    """A peer in the NetworkPolicy's own terms; ``None`` selectors are absent."""

    namespace_selector: Selector | None = None
    pod_selector: Selector | None = None
    cidr: str | None = None

    def manifest(self) -> dict[str, Any]:
        """The NetworkPolicyPeer."""
        if self.cidr is not None:
            return {"ipBlock": {"cidr": self.cidr}}
        peer: dict[str, Any] = {}
        if self.namespace_selector is not None:
            peer["namespaceSelector"] = self.namespace_selector
        peer["podSelector"] = self.pod_selector if self.pod_selector is not None else {}
        return peer


@dataclasses.dataclass(frozen=True)
class Rule:
    """Peers and ports; ``ports=None`` allows every port."""

    peers: tuple[Peer, ...]
    ports: frozenset[tuple[int, str]] | None


@dataclasses.dataclass(frozen=True)
class MonitorEndpoint:
    """Where the workload's payload logger sends requests: the drift monitor's pods."""

    pod_labels: Mapping[str, str]
    port: int


def selector_manifest(selector: common.LabelSelector) -> Selector:
    """The API's label selector as a Kubernetes LabelSelector dict."""
    return selector.model_dump(by_alias=True, exclude_defaults=True, mode="json")


def workload_pod_selector(workload: Mapping[str, Any]) -> Selector:
    """The selector of exactly this workload's pods.

    Deployments and StatefulSets carry their own pod selector; KServe labels every pod of
    an InferenceService with its name.
    """
    kind = workload.get("kind")
    if kind == "InferenceService":
        name = (workload.get("metadata") or {}).get("name", "")
        return {"matchLabels": {INFERENCE_SERVICE_LABEL: name}}
    selector = (workload.get("spec") or {}).get("selector") or {}
    found: Selector = {}
    if selector.get("matchLabels"):
        found["matchLabels"] = dict(selector["matchLabels"])
    if selector.get("matchExpressions"):
        found["matchExpressions"] = [dict(e) for e in selector["matchExpressions"]]
    return found


def from_api_peer(peer: policies.Peer) -> Peer:
    """A policy's peer in NetworkPolicy terms."""
    return Peer(
        namespace_selector=(
            selector_manifest(peer.namespace_selector)
            if peer.namespace_selector is not None
            else None
        ),
        pod_selector=selector_manifest(peer.pod_selector)
        if peer.pod_selector is not None
        else None,
        cidr=peer.cidr,
    )


def from_api_rule(rule: policies.TrafficRule) -> Rule:
    """A policy's traffic rule in NetworkPolicy terms."""
    ports = frozenset((p.port, p.protocol) for p in rule.ports) if rule.ports else None
    return Rule(peers=tuple(from_api_peer(peer) for peer in rule.peers), ports=ports)


def merge_selectors(first: Selector | None, second: Selector | None) -> Selector | None:
    """A selector matching what both match; ``{"impossible": True}`` when nothing can."""
    if first is None:
        return second
    if second is None:
        return first
    labels = dict(first.get("matchLabels") or {})
    for key, value in (second.get("matchLabels") or {}).items():
        if labels.get(key, value) != value:
            return {"impossible": True}
        labels[key] = value
    expressions = [*(first.get("matchExpressions") or []), *(second.get("matchExpressions") or [])]
    merged: Selector = {}
    if labels:
        merged["matchLabels"] = labels
    if expressions:
        merged["matchExpressions"] = expressions
    return merged


def _own_namespace(namespace: str) -> Selector:
    return {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}


def intersect_peers(first: Peer, second: Peer, namespace: str) -> Peer | None:
    """The peer both allow, or None when the API cannot express it (or nothing is left)."""
    if first.cidr is not None or second.cidr is not None:
        if first.cidr is None or second.cidr is None:
            return None
        a, b = (
            ipaddress.ip_network(first.cidr, strict=False),
            ipaddress.ip_network(second.cidr, strict=False),
        )
        if a.version != b.version:
            return None
        if a.subnet_of(b):  # type: ignore[arg-type]  # same version checked above
            return first
        if b.subnet_of(a):  # type: ignore[arg-type]
            return second
        return None
    # A peer without a namespace selector means the workload's own namespace.
    if first.namespace_selector is None and second.namespace_selector is None:
        namespaces = None
    else:
        namespaces = merge_selectors(
            _own_namespace(namespace)
            if first.namespace_selector is None
            else first.namespace_selector,
            _own_namespace(namespace)
            if second.namespace_selector is None
            else second.namespace_selector,
        )
    pods = merge_selectors(first.pod_selector, second.pod_selector)
    if (namespaces or {}).get("impossible") or (pods or {}).get("impossible"):
        return None
    return Peer(namespace_selector=namespaces, pod_selector=pods)


def intersect_ports(
    first: frozenset[tuple[int, str]] | None, second: frozenset[tuple[int, str]] | None
) -> frozenset[tuple[int, str]] | None:
    """Ports both allow; None means every port."""
    if first is None:
        return second
    if second is None:
        return first
    return first & second


def _unique(peers: Sequence[Peer]) -> tuple[Peer, ...]:
    unique: list[Peer] = []
    for peer in peers:
        if peer not in unique:
            unique.append(peer)
    return tuple(unique)


def intersect_rules(first: Sequence[Rule], second: Sequence[Rule], namespace: str) -> list[Rule]:
    """Rules allowing exactly the traffic that both rule lists allow."""
    result = []
    for a in first:
        for b in second:
            ports = intersect_ports(a.ports, b.ports)
            if ports is not None and not ports:
                continue
            peers = [
                peer
                for p in a.peers
                for q in b.peers
                if (peer := intersect_peers(p, q, namespace)) is not None
            ]
            if peers:
                result.append(Rule(peers=_unique(peers), ports=ports))
    return result


def _combined(
    requirements: Sequence[policies.NetworkRequirements], direction: str, namespace: str
) -> list[Rule]:
    combined: list[Rule] | None = None
    for requirement in requirements:
        rules = [from_api_rule(rule) for rule in getattr(requirement, direction)]
        combined = rules if combined is None else intersect_rules(combined, rules, namespace)
    return combined or []


def _rule_manifest(rule: Rule, peers_key: str) -> dict[str, Any]:
    manifest: dict[str, Any] = {peers_key: [peer.manifest() for peer in rule.peers]}
    if rule.ports is not None:
        manifest["ports"] = [
            {"port": port, "protocol": protocol} for port, protocol in sorted(rule.ports)
        ]
    return manifest


def build(
    *,
    name: str,
    namespace: str,
    pod_selector: Selector,
    requirements: Sequence[policies.NetworkRequirements],
    scraper_peers: Sequence[Peer] = (),
    monitor: MonitorEndpoint | None = None,
) -> dict[str, Any]:
    """The NetworkPolicy for one workload, unstamped (see ``ownership.stamp``).

    ``requirements`` are the ``network`` blocks of every policy that governs the workload
    (at least one). ``scraper_peers`` (the metrics scraper, from the operator's settings)
    may always connect in; the payload logger may always reach the ``monitor``.
    """
    if not requirements:
        raise ValueError("a NetworkPolicy needs at least one network requirement")
    ingress = _combined(requirements, "ingress", namespace)
    if scraper_peers:
        ingress.append(Rule(peers=tuple(scraper_peers), ports=None))
    egress = _combined(requirements, "egress", namespace)
    if all(requirement.allow_dns for requirement in requirements):
        egress.append(Rule(peers=(Peer(**_dns_peer()),), ports=frozenset(DNS_PORTS)))
    if monitor is not None:
        egress.append(
            Rule(
                peers=(Peer(pod_selector={"matchLabels": dict(monitor.pod_labels)}),),
                ports=frozenset({(monitor.port, "TCP")}),
            )
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "podSelector": pod_selector,
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [_rule_manifest(rule, "from") for rule in ingress],
            "egress": [_rule_manifest(rule, "to") for rule in egress],
        },
    }


def _dns_peer() -> dict[str, Any]:
    return {
        "namespace_selector": DNS_PEER["namespaceSelector"],
        "pod_selector": DNS_PEER["podSelector"],
    }
