"""Optional objects: ServiceMonitors, NetworkPolicies for modelshield's own pods, and the
Grafana dashboard, whose every metric must be one the code exports."""

from __future__ import annotations

import json
import re

from tests.chart import rendering

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
