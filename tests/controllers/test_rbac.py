"""The operator's RBAC: exact rules, no wildcards, a rule for every kind the code writes."""

from __future__ import annotations

import yaml

from modelshield.cli import main
from modelshield.controllers import rbac, writing


def test_no_wildcards() -> None:
    for rule in (*rbac.cluster_rules(), *rbac.namespace_rules()):
        assert "*" not in rule.verbs
        assert "*" not in rule.resources
        assert "*" not in rule.api_groups
        assert rule.why


def test_every_written_kind_has_a_rule() -> None:
    granted = {
        (group, resource, verb)
        for rule in (*rbac.cluster_rules(), *rbac.namespace_rules())
        for group in rule.api_groups
        for resource in rule.resources
        for verb in rule.verbs
    }
    needed = {
        ("networking.k8s.io", "networkpolicies", verb)
        for verb in ("create", "update", "delete", "get")
    } | {
        ("", "configmaps", "create"),
        ("", "services", "update"),
        ("apps", "deployments", "delete"),
        ("", "events", "create"),
        ("wgpolicyk8s.io", "policyreports", "update"),
        ("modelshield.dev", "modelsecuritypolicies/status", "patch"),
        ("serving.kserve.io", "inferenceservices", "patch"),
        ("", "secrets", "create"),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "patch"),
    }
    assert needed <= granted
    assert writing.FIELD_MANAGER == "modelshield"


def test_rbac_command_prints_the_roles(capsys: object) -> None:
    assert main.main(["rbac", "--namespace", "ops"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    documents = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in documents] == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
    ]
    assert documents[2]["metadata"]["namespace"] == "ops"
    assert documents[1]["subjects"][0]["namespace"] == "ops"
    guard_role, guard_binding = documents[4:]
    assert guard_role["metadata"]["name"] == guard_binding["roleRef"]["name"]
    assert guard_role["rules"] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}
    ]
    assert "subjects" not in guard_binding  # the operator keeps them


def test_the_operator_may_write_only_the_guards_binding_and_bind_only_its_role() -> None:
    rules = rbac.cluster_rules(("hooks",), "guards-binding", "guards-role")
    rbac_rules = [rule for rule in rules if "rbac.authorization.k8s.io" in rule.api_groups]
    cluster_wide = [
        rule for rule in rbac_rules if {"clusterroles", "clusterrolebindings"} & set(rule.resources)
    ]
    assert [(r.resources, r.verbs, r.resource_names) for r in cluster_wide] == [
        (("clusterrolebindings",), ("get", "update"), ("guards-binding",)),
        (("clusterroles",), ("bind",), ("guards-role",)),
    ]
    for rule in rules:
        if "bind" in rule.verbs or "escalate" in rule.verbs:
            assert rule.resource_names == ("guards-role",)
