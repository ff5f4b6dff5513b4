"""Optional objects: ServiceMonitors, NetworkPolicies for modelshield's own pods, and the
Grafana dashboard, whose every metric must be one the code exports."""

from __future__ import annotations

import json
import re

import pytest

from tests.support import chartrendering as rendering

SOURCE_DIRS = ("operator", "webhooks")


def test_service_monitors_scrape_both_components() -> None:
    manifests = rendering.rendered("service-monitor")
    monitors = {m["metadata"]["name"]: m for m in rendering.of_kind(manifests, "ServiceMonitor")}
    webhook = monitors[f"{rendering.RELEASE}-webhook"]["spec"]["endpoints"][0]
    assert webhook["scheme"] == "https"
    assert webhook["tlsConfig"]["ca"]["secret"]["name"] == f"{rendering.RELEASE}-webhook-tls"
    operator = monitors[f"{rendering.RELEASE}-operator"]["spec"]["endpoints"][0]
    service = rendering.one(manifests, "Service", f"{rendering.RELEASE}-operator")
    assert operator["port"] in {port["name"] for port in service["spec"]["ports"]}


def test_network_policies_cover_both_pods_and_allow_only_what_they_need() -> None:
    manifests = rendering.rendered("network-policy")
    policies = rendering.of_kind(manifests, "NetworkPolicy")
    assert len(policies) == 2
    for policy in policies:
        name = policy["metadata"]["name"]
        pods = rendering.one(manifests, "Deployment", name)["spec"]["template"]["metadata"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pods["labels"].items()
        assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
        (ingress,) = policy["spec"]["ingress"]
        assert len(ingress["ports"]) == 1
        egress_ports = {port["port"] for rule in policy["spec"]["egress"] for port in rule["ports"]}
        assert egress_ports == {53, 443, 6443}


def test_dashboard_is_valid_json_using_only_exported_metrics() -> None:
    manifests = rendering.rendered("grafana-dashboard")
    config_map = rendering.one(manifests, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["modelshield.json"])
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert expressions
    used = {name for expr in expressions for name in re.findall(r"\bmodelshield_[a-z_]+", expr)}
    source = "\n".join(
        path.read_text()
        for directory in SOURCE_DIRS
        for path in (rendering.REPOSITORY / directory).rglob("*.py")
    )
    for metric in sorted(used):
        # Counters are declared without _total, histograms without _bucket.
        base = re.sub(r"_(total|bucket|sum|count)$", "", metric)
        assert f'"{base}' in source, f"dashboard uses {metric}, which no code exports"


def _network_policies(s3_endpoint: str) -> dict[str, rendering.Manifest]:
    values = {"networkPolicy": {"enabled": True}, "modelStore": {"s3Endpoint": s3_endpoint}}
    manifests = rendering.parse(rendering.render_text(values))
    return {
        p["metadata"]["name"].removeprefix(f"{rendering.RELEASE}-"): p
        for p in rendering.of_kind(manifests, "NetworkPolicy")
    }


def _model_store_rules(policy: rendering.Manifest) -> list[dict[str, object]]:
    # The base rules name ports only; the model store's rule is the one derived here.
    base = {53, 443, 6443}
    return [
        rule
        for rule in policy["spec"]["egress"]
        if {port["port"] for port in rule["ports"]} - base or "to" in rule
    ]


@pytest.mark.parametrize(
    ("endpoint", "rule"),
    [
        # A MinIO by name: the port, to any address (a NetworkPolicy cannot name a host).
        (
            "http://minio.storage.svc.cluster.local:9000",
            {"ports": [{"port": 9000, "protocol": "TCP"}]},
        ),
        # By IP address: that address only.
        (
            "https://10.96.4.7:9000/",
            {
                "ports": [{"port": 9000, "protocol": "TCP"}],
                "to": [{"ipBlock": {"cidr": "10.96.4.7/32"}}],
            },
        ),
        (
            "HTTP://[fd00::7]:9000",
            {
                "ports": [{"port": 9000, "protocol": "TCP"}],
                "to": [{"ipBlock": {"cidr": "fd00::7/128"}}],
            },
        ),
        # No port: the scheme's.
        ("http://minio.storage.svc", {"ports": [{"port": 80, "protocol": "TCP"}]}),
        (
            "https://10.0.0.9",
            {
                "ports": [{"port": 443, "protocol": "TCP"}],
                "to": [{"ipBlock": {"cidr": "10.0.0.9/32"}}],
            },
        ),
    ],
)
def test_the_operator_may_reach_the_model_store_of_modelstore_s3endpoint(
    endpoint: str, rule: dict[str, object]
) -> None:
    # Issue 19: egress was DNS, the API server and 443 only, so the operator could not
    # fetch ModelArtifacts from a MinIO on 9000 that the same value points it at.
    policies = _network_policies(endpoint)
    assert _model_store_rules(policies["operator"]) == [rule]
    # The webhook never downloads a model (admission reads ModelArtifact status).
    assert _model_store_rules(policies["webhook"]) == []


def test_without_a_model_store_endpoint_no_rule_is_added() -> None:
    policies = _network_policies("")
    assert [_model_store_rules(p) for p in policies.values()] == [[], []]
