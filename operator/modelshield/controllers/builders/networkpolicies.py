"""The NetworkPolicy next to a governed workload: allowed traffic only, everything else denied.

A NetworkPolicy selects exactly the workload's pods and lists both policy types, so any
traffic no rule allows is denied. When several policies with ``network`` requirements
govern one workload, the operator writes one NetworkPolicy whose rules are the
*intersection* of theirs: Kubernetes adds NetworkPolicies up (a union), and a namespaced
policy must never widen what the platform's cluster policy allows.

Intersections the NetworkPolicy API cannot express (an IP block with a pod selector, two
disjoint IP blocks) allow nothing: the safe side. DNS is one more egress rule of each
policy that allows it (``allowDNS``), intersected like the others: DNS is allowed when
every policy allows it, by ``allowDNS`` or by its own egress rules.

Only canonical forms are emitted: a CIDR or a label the API server would refuse raises
``BuildError`` (the API refuses such policies, but one stored before that rule existed
may still be read), and the planner writes ``deny_all`` instead: never no NetworkPolicy.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from modelshield.api.v1alpha1 import common, policies, syntax

COMPONENT = "network-policy"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
INFERENCE_SERVICE_LABEL = "serving.kserve.io/inferenceservice"
DNS_PEER: dict[str, Any] = {
    "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
DNS_PORTS: tuple[tuple[int, str], ...] = ((53, "UDP"), (53, "TCP"))

Selector = dict[str, Any]
#: Names of container ports the metrics scraper may reach, besides ``--scraper-port``.
METRICS_PORT_NAMES = frozenset({"metrics", "http-metrics"})
PROMETHEUS_PORT_ANNOTATION = "prometheus.io/port"


class BuildError(ValueError):
    """A NetworkPolicy cannot be built from these requirements (the reason says why)."""


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


def _check_selector(selector: Selector | None, where: str) -> None:
    """BuildError unless every label key and value is one the API server accepts."""
    if selector is None:
        return
    problems = [
        problem
        for key, value in (selector.get("matchLabels") or {}).items()
        for problem in (syntax.label_key_problem(key), syntax.label_value_problem(value))
    ]
    for expression in selector.get("matchExpressions") or []:
        problems.append(syntax.label_key_problem(str(expression.get("key", ""))))
        problems.extend(syntax.label_value_problem(str(v)) for v in expression.get("values") or [])
    found = [problem for problem in problems if problem is not None]
    if found:
        raise BuildError(f"{where}: {'; '.join(found)}")


def from_api_peer(peer: policies.Peer, where: str = "peer") -> Peer:
    """A policy's peer in NetworkPolicy terms; BuildError when it is not canonical."""
    if peer.cidr is not None:
        problem = syntax.cidr_problem(peer.cidr)
        if problem is not None:
            raise BuildError(f"{where}.cidr: {problem}")
    found = Peer(
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
    _check_selector(found.namespace_selector, f"{where}.namespaceSelector")
    _check_selector(found.pod_selector, f"{where}.podSelector")
    return found


def from_api_rule(rule: policies.TrafficRule, where: str = "rule") -> Rule:
    """A policy's traffic rule in NetworkPolicy terms; BuildError when it is not canonical."""
    ports = frozenset((p.port, p.protocol) for p in rule.ports) if rule.ports else None
    return Rule(
        peers=tuple(
            from_api_peer(peer, f"{where}.peers[{index}]") for index, peer in enumerate(rule.peers)
        ),
        ports=ports,
    )


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
        # Canonical (from_api_peer checked): strict parsing cannot fail.
        a, b = ipaddress.ip_network(first.cidr), ipaddress.ip_network(second.cidr)
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
            rule = Rule(peers=_unique(peers), ports=ports)
            if peers and rule not in result:  # e.g. DNS met again through another rule
                result.append(rule)
    return result


DNS_RULE = Rule(
    peers=(
        Peer(
            namespace_selector=DNS_PEER["namespaceSelector"], pod_selector=DNS_PEER["podSelector"]
        ),
    ),
    ports=frozenset(DNS_PORTS),
)


def _rules_of(requirement: policies.NetworkRequirements, direction: str) -> list[Rule]:
    rules = [
        from_api_rule(rule, f"spec.network.{direction}[{index}]")
        for index, rule in enumerate(getattr(requirement, direction))
    ]
    if direction == "egress" and requirement.allow_dns:
        rules.append(DNS_RULE)
    return rules


def _combined(
    requirements: Sequence[policies.NetworkRequirements], direction: str, namespace: str
) -> list[Rule]:
    combined: list[Rule] | None = None
    for requirement in requirements:
        rules = _rules_of(requirement, direction)
        combined = rules if combined is None else intersect_rules(combined, rules, namespace)
    return combined or []


def metrics_ports(workload: Mapping[str, Any]) -> frozenset[tuple[int, str]]:
    """The ports a workload declares for metrics: container ports named ``metrics`` or
    ``http-metrics``, and the pod template's ``prometheus.io/port`` annotation."""
    template = (workload.get("spec") or {}).get("template") or {}
    found: set[tuple[int, str]] = set()
    annotation = str(
        ((template.get("metadata") or {}).get("annotations") or {}).get(
            PROMETHEUS_PORT_ANNOTATION, ""
        )
    )
    if annotation.isdigit() and 1 <= int(annotation) <= 65535:
        found.add((int(annotation), "TCP"))
    for container in (template.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            number = port.get("containerPort")
            if port.get("name") in METRICS_PORT_NAMES and isinstance(number, int):
                found.add((number, str(port.get("protocol") or "TCP")))
    return frozenset(found)


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
    scraper_ports: frozenset[tuple[int, str]] = frozenset(),
    monitor: MonitorEndpoint | None = None,
) -> dict[str, Any]:
    """The NetworkPolicy for one workload, unstamped (see ``ownership.stamp``).

    ``requirements`` are the ``network`` blocks of every Enforce policy that governs the
    workload (at least one). ``scraper_peers`` (the metrics scraper, from the operator's
    settings) may connect in on ``scraper_ports`` only (no port known: not at all); the
    payload logger may always reach the ``monitor``. BuildError when a requirement holds
    a CIDR or a label the API server would refuse.
    """
    if not requirements:
        raise ValueError("a NetworkPolicy needs at least one network requirement")
    ingress = _combined(requirements, "ingress", namespace)
    if scraper_peers and scraper_ports:
        ingress.append(Rule(peers=tuple(scraper_peers), ports=scraper_ports))
    egress = _combined(requirements, "egress", namespace)
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


def build_front_door(
    *,
    name: str,
    namespace: str,
    pod_selector: Selector,
    requirements: Sequence[policies.NetworkRequirements],
    model_port: int,
    front_port: int,
    scraper_peers: Sequence[Peer] = (),
    scraper_ports: frozenset[tuple[int, str]] = frozenset(),
) -> dict[str, Any]:
    """The ingress NetworkPolicy of a process that clients call instead of the model (the
    inference guard), unstamped.

    The network blocks say which sources may reach the model server; once clients reach it
    through the guard, those sources are the ones that may reach the guard. So every
    combined ingress rule that admits the model's port (or every port) admits its peers on
    ``front_port``; a rule for the model's other ports says nothing about the guard. No such
    rule: no client reaches the guard (the blocks allowed nobody to reach the model). Egress
    is left alone (the guard must reach the model, the API server and the drift monitor).
    BuildError as ``build``.
    """
    if not requirements:
        raise ValueError("a NetworkPolicy needs at least one network requirement")
    ingress: list[Rule] = []
    for rule in _combined(requirements, "ingress", namespace):
        if rule.ports is not None and (model_port, "TCP") not in rule.ports:
            continue
        front = Rule(peers=rule.peers, ports=frozenset({(front_port, "TCP")}))
        if front not in ingress:
            ingress.append(front)
    if scraper_peers and scraper_ports:
        ingress.append(Rule(peers=tuple(scraper_peers), ports=scraper_ports))
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "podSelector": pod_selector,
            "policyTypes": ["Ingress"],
            "ingress": [_rule_manifest(rule, "from") for rule in ingress],
        },
    }


def deny_all(*, name: str, namespace: str, pod_selector: Selector) -> dict[str, Any]:
    """The NetworkPolicy that allows nothing in or out: what a workload gets when its own
    cannot be built or written (stricter than any other, so never a gap)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "podSelector": pod_selector,
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [],
        },
    }
