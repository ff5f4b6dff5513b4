"""The labels that take a namespace out of the workload webhooks are guarded: the chart's
ValidatingAdmissionPolicy names the operator's real ServiceAccount and the configured
editors of modelshield.dev/ignore, and the operator's labelling can be switched off
together with the RBAC it needs. (The API server evaluating the CEL is e2e's.)"""

from __future__ import annotations

import json
import pathlib
import tempfile
from typing import Any

from modelshield.controllers.builders import ungoverned
from tests.support import chartrendering as rendering

POLICY = f"{rendering.RELEASE}-namespace-labels"
OPERATOR_SUBJECT = f"system:serviceaccount:{rendering.NAMESPACE}:{rendering.RELEASE}-operator"
PATCH_NAMESPACES = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["patch"]}


def _render(values: dict[str, Any], *extra: str) -> list[rendering.Manifest]:
    if not extra:
        return rendering.parse(rendering.render_text(values))
    # render_text pins the version; these cases need other capabilities.
    with tempfile.TemporaryDirectory() as directory:
        completed = rendering.helm(
            "template",
            rendering.RELEASE,
            str(rendering.CHART),
            "--namespace",
            rendering.NAMESPACE,
            *extra,
            *rendering.values_arguments(values, pathlib.Path(directory)),
        )
    return rendering.parse(completed.stdout)


def _validations(manifests: list[rendering.Manifest]) -> list[dict[str, Any]]:
    policy = rendering.one(manifests, "ValidatingAdmissionPolicy", POLICY)
    validations: list[dict[str, Any]] = policy["spec"]["validations"]
    return validations


def test_the_policy_guards_namespace_writes_and_is_bound_to_deny() -> None:
    manifests = rendering.rendered("default")
    policy = rendering.one(manifests, "ValidatingAdmissionPolicy", POLICY)
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert policy["spec"]["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["namespaces"],
        }
    ]
    binding = rendering.one(manifests, "ValidatingAdmissionPolicyBinding", POLICY)
    assert binding["spec"] == {"policyName": POLICY, "validationActions": ["Deny"]}
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert set(variables) == {"ungovernedBefore", "ungovernedAfter", "ignoreBefore", "ignoreAfter"}
    assert f"'{ungoverned.LABEL}'" in variables["ungovernedAfter"]
    assert "oldObject != null" in variables["ungovernedBefore"]


def test_only_the_operators_service_account_may_set_the_ungoverned_label() -> None:
    manifests = rendering.rendered("default")
    deployment = rendering.one(manifests, "Deployment", f"{rendering.RELEASE}-operator")
    service_account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert OPERATOR_SUBJECT.endswith(f":{service_account}")
    ungoverned_rule, ignore_rule = _validations(manifests)
    # Only the direction that takes a namespace out of the webhooks is the operator's alone.
    assert ungoverned_rule["expression"] == (
        "variables.ungovernedAfter != 'set:true' || variables.ungovernedBefore == 'set:true' || "
        f"request.userInfo.username == {json.dumps(OPERATOR_SUBJECT)}"
    )
    # By default only cluster admins (system:masters, and kubeadm's admin group) may touch
    # the opt-out label; the operator never does.
    assert ignore_rule["expression"] == (
        "variables.ignoreBefore == variables.ignoreAfter || (has(request.userInfo.groups) "
        '&& request.userInfo.groups.exists(g, g in ["system:masters","kubeadm:cluster-admins"]))'
    )


def test_ignore_label_editors_come_from_values_and_none_means_nobody() -> None:
    editors = {
        "webhook": {
            "namespaceLabelPolicy": {
                "ignoreLabelGroups": ["platform-admins", "system:masters"],
                "ignoreLabelUsers": ["alice@example.com"],
            }
        }
    }
    _, ignore_rule = _validations(_render(editors))
    assert 'request.userInfo.username in ["alice@example.com"]' in ignore_rule["expression"]
    assert '["platform-admins","system:masters"]' in ignore_rule["expression"]
    nobody: dict[str, Any] = {"webhook": {"namespaceLabelPolicy": {"ignoreLabelGroups": []}}}
    _, ignore_rule = _validations(_render(nobody))
    assert ignore_rule["expression"] == "variables.ignoreBefore == variables.ignoreAfter"


def test_rendered_only_where_the_api_server_serves_it_and_when_enabled() -> None:
    kinds = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
    old = _render({}, "--kube-version", "v1.29.4")
    assert not [m for m in old if m["kind"] in kinds]
    # helm install on 1.29 with the kind served (beta gate aside, v1 listed) renders it.
    listed = _render(
        {},
        "--kube-version",
        "v1.29.4",
        "--api-versions",
        "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
    )
    assert len([m for m in listed if m["kind"] in kinds]) == 2
    disabled = _render({"webhook": {"namespaceLabelPolicy": {"enabled": False}}})
    assert not [m for m in disabled if m["kind"] in kinds]


def test_labelling_is_on_by_default_and_its_switch_drops_the_patch_grant() -> None:
    def operator(manifests: list[rendering.Manifest]) -> tuple[list[str], list[Any]]:
        deployment = rendering.one(manifests, "Deployment", f"{rendering.RELEASE}-operator")
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        role = rendering.one(manifests, "ClusterRole", f"{rendering.RELEASE}-operator")
        return args, role["rules"]

    args, rules = operator(rendering.rendered("default"))
    assert "--no-label-ungoverned-namespaces" not in args
    assert PATCH_NAMESPACES in rules
    args, rules = operator(_render({"operator": {"labelUngovernedNamespaces": False}}))
    assert "--no-label-ungoverned-namespaces" in args
    assert PATCH_NAMESPACES not in rules
    assert all("patch" not in rule["verbs"] for rule in rules if "namespaces" in rule["resources"])
