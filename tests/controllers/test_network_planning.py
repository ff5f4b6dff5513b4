"""Planning the NetworkPolicy: fail closed, Audit never restricts, never outside the scope."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from modelshield.controllers import caches, imageverdicts, observing, planning, statuses
from modelshield.controllers.builders import networkpolicies
from modelshield.engine import scopes
from tests.support.planningworld import SETTINGS, _deployment, _policy

GATEWAY_ONLY = {
    "ingress": [
        {
            "peers": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gw"}}}
            ],
            "ports": [{"port": 8080}],
        }
    ]
}
DENY_EVERYTHING = {"allowDNS": False}
KEY = ("Deployment", "ml", "fraud")


def _world(*bodies: dict[str, Any], scope: scopes.Scope | None = None) -> caches.World:
    world = caches.World(scope=scope or scopes.Scope())
    for name in ("ml", "kube-system", "kube-public", "kube-node-lease", "modelshield-system"):
        world.put_namespace({"metadata": {"name": name, "labels": {}}})
    for body in bodies:
        if body["kind"].endswith("ModelSecurityPolicy"):
            world.put_policy(body)
        else:
            world.put_workload(body)
    return world


def _in(namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    body["metadata"]["namespace"] = namespace
    return body


def _network_policy(plan: planning.Plan) -> dict[str, Any]:
    (manifest,) = [m for key, m in plan.desired.items() if key[0] == "NetworkPolicy"]
    return manifest


def _spec(**network: Any) -> dict[str, Any]:
    return {"selector": {"matchLabels": {"app": "fraud"}}, "network": network}


def test_an_audit_policy_never_restricts_traffic() -> None:
    # The old planner took every governing policy's network block: an Audit policy that
    # denies everything next to an Enforce baseline produced a deny-all NetworkPolicy.
    world = _world(
        _policy("baseline", _spec(**GATEWAY_ONLY)),
        _policy("trial", {**_spec(**DENY_EVERYTHING), "enforcement": "Audit"}),
        _deployment("fraud", {"app": "fraud"}),
    )
    plan = planning.plan(world, KEY, SETTINGS, None)
    spec = _network_policy(plan)["spec"]
    assert spec["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gw"}},
                    "podSelector": {},
                }
            ],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        }
    ]
    assert spec["egress"] == [
        {"to": [networkpolicies.DNS_PEER], "ports": spec["egress"][0]["ports"]}
    ]
    (note,) = [n for notes in plan.notes.values() for n in notes]
    assert note.reason == planning.NETWORK_NOT_ENFORCED
    assert "Deployment/ml/fraud" in note.message
    assert "would" in note.message
    assert not plan.problems


def test_an_audit_policy_alone_writes_no_network_policy_but_reports_it() -> None:
    world = _world(
        _policy("trial", {**_spec(**DENY_EVERYTHING), "enforcement": "Audit"}),
        _deployment("fraud", {"app": "fraud"}),
    )
    plan = planning.plan(world, KEY, SETTINGS, None)
    assert not [key for key in plan.desired if key[0] == "NetworkPolicy"]
    assert [n.reason for notes in plan.notes.values() for n in notes] == [
        planning.NETWORK_NOT_ENFORCED
    ]


def test_an_audit_policy_that_would_narrow_nothing_is_not_reported() -> None:
    world = _world(
        _policy("baseline", _spec(**GATEWAY_ONLY)),
        _policy("trial", {**_spec(**GATEWAY_ONLY), "enforcement": "Audit"}),
        _deployment("fraud", {"app": "fraud"}),
    )
    assert planning.plan(world, KEY, SETTINGS, None).notes == {}


@pytest.mark.parametrize("cidr", ["10.1.2.3/8", "10.0.0.0/99", "192.168.1.1/24"])
def test_a_stored_policy_todays_schema_refuses_fails_closed(cidr: str) -> None:
    # Stored before the rule existed (or with the webhook down): the old builder emitted
    # the CIDR as given, the API server refused it and the workload had no NetworkPolicy;
    # with /99 the planner raised and the operator retried forever.
    world = _world(
        _policy("baseline", _spec(**GATEWAY_ONLY)),
        _policy("tenant", _spec(egress=[{"peers": [{"cidr": cidr}]}])),
        _deployment("fraud", {"app": "fraud"}),
    )
    assert world.policies[("ModelSecurityPolicy", "ml", "tenant")].model is None
    plan = planning.plan(world, KEY, SETTINGS, None)
    manifest = _network_policy(plan)
    assert manifest["spec"] == {
        "podSelector": {"matchLabels": {"app": "fraud"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [],
        "egress": [],
    }
    reasons = {ref.name: [p.reason for p in found] for ref, found in plan.problems.items()}
    assert reasons == {
        "baseline": [planning.NETWORK_POLICY_FAILED_CLOSED],
        "tenant": [planning.NETWORK_POLICY_FAILED_CLOSED],
    }
    assert {ref.name for ref in plan.governing} == {"baseline", "tenant"}


def test_an_unreadable_policy_alone_still_fails_closed() -> None:
    world = _world(
        _policy(
            "tenant", _spec(ingress=[{"peers": [{"podSelector": {"matchLabels": {"a": "x y"}}}]}])
        ),
        _deployment("fraud", {"app": "fraud"}),
    )
    manifest = _network_policy(planning.plan(world, KEY, SETTINGS, None))
    assert manifest["spec"]["ingress"] == []
    assert manifest["spec"]["egress"] == []


def test_an_unreadable_policy_without_network_or_for_other_pods_changes_nothing() -> None:
    world = _world(
        _policy(
            "other-pods",
            {
                **_spec(egress=[{"peers": [{"cidr": "10.1.2.3/8"}]}]),
                "selector": {"matchLabels": {"app": "x"}},
            },
        ),
        _policy("no-network", {"selector": {}, "enforcement": "Sometimes"}),
        _deployment("fraud", {"app": "fraud"}),
    )
    assert planning.plan(world, KEY, SETTINGS, None).desired == {}


def test_a_planned_network_policy_has_a_deny_all_fallback() -> None:
    world = _world(
        _policy("baseline", _spec(**GATEWAY_ONLY)), _deployment("fraud", {"app": "fraud"})
    )
    plan = planning.plan(world, KEY, SETTINGS, None)
    (key,) = plan.fallbacks
    assert plan.desired[key]["metadata"]["name"] == plan.fallbacks[key]["metadata"]["name"]
    assert plan.fallbacks[key]["spec"]["ingress"] == plan.fallbacks[key]["spec"]["egress"] == []


EVERYWHERE = _policy(
    "everywhere",
    {"selector": {}, "network": GATEWAY_ONLY},
    kind="ClusterModelSecurityPolicy",
)


@pytest.mark.parametrize(
    "namespace", ["kube-system", "kube-public", "kube-node-lease", "modelshield-system"]
)
def test_a_cluster_policy_selecting_everything_never_governs_system_namespaces(
    namespace: str,
) -> None:
    # The old operator wrote a NetworkPolicy for CoreDNS (every DNS query in the cluster
    # denied) and for modelshield's own Deployments.
    coredns = _in(namespace, _deployment("coredns", {"k8s-app": "kube-dns"}))
    world = _world(EVERYWHERE, coredns, _deployment("fraud", {"app": "fraud"}))
    key = ("Deployment", namespace, "coredns")
    assert world.governing(key) == ()
    plan = planning.plan(world, key, SETTINGS, None)
    assert plan.desired == {}
    assert plan.governing == ()
    assert len(planning.plan(world, KEY, SETTINGS, None).desired) == 1


def test_the_scope_follows_the_webhooks_excluded_and_opted_out_namespaces() -> None:
    scope = scopes.Scope.of("platform", ["monitoring"])
    world = _world(EVERYWHERE, scope=scope)
    world.put_namespace(
        {"metadata": {"name": "opted-out", "labels": {scopes.IGNORE_LABEL: "true"}}}
    )
    for namespace in ("platform", "monitoring", "opted-out"):
        world.put_workload(_in(namespace, _deployment("d", {"app": "d"})))
        assert world.governing(("Deployment", namespace, "d")) == (), namespace
    world.put_workload(_in("modelshield-system", _deployment("d", {"app": "d"})))
    # Another release namespace: modelshield-system is an ordinary namespace now.
    assert world.governing(("Deployment", "modelshield-system", "d")) != ()


def test_opt_in_mode_governs_only_opted_in_namespaces() -> None:
    world = _world(
        EVERYWHERE,
        _deployment("fraud", {"app": "fraud"}),
        scope=scopes.Scope.of(require_opt_in=True),
    )
    assert world.governing(KEY) == ()
    world.put_namespace({"metadata": {"name": "ml", "labels": {scopes.OPT_IN_LABEL: "true"}}})
    assert world.governing(KEY) != ()


def test_the_operator_reports_what_admission_refuses_on_the_policy_status() -> None:
    # The same rules as the resource webhook and `modelshield test` (api/v1alpha1/validation.py):
    # a policy stored while the webhook was down says so in its status.
    key = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"
    signer = {"name": "release", "publicKey": key}
    world = _world(_policy("twice", {"selector": {}, "images": {"signers": [signer, signer]}}))
    observation = observing.observe(
        ("ModelSecurityPolicy", "ml", "twice"),
        world,
        {},
        imageverdicts.Verifications(None),
        datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC),
    )
    assert observation.problems == [
        (
            statuses.INVALID_SPEC,
            "spec.images.signers: signer name 'release' is used twice; names must be unique",
        )
    ]


def test_a_bug_in_the_builder_fails_closed_too(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**_: Any) -> dict[str, Any]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(networkpolicies, "build", broken)
    world = _world(
        _policy("baseline", _spec(**GATEWAY_ONLY)), _deployment("fraud", {"app": "fraud"})
    )
    plan = planning.plan(world, KEY, SETTINGS, None)
    manifest = _network_policy(plan)
    assert manifest["spec"]["ingress"] == []
    assert manifest["spec"]["egress"] == []
    (problem,) = [p for found in plan.problems.values() for p in found]
    assert problem.reason == planning.NETWORK_POLICY_FAILED_CLOSED
    assert "RuntimeError: a bug" in problem.message
