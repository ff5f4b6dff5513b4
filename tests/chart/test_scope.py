"""The webhooks' namespaceSelector and the operator's scope come from one definition
(``modelshield.engine.scopes``): what admission never sees, the operator never governs."""

from __future__ import annotations

import pytest

from modelshield.cli import operator as operator_cli
from modelshield.engine import scopes
from tests.support import chartrendering as rendering
from tests.support.chartworkloads import OPERATOR, _parsed

CONFIGURATION_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


@pytest.mark.parametrize("name", ["default", "opt-in", "everything"])
def test_webhooks_and_operator_exclude_the_same_namespaces(name: str) -> None:
    manifests = rendering.rendered(name)
    container = rendering.one(manifests, "Deployment", OPERATOR)["spec"]["template"]["spec"][
        "containers"
    ][0]
    scope = operator_cli._scope(_parsed(container["args"]))
    for kind in CONFIGURATION_KINDS:
        for configuration in rendering.of_kind(manifests, kind):
            for webhook in configuration["webhooks"]:
                if "namespaceSelector" not in webhook:
                    continue  # modelshield's own kinds: cluster-wide, no workloads
                by_key = {e["key"]: e for e in webhook["namespaceSelector"]["matchExpressions"]}
                assert by_key["kubernetes.io/metadata.name"]["values"] == list(scope.excluded_names)
                assert set(scope.excluded_names) >= scopes.SYSTEM_NAMESPACES
                opted_in = by_key.get(scopes.OPT_IN_LABEL)
                assert scope.require_opt_in == (opted_in is not None)
                assert by_key[scopes.IGNORE_LABEL]["values"] == [scopes.TRUE]


def test_everything_excludes_the_extra_namespace_in_both() -> None:
    manifests = rendering.rendered("everything")
    container = rendering.one(manifests, "Deployment", OPERATOR)["spec"]["template"]["spec"][
        "containers"
    ][0]
    scope = operator_cli._scope(_parsed(container["args"]))
    assert not scope.governs("monitoring", {})
    assert not scope.governs("kube-public", {})
    assert not scope.governs(rendering.NAMESPACE, {})
    assert not scope.governs("ml", {})  # opt-in: not labelled
    assert scope.governs("ml", {scopes.OPT_IN_LABEL: scopes.TRUE})
