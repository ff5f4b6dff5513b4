"""The operator binds the guards' ServiceAccounts for TokenReviews, on the real API server,
with the operator's own RBAC: a policy whose api block accepts ServiceAccount tokens is
applied, and a token of an allowed ServiceAccount gets through a guard running as the
operator's guard ServiceAccount, without any binding made by hand; the binding's subject
goes when the policy does. And what the operator may do with RBAC is exactly that: with
its own credentials it cannot create, delete or read any other binding, nor repoint its
own.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.clients import Cluster, Kubectl
from e2e.guardtokens import AUDIENCE, _predict, request_token
from e2e.operators import OperatorProcess, apply, deployment, get_json, policy, wait_for
from modelshield.controllers.builders import tokenreviewers
from modelshield.guard import config, server
from tests.support import guardstack, modelserver

GUARD = "ms-guard-deploy-fraud"
BINDING = tokenreviewers.DEFAULT_NAME


def _api(namespace: str) -> dict[str, Any]:
    return {
        "authentication": {"serviceAccountTokens": {"audiences": [AUDIENCE]}},
        "authorization": {
            "allow": [{"serviceAccounts": [f"{namespace}/scorer"], "models": ["fraud"]}]
        },
    }


def _served() -> dict[str, Any]:
    body = deployment("fraud", {"governed": "yes"})
    body["spec"]["template"]["spec"]["containers"][0]["ports"] = [
        {"name": "http", "containerPort": 8080}
    ]
    return body


def _subjects(cluster: Cluster) -> list[dict[str, Any]]:
    rbac = client.RbacAuthorizationV1Api(cluster.api_client)
    found = rbac.read_cluster_role_binding(BINDING)
    return [
        {"kind": s.kind, "name": s.name, "namespace": s.namespace} for s in found.subjects or []
    ]


async def test_a_token_gets_through_the_operators_guard_without_a_manual_binding(
    cluster: Cluster,
    kubectl: Kubectl,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: pathlib.Path,
) -> None:
    core = client.CoreV1Api(cluster.api_client)
    for name in ("scorer", "intruder"):
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )
    operator = start_operator()
    selector = {"matchLabels": {"governed": "yes"}}
    apply(
        kubectl, namespace, policy("api", {"selector": selector, "api": _api(namespace)}), _served()
    )
    ours = {"kind": "ServiceAccount", "name": GUARD, "namespace": namespace}
    wait_for(
        f"{namespace}/{GUARD} bound; operator log:\n{operator.tail()}",
        lambda: ours in _subjects(cluster) or None,
    )
    # Only the guards the plans create: nothing of this namespace but the guard.
    assert [s for s in _subjects(cluster) if s["namespace"] == namespace] == [ours]

    # The guard as the operator configured it, run here as the operator's ServiceAccount.
    loaded = yaml.safe_load(get_json(kubectl, namespace, "configmap", GUARD)["data"]["guard.yaml"])
    url, ca_path = cluster.api_server(tmp_path / "api-server")
    ca_file = str(ca_path)
    token_file = tmp_path / "guard-token"
    token_file.write_text(request_token(core, namespace, GUARD, None))
    model = modelserver.ModelServer(modelserver.train())
    async with modelserver.serving(model.app()) as upstream:
        settings = config.GuardConfig.model_validate(
            {
                **loaded,
                "upstream": upstream,
                "apiServer": {"url": url, "caFile": ca_file, "tokenFile": str(token_file)},
            }
        )
        async with guardstack.serving_guard(server.pipeline_from_config(settings)) as guard:
            scorer = request_token(core, namespace, "scorer", [AUDIENCE])
            status, body = await _predict(guard, scorer)
            assert status == 200, body
            assert len(json.loads(body)["predictions"]) == 2
            intruder = request_token(core, namespace, "intruder", [AUDIENCE])
            status, body = await _predict(guard, intruder)
            assert status == 403, body
            assert len(model.seen) == 1

    # A subject added by hand (someone granting themselves TokenReviews through this
    # binding) goes at the operator's next pass (here: the next reconcile).
    rbac = client.RbacAuthorizationV1Api(cluster.api_client)
    binding = rbac.read_cluster_role_binding(BINDING)
    binding.subjects = [
        *(binding.subjects or []),
        client.RbacV1Subject(kind="User", name="mallory", api_group=tokenreviewers.RBAC_GROUP),
    ]
    rbac.replace_cluster_role_binding(BINDING, binding)
    assert any(s["name"] == "mallory" for s in _subjects(cluster))
    kubectl("-n", namespace, "label", "deployment", "fraud", "touched=yes")
    wait_for(
        f"the hand-added subject removed; operator log:\n{operator.tail()}",
        lambda: all(s["name"] != "mallory" for s in _subjects(cluster)) or None,
    )
    assert ours in _subjects(cluster)

    kubectl("-n", namespace, "delete", "modelsecuritypolicy", "api")
    wait_for(
        f"{namespace}/{GUARD} unbound; operator log:\n{operator.tail()}",
        lambda: ours not in _subjects(cluster) or None,
    )


def _as_operator(operator_kubeconfig: pathlib.Path) -> client.RbacAuthorizationV1Api:
    from kubernetes import config as kube_config

    api_client = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(operator_kubeconfig)
    )
    return client.RbacAuthorizationV1Api(api_client)


def _refused(call: Callable[[], object]) -> int:
    with pytest.raises(client.exceptions.ApiException) as raised:
        call()
    return int(raised.value.status)


def _binding(name: str, role: str, subject_namespace: str) -> client.V1ClusterRoleBinding:
    return client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name=name),
        role_ref=client.V1RoleRef(
            api_group=tokenreviewers.RBAC_GROUP, kind="ClusterRole", name=role
        ),
        subjects=[
            client.RbacV1Subject(kind="ServiceAccount", name="x", namespace=subject_namespace)
        ],
    )


def test_the_operator_can_write_no_other_binding_and_cannot_repoint_its_own(
    operator_kubeconfig: pathlib.Path, namespace: str
) -> None:
    rbac = _as_operator(operator_kubeconfig)
    # The control: its own binding it may read (and update, as the test above shows).
    assert rbac.read_cluster_role_binding(BINDING).role_ref.name == BINDING
    for role in ("cluster-admin", BINDING):
        assert (
            _refused(
                lambda role=role: rbac.create_cluster_role_binding(  # type: ignore[misc]
                    _binding(f"{namespace}-{role}", role, namespace)
                )
            )
            == 403
        )
    assert _refused(lambda: rbac.delete_cluster_role_binding(BINDING)) == 403
    assert _refused(lambda: rbac.read_cluster_role_binding("modelshield-operator")) == 403
    assert _refused(lambda: rbac.list_cluster_role_binding()) == 403
    # Repointing its binding at cluster-admin: refused (roleRef cannot change, and the
    # operator may not bind cluster-admin).
    own = rbac.read_cluster_role_binding(BINDING)
    own.role_ref.name = "cluster-admin"
    assert _refused(lambda: rbac.replace_cluster_role_binding(BINDING, own)) in (403, 422)
    # Nor may it make a ClusterRole that holds more than it does.
    assert (
        _refused(
            lambda: rbac.create_cluster_role(
                client.V1ClusterRole(metadata=client.V1ObjectMeta(name=f"{namespace}-more"))
            )
        )
        == 403
    )
