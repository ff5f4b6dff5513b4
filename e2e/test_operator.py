"""The operator's reconcile loops against a real API server and controller manager: children,
their selectors and rules, how they follow workloads and policies, and the policy status.

The control plane's kube-controller-manager does real garbage collection by ownerReferences.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import yaml

from e2e.clients import Cluster, Kubectl

# Fixtures are found by name in the module that uses them.
from e2e.operators import (
    CHILDREN,
    DRIFT,
    OperatorProcess,
    apply,
    conditions,
    deployment,
    get_json,
    inference_service,
    owned,
    owned_names,
    policy,
    policy_status,
    wait_children,
    wait_for,
)


def test_children_appear_with_the_right_selectors_and_rules(
    kubectl: Kubectl, governed: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    operator = start_operator()
    wait_children(kubectl, governed, CHILDREN, operator)
    netpol = get_json(kubectl, governed, "networkpolicy", "ms-netpol-deploy-fraud")
    spec = netpol["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app": "fraud"}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "gateway"}
                    },
                    "podSelector": {},
                }
            ],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        }
    ]
    egress_peers = [rule["to"][0] for rule in spec["egress"]]
    assert {"ipBlock": {"cidr": "10.0.0.0/8"}} in egress_peers
    assert any(
        peer.get("podSelector", {}).get("matchLabels", {}).get("k8s-app") == "kube-dns"
        for peer in egress_peers
    )
    assert {
        "podSelector": {
            "matchLabels": {
                "modelshield.dev/drift-monitor": "ms-drift-deploy-fraud",
                "app.kubernetes.io/name": "modelshield-drift-monitor",
            }
        }
    } in egress_peers
    owners = {
        (o["kind"], o["name"], o.get("controller", False))
        for o in netpol["metadata"]["ownerReferences"]
    }
    assert owners == {("Deployment", "fraud", True), ("ModelSecurityPolicy", "isolate", False)}
    labels = netpol["metadata"]["labels"]
    assert labels["modelshield.dev/policy"] == "isolate"
    assert labels["modelshield.dev/workload"] == "fraud"
    isvc_netpol = get_json(kubectl, governed, "networkpolicy", "ms-netpol-isvc-iris")
    assert isvc_netpol["spec"]["podSelector"] == {
        "matchLabels": {"serving.kserve.io/inferenceservice": "iris"}
    }

    monitor = get_json(kubectl, governed, "deployment", "ms-drift-deploy-fraud")
    container = monitor["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:1] == ["drift-monitor"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["limits"]
    account = f"--as=system:serviceaccount:{governed}:ms-drift-deploy-fraud"
    assert (
        kubectl(
            "auth", "can-i", "create", "events", "-n", governed, account, check=False
        ).stdout.strip()
        == "yes"
    )
    assert (
        kubectl(
            "auth", "can-i", "get", "configmaps", "-n", governed, account, check=False
        ).stdout.strip()
        == "no"
    )
    config = yaml.safe_load(
        get_json(kubectl, governed, "configmap", "ms-drift-deploy-fraud")["data"]["config.yaml"]
    )
    assert config["threshold"] == 0.25
    assert config["workload"]["name"] == "fraud"
    isvc = get_json(kubectl, governed, "inferenceservice", "iris")
    assert isvc["spec"]["predictor"]["logger"]["url"].startswith("http://ms-drift-isvc-iris.")
    assert "ms-netpol-deploy-free" not in owned_names(kubectl, governed, "networkpolicy")

    # Nothing is rewritten once converged (Deployments: their spec generation; their status
    # is the controller manager's).
    def versions() -> dict[tuple[str, str], str]:
        found = {}
        for kind in CHILDREN:
            for item in owned(kubectl, governed, kind):
                field = "generation" if kind == "deployment" else "resourceVersion"
                found[(kind, item["metadata"]["name"])] = str(item["metadata"][field])
        return found

    before = versions()
    time.sleep(4)
    assert versions() == before

    statefulset = deployment("ledger", {"governed": "yes"})
    statefulset["kind"] = "StatefulSet"
    apply(kubectl, governed, statefulset)
    wait_for(
        "the StatefulSet's NetworkPolicy",
        lambda: "ms-netpol-sts-ledger" in owned_names(kubectl, governed, "networkpolicy"),
    )
    sts_netpol = get_json(kubectl, governed, "networkpolicy", "ms-netpol-sts-ledger")
    assert sts_netpol["spec"]["podSelector"] == {"matchLabels": {"app": "ledger"}}


def test_labels_change_delete_edit_and_policy_deletion(
    kubectl: Kubectl,
    cluster: Cluster,
    governed: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    operator = start_operator()
    wait_children(kubectl, governed, CHILDREN, operator)

    # A deleted child comes back; an edited one is reverted.
    kubectl("-n", governed, "delete", "networkpolicy", "ms-netpol-deploy-fraud", "--wait=true")
    wait_for(
        "the deleted NetworkPolicy restored",
        lambda: "ms-netpol-deploy-fraud" in owned_names(kubectl, governed, "networkpolicy"),
    )
    kubectl(
        "-n",
        governed,
        "patch",
        "networkpolicy",
        "ms-netpol-deploy-fraud",
        "--type=merge",
        "-p",
        '{"spec":{"ingress":[{}]}}',
    )
    wait_for(
        "the edited NetworkPolicy reverted",
        lambda: (
            get_json(kubectl, governed, "networkpolicy", "ms-netpol-deploy-fraud")["spec"].get(
                "ingress", [{}]
            )[0]
            != {}
        ),
    )
    kubectl(
        "-n",
        governed,
        "patch",
        "configmap",
        "ms-drift-deploy-fraud",
        "--type=merge",
        "-p",
        '{"data":{"threshold":"99"}}',
    )
    wait_for(
        "the edited ConfigMap reverted",
        lambda: (
            "threshold"
            not in get_json(kubectl, governed, "configmap", "ms-drift-deploy-fraud")["data"]
        ),
    )
    events = get_json(kubectl, governed, "events", "--field-selector=involvedObject.name=fraud")
    reasons = {event["reason"] for event in events.get("items", [])}
    assert {"Restored", "Reverted"} <= reasons

    # No longer selected by its labels → its objects go.
    kubectl(
        "-n",
        governed,
        "patch",
        "deployment",
        "fraud",
        "--type=merge",
        "-p",
        '{"spec":{"template":{"metadata":{"labels":{"governed":"no"}}}}}',
    )
    wait_for(
        "the ungoverned Deployment's objects removed",
        lambda: (
            not any(
                "deploy-fraud" in n
                for kind in CHILDREN
                for n in owned_names(kubectl, governed, kind)
            )
        ),
    )
    assert "ms-netpol-isvc-iris" in owned_names(kubectl, governed, "networkpolicy")

    # Deleting the policy collects everything it asked for.
    kubectl("-n", governed, "delete", "modelsecuritypolicy", "isolate")
    wait_for(
        "every owned object collected after the policy was deleted",
        lambda: not any(owned_names(kubectl, governed, kind) for kind in CHILDREN),
    )


def test_deleting_the_workload_garbage_collects_without_the_operator(
    kubectl: Kubectl, governed: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    operator = start_operator()
    wait_children(kubectl, governed, CHILDREN, operator)
    operator.stop()
    # With the operator gone, the owner references alone must clean up: the policy goes
    # too, so no owner of the Deployment's objects remains for the garbage collector.
    kubectl("-n", governed, "delete", "deployment", "fraud", "--wait=true")
    kubectl("-n", governed, "delete", "modelsecuritypolicy", "isolate")
    wait_for(
        "the garbage collector removed the deleted workload's objects",
        lambda: (
            not any(
                "deploy-fraud" in n
                for kind in CHILDREN
                for n in owned_names(kubectl, governed, kind)
            )
        ),
    )


def test_status_counts_conditions_and_degraded_reason(
    kubectl: Kubectl, namespace: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    apply(
        kubectl,
        namespace,
        policy(
            "hardening",
            {"enforcement": "Audit", "selector": {"matchLabels": {"team": "a"}}, "runtime": {}},
        ),
        deployment("good", {"team": "a"}),
        deployment("bad", {"team": "a"}, hardened=False),
        policy("watch", {"selector": {"matchLabels": {"team": "b"}}, "monitoring": DRIFT}),
        deployment("watched", {"team": "b"}),
        inference_service("logged", {"team": "b"}, logger="http://someone-else/"),
    )
    start_operator()
    status = wait_for(
        "status of policy hardening",
        lambda: (s := policy_status(kubectl, namespace, "hardening")).get("governed") == 2 and s,
    )
    assert (status["compliant"], status["violating"]) == (1, 1)
    assert status["violators"] == [f"Deployment/{namespace}/bad"]
    assert status["observedGeneration"] == 1
    assert conditions(status)["Ready"]["status"] == "True"
    assert conditions(status)["Degraded"]["status"] == "False"

    watch = wait_for(
        "policy watch degraded",
        lambda: (
            (s := policy_status(kubectl, namespace, "watch"))
            and conditions(s).get("Degraded", {}).get("status") == "True"
            and s
        ),
    )
    degraded = conditions(watch)["Degraded"]
    assert degraded["reason"] == "ReferenceProfileMissing"
    assert "reference" in degraded["message"]

    # With the profile present, the other problem remains: the logger is someone else's.
    kubectl("-n", namespace, "create", "configmap", "reference", "--from-literal=profile.json={}")
    kubectl("-n", namespace, "annotate", "deployment", "watched", "touch=1")
    kubectl(
        "-n",
        namespace,
        "patch",
        "modelsecuritypolicy",
        "watch",
        "--type=merge",
        "-p",
        '{"spec":{"monitoring":{"drift":{"threshold":0.3}}}}',
    )
    watch = wait_for(
        "policy watch degraded by the existing payload logger",
        lambda: (
            (s := policy_status(kubectl, namespace, "watch"))
            and conditions(s)["Degraded"]["reason"] == "PayloadLoggerInUse"
            and s
        ),
    )
    assert watch["observedGeneration"] == 2
    assert "someone-else" in conditions(watch)["Degraded"]["message"]
    isvc = get_json(kubectl, namespace, "inferenceservice", "logged")
    assert isvc["spec"]["predictor"]["logger"]["url"] == "http://someone-else/"
    events = get_json(kubectl, namespace, "events", "--field-selector=involvedObject.name=watch")
    assert "PayloadLoggerInUse" in {e["reason"] for e in events.get("items", [])}
