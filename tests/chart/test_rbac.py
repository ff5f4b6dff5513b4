"""Least privilege: no wildcards, Secrets only by name, and the operator's rules are exactly
those of modelshield.controllers.rbac (what the code was tested to need)."""

from __future__ import annotations

from typing import Any

import pytest

from modelshield.controllers import rbac
from modelshield_webhooks import caches
from tests.support import chartrendering as rendering

ROLE_KINDS = ("ClusterRole", "Role")
#: Verbs that let a subject grant itself more than it was given.
ESCALATING_VERBS = {"escalate", "bind", "impersonate", "*"}
GUARD_ROLE = f"{rendering.RELEASE}-inference-guard"
#: The one escalating grant: the operator may bind the guards' ClusterRole (create
#: tokenreviews) and no other, to keep the subjects of its one binding.
GUARD_BIND_RULE = (
    f"ClusterRole/{rendering.RELEASE}-operator",
    {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["clusterroles"],
        "verbs": ["bind"],
        "resourceNames": [GUARD_ROLE],
    },
)


def _rules(manifests: list[rendering.Manifest]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{role['kind']}/{role['metadata']['name']}", rule)
        for kind in ROLE_KINDS
        for role in rendering.of_kind(manifests, kind)
        for rule in role.get("rules", [])
    ]


def _normalised(rules: list[dict[str, Any]]) -> list[tuple[tuple[str, ...], ...]]:
    return sorted(
        (
            tuple(sorted(rule.get("apiGroups", []))),
            tuple(sorted(rule.get("resources", []))),
            tuple(sorted(rule.get("verbs", []))),
            tuple(sorted(rule.get("resourceNames", []))),
        )
        for rule in rules
    )


@pytest.mark.parametrize("name", sorted(rendering.COMBINATIONS))
def test_no_wildcards_and_no_escalation(name: str) -> None:
    rules = _rules(rendering.rendered(name))
    assert rules
    for role, rule in rules:
        assert "nonResourceURLs" not in rule, role
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            for value in rule.get(field, []):
                assert "*" not in value, f"{role}: wildcard in {field}: {rule}"
        if (role, rule) == GUARD_BIND_RULE:
            continue
        assert not ESCALATING_VERBS & set(rule["verbs"]), f"{role}: {rule}"


#: The one cluster-wide Secret grant: get (never list/watch), for secretRef signers' keys.
SIGNER_SECRETS_RULE = (("",), ("secrets",), ("get",), ())


@pytest.mark.parametrize("name", sorted(rendering.COMBINATIONS))
def test_secrets_are_reachable_only_by_name_in_the_release_namespace_or_by_get(name: str) -> None:
    manifests = rendering.rendered(name)
    for role, rule in _rules(manifests):
        if "secrets" not in rule["resources"]:
            continue
        if role.startswith("ClusterRole/"):
            assert role in (
                f"ClusterRole/{rendering.RELEASE}-operator",
                f"ClusterRole/{rendering.RELEASE}-webhook",
            ), rule
            assert _normalised([rule]) == [SIGNER_SECRETS_RULE], f"{role}: {rule}"
            continue
        # create cannot be limited by name; everything else must be.
        if set(rule["verbs"]) != {"create"}:
            assert rule.get("resourceNames") == [f"{rendering.RELEASE}-webhook-tls"], (
                f"{role}: {rule}"
            )


def _operator_cluster_rules(name: str) -> list[tuple[tuple[str, ...], ...]]:
    manifests = rendering.rendered(name)
    cluster_role = rendering.one(manifests, "ClusterRole", f"{rendering.RELEASE}-operator")
    return _normalised(cluster_role["rules"])


def test_operator_rules_are_the_ones_the_code_declares() -> None:
    manifests = rendering.rendered("default")
    expected = [
        rule.manifest() for rule in rbac.cluster_rules((rendering.RELEASE,), GUARD_ROLE, GUARD_ROLE)
    ]
    assert _operator_cluster_rules("default") == _normalised(expected)
    role = rendering.one(manifests, "Role", f"{rendering.RELEASE}-operator")
    expected = [
        rule.manifest() for rule in rbac.namespace_rules(f"{rendering.RELEASE}-webhook-tls")
    ]
    assert _normalised(role["rules"]) == _normalised(expected)


def test_read_signer_secrets_false_drops_only_the_cluster_wide_secret_get() -> None:
    declared = _normalised(
        [
            rule.manifest()
            for rule in rbac.cluster_rules((rendering.RELEASE,), GUARD_ROLE, GUARD_ROLE)
        ]
    )
    assert SIGNER_SECRETS_RULE in declared
    dropped = [rule for rule in declared if rule != SIGNER_SECRETS_RULE]
    assert _operator_cluster_rules("no-signer-secrets") == dropped


def test_with_cert_manager_the_operator_gets_only_the_signer_secrets_get() -> None:
    manifests = rendering.rendered("cert-manager")
    assert not rendering.of_kind(manifests, "Role")
    secret_rules = [rule for _, rule in _rules(manifests) if "secrets" in rule["resources"]]
    assert _normalised(secret_rules) == [SIGNER_SECRETS_RULE]


def test_webhook_only_reads_what_its_caches_watch() -> None:
    role = rendering.one(
        rendering.rendered("default"), "ClusterRole", f"{rendering.RELEASE}-webhook"
    )
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
    granted = {resource for rule in role["rules"] for resource in rule["resources"]}
    assert granted == {*caches.KINDS, *caches.OPTIONAL_KINDS}


