"""The operator's NetworkPolicies never fail open and never break the cluster (issue 22),
against a real API server: refused writes and unreadable policies end in a deny-all
NetworkPolicy (status, Event, metric, no retry loop); kube-system, kube-public and the
release namespace are never governed, whatever a cluster policy selects; an Audit policy's
network block restricts nothing.

That a deny-all NetworkPolicy really blocks packets needs a node with a NetworkPolicy
implementation, which this control plane does not have (no kubelet, no CNI): not tested here.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from e2e.clients import Kubectl
from e2e.cluster import find_free_port
from e2e.operators import (
    NETWORK,
    OperatorProcess,
    apply,
    conditions,
    deployment,
    get_json,
    owned_names,
    policy,
    policy_status,
    wait_for,
)

FAILED_CLOSED = "NetworkPolicyFailedClosed"
NETPOL = "ms-netpol-deploy-fraud"


def _is_deny_all(netpol: dict[str, Any]) -> bool:
    spec = netpol.get("spec")
    return (
        isinstance(spec, dict)
        and spec.get("policyTypes") == ["Ingress", "Egress"]
        and not spec.get("ingress")
        and not spec.get("egress")
        and spec.get("podSelector") == {"matchLabels": {"app": "fraud"}}
    )


def _events(kubectl: Kubectl, namespace: str, reason: str) -> list[dict[str, Any]]:
    found = get_json(kubectl, namespace, "events", f"--field-selector=reason={reason}")
    items: list[dict[str, Any]] = found.get("items", [])
    return items


def _degraded_reason(kubectl: Kubectl, namespace: str, name: str) -> str | None:
    degraded = conditions(policy_status(kubectl, namespace, name)).get("Degraded") or {}
    return str(degraded.get("reason")) if degraded.get("status") == "True" else None


@pytest.fixture
def no_ingress_rules(kubectl: Kubectl, namespace: str) -> Iterator[str]:
    """A ValidatingAdmissionPolicy (a real organisation's rule) that refuses NetworkPolicies
    with ingress rules in the test namespace: the API server refuses the operator's
    NetworkPolicy as it refused one with a CIDR it could not parse."""
    name = f"e2e-no-ingress-{uuid.uuid4().hex[:6]}"
    documents = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["networking.k8s.io"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["networkpolicies"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "!has(object.spec.ingress) || size(object.spec.ingress) == 0",
                        "message": "no ingress rules in this namespace",
                    }
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        },
    ]
    kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(documents))
    probe = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "probe"},
        "spec": {"podSelector": {}, "ingress": [{}]},
    }
    # Bindings take effect a moment after they are created.
    wait_for(
        "the ValidatingAdmissionPolicy refuses a NetworkPolicy with ingress rules",
        lambda: (
            kubectl(
                "-n",
                namespace,
                "create",
                "--dry-run=server",
                "-f",
                "-",
                input_text=yaml.safe_dump(probe),
                check=False,
            ).returncode
            != 0
        ),
    )
    try:
        yield name
    finally:
        kubectl("delete", "validatingadmissionpolicybinding", name, check=False)
        kubectl("delete", "validatingadmissionpolicy", name, check=False)


def test_a_network_policy_the_api_server_refuses_becomes_deny_all(
    kubectl: Kubectl,
    namespace: str,
    no_ingress_rules: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    # The old operator recorded the 422 and retried: the workload ran with no NetworkPolicy.
    apply(
        kubectl,
        namespace,
        policy("isolate", {"selector": {"matchLabels": {"governed": "yes"}}, "network": NETWORK}),
        deployment("fraud", {"governed": "yes"}),
    )
    port = find_free_port()
    operator = start_operator(f"--metrics-port={port}")

    def deny_all() -> dict[str, Any] | None:
        found = get_json(kubectl, namespace, "networkpolicy", NETPOL)
        return found if _is_deny_all(found) else None

    netpol = wait_for(f"a deny-all {NETPOL}; operator log:\n{operator.tail()}", deny_all)
    wait_for(
        f"policy isolate Degraded {FAILED_CLOSED}; operator log:\n{operator.tail()}",
        lambda: _degraded_reason(kubectl, namespace, "isolate") == FAILED_CLOSED,
    )
    degraded = conditions(policy_status(kubectl, namespace, "isolate"))["Degraded"]
    assert "no ingress rules in this namespace" in str(degraded["message"])
    events = wait_for(
        "a Warning Event on the Deployment",
        lambda: [
            event
            for event in _events(kubectl, namespace, FAILED_CLOSED)
            if event["involvedObject"]["name"] == "fraud"
        ],
    )
    assert events[0]["type"] == "Warning"

    def failed_closed_gauge() -> bool:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return "modelshield_network_policies_failed_closed 1.0" in response.read().decode()

    wait_for("modelshield_network_policies_failed_closed 1.0 on /metrics", failed_closed_gauge)
    # No hot retry loop: the deny-all stays as written, and nothing is retried.
    version = netpol["metadata"]["resourceVersion"]
    time.sleep(8)
    assert get_json(kubectl, namespace, "networkpolicy", NETPOL)["metadata"]["resourceVersion"] == (
        version
    )
    assert "reconciling" not in operator.tail(200)

    # The organisation's rule goes away: the operator looks again by itself (slowly, no
    # event needed) and writes the real NetworkPolicy.
    kubectl("delete", "validatingadmissionpolicybinding", no_ingress_rules)
    wait_for(
        f"the real {NETPOL} once the API server accepts it; operator log:\n{operator.tail()}",
        lambda: bool(
            (get_json(kubectl, namespace, "networkpolicy", NETPOL).get("spec") or {}).get("ingress")
        ),
        timeout=120,
    )
    wait_for(
        "policy isolate no longer Degraded",
        lambda: _degraded_reason(kubectl, namespace, "isolate") is None,
    )


def test_a_policy_the_api_accepts_but_no_one_can_read_fails_closed(
    kubectl: Kubectl, namespace: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    # fd00::1/8 passes the CRD schema (only pydantic checks IPv6 host bits): stored with the
    # resource webhook down, it must not leave the workload without a NetworkPolicy.
    apply(
        kubectl,
        namespace,
        policy(
            "isolate",
            {
                "selector": {"matchLabels": {"governed": "yes"}},
                "network": {"egress": [{"peers": [{"cidr": "fd00::1/8"}]}]},
            },
        ),
        deployment("fraud", {"governed": "yes"}),
    )
    operator = start_operator()
    wait_for(
        f"a deny-all {NETPOL}; operator log:\n{operator.tail()}",
        lambda: _is_deny_all(get_json(kubectl, namespace, "networkpolicy", NETPOL)),
    )
    wait_for(
        "policy isolate InvalidSpec",
        lambda: _degraded_reason(kubectl, namespace, "isolate") == "InvalidSpec",
    )
    message = conditions(policy_status(kubectl, namespace, "isolate"))["Degraded"]["message"]
    assert "fd00::1/8" in str(message)


@pytest.fixture
def release_namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"e2e-release-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_a_cluster_policy_selecting_everything_never_touches_system_namespaces(
    kubectl: Kubectl,
    namespace: str,
    release_namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    # The old operator wrote a NetworkPolicy for CoreDNS (ingress only from the gateway on
    # 8080: every DNS query in the cluster denied) and for modelshield's own Deployments.
    name = f"e2e-everywhere-{uuid.uuid4().hex[:6]}"
    cluster_policy = {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ClusterModelSecurityPolicy",
        "metadata": {"name": name},
        "spec": {"selector": {}, "network": NETWORK},
    }
    system = ("kube-system", "kube-public", release_namespace)
    coredns = f"e2e-coredns-{uuid.uuid4().hex[:6]}"
    kubectl("apply", "-f", "-", input_text=yaml.safe_dump(cluster_policy))
    try:
        for where in system:
            apply(kubectl, where, deployment(coredns, {"k8s-app": "kube-dns"}))
        apply(kubectl, namespace, deployment("fraud", {}))
        operator = start_operator(f"--webhook-namespace={release_namespace}")
        wait_for(
            f"{NETPOL} in {namespace} (the cluster policy is in force); log:\n{operator.tail()}",
            lambda: NETPOL in owned_names(kubectl, namespace, "networkpolicy"),
        )
        # The operator has handled every workload by now (one priming list, one queue);
        # give it a moment more, then nothing may exist next to the system ones.
        time.sleep(3)
        for where in system:
            assert owned_names(kubectl, where, "networkpolicy") == set(), where
    finally:
        kubectl("delete", "clustermodelsecuritypolicy", name, check=False)
        for where in system:
            kubectl("-n", where, "delete", "deployment", coredns, check=False)


def test_an_audit_policy_never_restricts_traffic(
    kubectl: Kubectl, namespace: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    apply(
        kubectl,
        namespace,
        policy("baseline", {"selector": {"matchLabels": {"governed": "yes"}}, "network": NETWORK}),
        policy(
            "trial",
            {
                "selector": {"matchLabels": {"governed": "yes"}},
                "enforcement": "Audit",
                "network": {"allowDNS": False},
            },
        ),
        deployment("fraud", {"governed": "yes"}),
    )
    operator = start_operator("--audit-interval=1")
    netpol = wait_for(
        f"{NETPOL}; operator log:\n{operator.tail()}",
        lambda: get_json(kubectl, namespace, "networkpolicy", NETPOL),
    )
    assert netpol["spec"]["ingress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert {owner["name"] for owner in netpol["metadata"]["ownerReferences"]} == {
        "fraud",
        "baseline",
    }
    network = wait_for(
        "trial's NetworkEnforced condition",
        lambda: conditions(policy_status(kubectl, namespace, "trial")).get("NetworkEnforced"),
    )
    assert network["status"] == "False"
    assert network["reason"] == "AuditOnly"
    assert "Deployment/" in network["message"]
    assert "would be allowed" in network["message"]
    enforced = conditions(policy_status(kubectl, namespace, "baseline"))["NetworkEnforced"]
    assert enforced["status"] == "True"
    # The background audit reports it in the namespace's PolicyReport, never as a pass.
    warned = wait_for(
        f"a NetworkNotEnforced result in the PolicyReport; operator log:\n{operator.tail()}",
        lambda: [
            result
            for result in get_json(kubectl, namespace, "policyreport", "modelshield").get("results")
            or []
            if result["rule"] == "NetworkNotEnforced"
        ],
    )
    assert warned[0]["result"] == "warn"
    assert warned[0]["policy"] == f"ModelSecurityPolicy {namespace}/trial"
    assert warned[0]["resources"][0]["name"] == "fraud"
