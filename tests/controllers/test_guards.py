"""The guard's objects next to a workload, and the requirement that closes the model's port."""

from __future__ import annotations

from typing import Any

import yaml

from modelshield.api.v1alpha1 import policies
from modelshield.controllers.builders import driftmonitors, guards, networkpolicies
from modelshield.guard import config

SETTINGS = driftmonitors.MonitorSettings(image="registry.example/modelshield:1")
NAME = "ms-guard-deploy-fraud"


def _policy(api: dict[str, Any], enforcement: str = "Enforce") -> policies.ModelSecurityPolicy:
    return policies.ModelSecurityPolicy.model_validate(
        {
            "metadata": {"name": "fraud-api", "namespace": "ml"},
            "spec": {"selector": {}, "enforcement": enforcement, "api": api},
        }
    )


API = {
    "authentication": {"apiKeys": {"secretRef": {"name": "fraud-keys"}}},
    "rateLimits": {"perClient": {"requestsPerSecond": 10, "burst": 20}},
}


def test_the_config_map_is_what_the_guard_loads() -> None:
    document = guards.guard_config(
        upstream="http://fraud.ml.svc:8080",
        replicas=2,
        governing=[
            _policy(API),
            policies.ModelSecurityPolicy.model_validate(
                {"metadata": {"name": "no-api", "namespace": "ml"}, "spec": {"selector": {}}}
            ),
        ],
    )
    config_map = guards.build_config_map(name=NAME, namespace="ml", config=document)
    loaded = config.GuardConfig.model_validate(
        yaml.safe_load(config_map["data"][guards.CONFIG_KEY])
    )
    rules = loaded.rules()
    assert [p.ref.name for p in rules.policies] == ["fraud-api"]
    assert rules.api_key_secrets == frozenset({"fraud-keys"})
    bucket = rules.policies[0].per_client
    assert bucket is not None
    assert (bucket.rate, bucket.burst) == (5.0, 10.0)  # each of 2 replicas gets half


def test_the_deployment_is_hardened_and_mounts_each_key_secret() -> None:
    config_map = guards.build_config_map(name=NAME, namespace="ml", config={"upstream": "x"})
    deployment = guards.build_deployment(
        name=NAME,
        namespace="ml",
        config_map=config_map,
        replicas=2,
        key_secrets=["b", "a"],
        settings=SETTINGS,
    )
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["guard", "--config", "/etc/modelshield/guard/guard.yaml"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"]
    assert [m["mountPath"] for m in container["volumeMounts"]] == [
        "/etc/modelshield/guard",
        "/etc/modelshield/api-keys/a",
        "/etc/modelshield/api-keys/b",
    ]
    assert container["readinessProbe"]["httpGet"]["port"] == "management"
    assert pod["serviceAccountName"] == NAME
    changed = guards.build_config_map(name=NAME, namespace="ml", config={"upstream": "y"})
    rolled = guards.build_deployment(
        name=NAME, namespace="ml", config_map=changed, replicas=2, key_secrets=[], settings=SETTINGS
    )
    key = driftmonitors.CONFIG_HASH_ANNOTATION
    assert (
        rolled["spec"]["template"]["metadata"]["annotations"][key]
        != spec["template"]["metadata"]["annotations"][key]
    )


def test_the_service_selects_the_guard_pods() -> None:
    service = guards.build_service(name=NAME, namespace="ml")
    assert service["spec"]["selector"] == guards.pod_labels(NAME)


def test_the_model_port_admits_only_the_guard() -> None:
    requirement = guards.model_ingress_requirement(guard_name=NAME, model_port=8080)
    spec = networkpolicies.build(
        name="n",
        namespace="ml",
        pod_selector={"matchLabels": {"app": "fraud"}},
        requirements=[requirement],
    )["spec"]
    assert spec["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": guards.pod_labels(NAME)}}],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        }
    ]


def test_the_guard_requirement_leaves_egress_to_the_network_blocks() -> None:
    user = policies.NetworkRequirements.model_validate(
        {"egress": [{"peers": [{"cidr": "10.0.0.0/8"}], "ports": [{"port": 5432}]}]}
    )
    requirement = guards.model_ingress_requirement(guard_name=NAME, model_port=8080)
    alone = networkpolicies.build(name="n", namespace="ml", pod_selector={}, requirements=[user])[
        "spec"
    ]["egress"]
    both = networkpolicies.build(
        name="n", namespace="ml", pod_selector={}, requirements=[user, requirement]
    )["spec"]["egress"]
    assert both == alone