def _webhook_rules(values: dict[str, Any]) -> list[tuple[tuple[str, ...], ...]]:
    manifests = rendering.parse(rendering.render_text(values))
    role = rendering.one(manifests, "ClusterRole", f"{rendering.RELEASE}-webhook")
    return _normalised(role["rules"])


def _webhook_args(values: dict[str, Any]) -> list[str]:
    manifests = rendering.parse(rendering.render_text(values))
    deployment = rendering.one(manifests, "Deployment", f"{rendering.RELEASE}-webhook")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


@pytest.mark.parametrize(
    ("values", "flags"),
    [
        ({"readSignerSecrets": True}, ["--read-signer-secrets"]),
        ({"readPullSecrets": True}, ["--read-pull-secrets"]),
        (
            {"readSignerSecrets": True, "readPullSecrets": True},
            ["--read-signer-secrets", "--read-pull-secrets"],
        ),
    ],
)
def test_webhook_secret_reads_add_one_get_rule_and_their_flags(
    values: dict[str, Any], flags: list[str]
) -> None:
    baseline = _webhook_rules({})
    assert SIGNER_SECRETS_RULE not in baseline
    assert not [a for a in _webhook_args({}) if a.startswith("--read-")]
    assert _webhook_rules({"webhook": values}) == sorted([*baseline, SIGNER_SECRETS_RULE])
    assert [a for a in _webhook_args({"webhook": values}) if a.startswith("--read-")] == flags


@pytest.mark.parametrize("name", sorted(rendering.COMBINATIONS))
def test_every_binding_binds_a_rendered_role_to_a_rendered_service_account(name: str) -> None:
    manifests = rendering.rendered(name)
    roles = {
        (m["kind"], m["metadata"]["name"])
        for k in ROLE_KINDS
        for m in rendering.of_kind(manifests, k)
    }
    accounts = {m["metadata"]["name"] for m in rendering.of_kind(manifests, "ServiceAccount")}
    bindings = rendering.of_kind(manifests, "ClusterRoleBinding") + rendering.of_kind(
        manifests, "RoleBinding"
    )
    assert bindings
    for binding in bindings:
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in roles, binding
        if binding["metadata"]["name"] == GUARD_ROLE:
            continue  # the operator keeps its subjects (guards' accounts, other namespaces)
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount"
            assert subject["name"] in accounts
            assert subject["namespace"] == rendering.NAMESPACE
    for _, spec in rendering.pod_specs(manifests):
        if spec.get("automountServiceAccountToken", True):
            assert spec["serviceAccountName"] in accounts


def _operator_args(values: dict[str, Any]) -> list[str]:
    manifests = rendering.parse(rendering.render_text(values))
    deployment = rendering.one(manifests, "Deployment", f"{rendering.RELEASE}-operator")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return [a for a in args if a.startswith("--read-")]


def _operator_rules(values: dict[str, Any]) -> list[tuple[tuple[str, ...], ...]]:
    manifests = rendering.parse(rendering.render_text(values))
    role = rendering.one(manifests, "ClusterRole", f"{rendering.RELEASE}-operator")
    return _normalised(role["rules"])


@pytest.mark.parametrize(
    ("values", "flags", "granted"),
    [
        ({}, ["--read-signer-secrets"], True),
        ({"readSignerSecrets": False}, [], False),
        ({"readSignerSecrets": False, "readPullSecrets": True}, ["--read-pull-secrets"], True),
        ({"readPullSecrets": True}, ["--read-signer-secrets", "--read-pull-secrets"], True),
    ],
)
def test_operator_secret_reads_pass_their_flags_under_the_one_get_rule(
    values: dict[str, Any], flags: list[str], granted: bool
) -> None:
    assert _operator_args({"operator": values}) == flags
    rules = _operator_rules({"operator": values})
    assert (SIGNER_SECRETS_RULE in rules) is granted
    assert [r for r in rules if "secrets" in r[1]] == ([SIGNER_SECRETS_RULE] if granted else [])


@pytest.mark.parametrize("name", sorted(rendering.COMBINATIONS))
def test_rbac_objects_are_written_only_through_the_guards_binding(name: str) -> None:
    """No role may create, delete or change bindings or roles, except the operator's get and
    update of the guards' one binding and bind of the guards' one role, both by name."""
    granted = [
        (role, rule)
        for role, rule in _rules(rendering.rendered(name))
        if "rbac.authorization.k8s.io" in rule["apiGroups"]
        and set(rule["resources"]) & {"clusterroles", "clusterrolebindings"}
    ]
    assert granted == [
        (
            f"ClusterRole/{rendering.RELEASE}-operator",
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["clusterrolebindings"],
                "verbs": ["get", "update"],
                "resourceNames": [GUARD_ROLE],
            },
        ),
        GUARD_BIND_RULE,
    ]


def test_the_guards_binding_grants_only_the_guards_role_and_has_no_subjects() -> None:
    manifests = rendering.rendered("default")
    role = rendering.one(manifests, "ClusterRole", GUARD_ROLE)
    assert role["rules"] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}
    ]
    binding = rendering.one(manifests, "ClusterRoleBinding", GUARD_ROLE)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": GUARD_ROLE,
    }
    # The operator keeps the subjects; a chart that set them would reset them on upgrade.
    assert "subjects" not in binding
    deployment = rendering.one(manifests, "Deployment", f"{rendering.RELEASE}-operator")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--guard-binding={GUARD_ROLE}" in args
    # The code's own copy of these two objects (what `modelshield rbac` prints) agrees.
    assert rbac.guard_manifests(GUARD_ROLE)[0]["rules"] == role["rules"]
    assert rbac.guard_manifests(GUARD_ROLE)[1]["roleRef"] == binding["roleRef"]
