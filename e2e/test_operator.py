"""The operator's reconcile loops against a real API server and controller manager.

``modelshield operator`` runs as a local subprocess, logged in as a ServiceAccount bound to
exactly the rules of ``modelshield rbac`` (so a missing rule fails here). The control
plane's kube-controller-manager does real garbage collection by ownerReferences.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client

from e2e.clients import REPOSITORY_ROOT, Cluster, Kubectl
from modelshield.controllers import rbac
from modelshield.supplychain.images import registries
from tests.supplychain import localtools

FIXTURES = Path(__file__).resolve().parent / "fixtures"
WAIT_SECONDS = 60.0
OPERATOR_NAMESPACE = "modelshield-e2e-operator"
WEBHOOK_CONFIGURATION = "modelshield-e2e-" + uuid.uuid4().hex[:8]
GROUP, VERSION = "modelshield.dev", "v1alpha1"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT_SECONDS) -> T:
    """Poll until probe returns something truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout:.0f} s: {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def operator_kubeconfig(
    cluster: Cluster,
    kubectl: Kubectl,
    modelshield_crds: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """CRDs installed, and a kubeconfig for a ServiceAccount with exactly the operator's RBAC."""
    kubectl(
        "apply",
        "--server-side",
        "--field-manager=modelshield-e2e",
        f"--filename={FIXTURES / 'inferenceservice-crd.yaml'}",
        f"--filename={FIXTURES / 'policyreport-crd.yaml'}",
    )
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/inferenceservices.serving.kserve.io",
        "crd/policyreports.wgpolicyk8s.io",
    )
    kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    kubectl(
        "-n", OPERATOR_NAMESPACE, "create", "serviceaccount", "modelshield-operator", check=False
    )
    documents = rbac.manifests(
        namespace=OPERATOR_NAMESPACE, webhook_configurations=(WEBHOOK_CONFIGURATION,)
    )
    kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(documents))
    token = kubectl(
        "-n", OPERATOR_NAMESPACE, "create", "token", "modelshield-operator", "--duration=2h"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig_path.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster_entry = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    path = tmp_path_factory.mktemp("operator") / "operator.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster_entry],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "operator",
                        "context": {"cluster": cluster_entry["name"], "user": "operator"},
                    }
                ],
                "current-context": "operator",
            }
        )
    )
    path.chmod(0o600)
    return path


class OperatorProcess:
    """``modelshield operator`` as a child process, with its log kept for failures."""

    def __init__(self, kubeconfig: Path, log: Path, *extra: str) -> None:
        self.command = [
            sys.executable,
            "-m",
            "modelshield.cli.main",
            "operator",
            f"--kubeconfig={kubeconfig}",
            "--standalone",
            "--metrics-port=0",
            "--workers=4",
            f"--webhook-configuration={WEBHOOK_CONFIGURATION}",
            "--image=modelshield:e2e",
            *extra,
        ]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                str(REPOSITORY_ROOT / part) for part in ("operator", "webhooks", ".")
            ),
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                cwd=REPOSITORY_ROOT,
            )
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def start_operator(
    operator_kubeconfig: Path, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(*extra: str) -> OperatorProcess:
        process = OperatorProcess(
            operator_kubeconfig, tmp_path / f"operator-{len(started)}.log", *extra
        ).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
    for process in started:
        sys.stderr.write(f"--- {process.log} ---\n{process.tail()}\n")


# --- objects -----------------------------------------------------------------------


def policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


NETWORK = {
    "ingress": [
        {
            "peers": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}}
            ],
            "ports": [{"port": 8080}],
        }
    ],
    "egress": [{"peers": [{"cidr": "10.0.0.0/8"}], "ports": [{"port": 443}]}],
}
DRIFT = {
    "drift": {"referenceProfile": {"name": "reference", "key": "profile.json"}, "threshold": 0.25}
}
HARDENED = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
}


def deployment(name: str, labels: dict[str, str], *, hardened: bool = True) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "model", "image": "registry.example/model:1"}
    if hardened:
        container["securityContext"] = HARDENED
        container["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, **labels}},
                "spec": {"containers": [container]},
            },
        },
    }


def inference_service(
    name: str, labels: dict[str, str], logger: str | None = None
) -> dict[str, Any]:
    predictor: dict[str, Any] = {"sklearn": {"storageUri": "s3://models/iris"}}
    if logger:
        predictor["logger"] = {"mode": "all", "url": logger}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "labels": labels},
        "spec": {"predictor": predictor},
    }


def apply(kubectl: Kubectl, namespace: str, *documents: dict[str, Any]) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", input_text=yaml.safe_dump_all(documents))


def get_json(kubectl: Kubectl, namespace: str, *what: str) -> dict[str, Any]:
    found = kubectl("-n", namespace, "get", *what, "-o", "json", check=False)
    document: dict[str, Any] = yaml.safe_load(found.stdout) if found.returncode == 0 else {}
    return document


def owned(kubectl: Kubectl, namespace: str, kind: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(
        kubectl, namespace, kind, "-l", "app.kubernetes.io/managed-by=modelshield"
    ).get("items", [])
    return items


def owned_names(kubectl: Kubectl, namespace: str, kind: str) -> set[str]:
    return {item["metadata"]["name"] for item in owned(kubectl, namespace, kind)}


def policy_status(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = (
        get_json(kubectl, namespace, "modelsecuritypolicy", name).get("status") or {}
    )
    return status


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


@pytest.fixture
def governed(kubectl: Kubectl, namespace: str) -> str:
    """A namespace with a policy (network + drift), its reference profile, a governed
    Deployment, an ungoverned one and a governed InferenceService."""
    kubectl("-n", namespace, "create", "configmap", "reference", "--from-literal=profile.json={}")
    apply(
        kubectl,
        namespace,
        policy(
            "isolate",
            {
                "selector": {"matchLabels": {"governed": "yes"}},
                "network": NETWORK,
                "monitoring": DRIFT,
            },
        ),
        deployment("fraud", {"governed": "yes"}),
        deployment("free", {}),
        inference_service("iris", {"governed": "yes"}),
    )
    return namespace


CHILDREN = {
    "networkpolicy": {"ms-netpol-deploy-fraud", "ms-netpol-isvc-iris"},
    "deployment": {"ms-drift-deploy-fraud", "ms-drift-isvc-iris"},
    "service": {"ms-drift-deploy-fraud", "ms-drift-isvc-iris"},
    "configmap": {"ms-drift-deploy-fraud", "ms-drift-isvc-iris"},
    "serviceaccount": {"ms-drift-deploy-fraud", "ms-drift-isvc-iris"},
    "role": {"ms-drift-deploy-fraud", "ms-drift-isvc-iris"},
    "rolebinding": {"ms-drift-deploy-fraud", "ms-drift-isvc-iris"},
}


def wait_children(
    kubectl: Kubectl, namespace: str, expected: dict[str, set[str]], operator: OperatorProcess
) -> None:
    for kind, names in expected.items():
        wait_for(
            f"{kind} {sorted(names)} in {namespace}; operator log:\n{operator.tail()}",
            lambda kind=kind, names=names: owned_names(kubectl, namespace, kind) == names,  # type: ignore[misc]
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


def test_killed_mid_reconcile_then_restarted_converges(
    kubectl: Kubectl,
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    count = 200
    apply(
        kubectl,
        namespace,
        *(deployment(f"model-{i:03}", {"governed": "yes"}) for i in range(count)),
    )
    first = start_operator()
    wait_for("the operator started", lambda: "primed" in first.log.read_text())
    apply(
        kubectl,
        namespace,
        policy("isolate", {"selector": {"matchLabels": {"governed": "yes"}}, "network": NETWORK}),
    )
    networking = client.NetworkingV1Api(cluster.api_client)

    def made() -> int:
        return len(networking.list_namespaced_network_policy(namespace).items)

    wait_for("a first NetworkPolicy made", made, timeout=90)
    first.stop(signal.SIGKILL)
    before = made()
    assert before < count, "the operator finished before it was killed; the test proves nothing"
    # While it is down: some workloads go, and one is no longer governed.
    for i in range(5):
        kubectl("-n", namespace, "delete", "deployment", f"model-{i:03}")
    kubectl(
        "-n",
        namespace,
        "patch",
        "deployment",
        "model-005",
        "--type=merge",
        "-p",
        '{"spec":{"template":{"metadata":{"labels":{"governed":"no"}}}}}',
    )
    expected = {f"ms-netpol-deploy-model-{i:03}" for i in range(6, count)}
    second = start_operator()
    # Generous: the machine may be shared with other suites.
    deadline = time.monotonic() + 240
    while (found := owned_names(kubectl, namespace, "networkpolicy")) != expected:
        if time.monotonic() > deadline:
            pytest.fail(
                f"NetworkPolicies missing: {sorted(expected - found)}; extra: {sorted(found - expected)}; "
                f"log:\n{second.tail()}"
            )
        time.sleep(0.2)
    items = owned(kubectl, namespace, "networkpolicy")
    assert len(items) == len(expected), "duplicates"
    workloads = {
        item["metadata"]["name"]
        for item in get_json(kubectl, namespace, "deployments").get("items", [])
    }
    for item in items:
        controller = next(o for o in item["metadata"]["ownerReferences"] if o.get("controller"))
        assert controller["name"] in workloads, f"orphan {item['metadata']['name']}"
    # A second pass changes nothing: restart again and watch resourceVersions.
    versions = {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in items}
    second.stop()
    third = start_operator()
    time.sleep(5)
    assert third.process is not None
    assert third.process.poll() is None, third.tail()
    after = {
        i["metadata"]["name"]: i["metadata"]["resourceVersion"]
        for i in owned(kubectl, namespace, "networkpolicy")
    }
    assert after == versions


def test_policy_report_for_a_violating_workload(
    kubectl: Kubectl, namespace: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    apply(
        kubectl,
        namespace,
        policy("hardening", {"selector": {"matchLabels": {"team": "a"}}, "runtime": {}}),
        deployment("good", {"team": "a"}),
        deployment("bad", {"team": "a"}, hardened=False),
        deployment("other", {}),
    )
    start_operator("--audit-interval=1")
    report = wait_for(
        "a PolicyReport with the violating workload",
        lambda: (
            (r := get_json(kubectl, namespace, "policyreport", "modelshield"))
            and r.get("summary", {}).get("fail")
            and r
        ),
    )
    assert report["scope"] == {"apiVersion": "v1", "kind": "Namespace", "name": namespace}
    failures = [r for r in report["results"] if r["result"] == "fail"]
    assert {r["rule"] for r in failures} == {
        "RuntimeRunAsRoot",
        "RuntimeWritableRootFilesystem",
        "RuntimePrivilegeEscalation",
        "RuntimeNoResourceLimits",
    }
    assert all(r["resources"][0]["name"] == "bad" for r in failures)
    assert all(r["policy"] == f"ModelSecurityPolicy {namespace}/hardening" for r in failures)
    passes = [r for r in report["results"] if r["result"] == "pass"]
    assert [r["resources"][0]["name"] for r in passes] == ["good"]
    assert report["summary"] == {"pass": 1, "fail": 4, "warn": 0, "error": 0, "skip": 0}
    reports = get_json(kubectl, namespace, "policyreports").get("items", [])
    assert len(reports) == 1, "one report per namespace, never one per workload"


def test_webhook_certificate_and_ca_bundle(
    kubectl: Kubectl, operator_kubeconfig: Path, start_operator: Callable[..., OperatorProcess]
) -> None:
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_CONFIGURATION},
        "webhooks": [
            {
                "name": "validate.modelshield.dev",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "clientConfig": {
                    "service": {
                        "name": "modelshield-webhook",
                        "namespace": OPERATOR_NAMESPACE,
                        "path": "/validate",
                    }
                },
                "rules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["deployments"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"modelshield-e2e-never": "true"}},
            }
        ],
    }
    kubectl("apply", "-f", "-", input_text=yaml.safe_dump(webhook))
    try:
        start_operator("--manage-certificates", f"--webhook-namespace={OPERATOR_NAMESPACE}")
        secret = wait_for(
            "the webhook certificate Secret",
            lambda: get_json(
                kubectl, OPERATOR_NAMESPACE, "secret", rbac.DEFAULT_CERTIFICATE_SECRET
            ).get("data"),
        )
        bundle = wait_for(
            "the caBundle in sync with the Secret",
            lambda: (
                (
                    b := get_json(
                        kubectl, "default", "validatingwebhookconfiguration", WEBHOOK_CONFIGURATION
                    )["webhooks"][0]["clientConfig"].get("caBundle")
                )
                == secret["ca.crt"]
                and b
            ),
        )
        assert bundle == secret["ca.crt"]
        assert secret["tls.crt"]
        assert secret["tls.key"]
    finally:
        kubectl("delete", "validatingwebhookconfiguration", WEBHOOK_CONFIGURATION, check=False)


def test_rbac_has_no_wildcards_on_the_server(kubectl: Kubectl, operator_kubeconfig: Path) -> None:
    role = get_json(kubectl, "default", "clusterrole", "modelshield-operator")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
    for verb in ("list", "watch", "delete"):
        denied = kubectl(
            f"--kubeconfig={operator_kubeconfig}",
            "auth",
            "can-i",
            verb,
            "secrets",
            "-n",
            "default",
            check=False,
        )
        assert denied.stdout.strip() == "no", verb


def test_audit_sees_a_key_rotated_and_a_signature_removed_after_admission(
    kubectl: Kubectl, namespace: str, start_operator: Callable[..., OperatorProcess], tmp_path: Path
) -> None:
    registry = localtools.LocalRegistry(
        localtools.require_tool("MODELSHIELD_REGISTRY"), tmp_path
    ).start()
    try:
        cosign = localtools.Cosign(
            localtools.require_tool("MODELSHIELD_COSIGN"), tmp_path / "cosign"
        )
        first_key, first_public = cosign.generate_key_pair("release-1")
        _, second_public = cosign.generate_key_pair("release-2")

        async def push() -> str:
            async with registries.RegistryClient(registry.options()) as registry_client:
                return await localtools.push_image(
                    registry_client, registry.host, "ml/model", "v1", "weights"
                )

        digest = asyncio.run(push())
        image = f"{registry.host}/ml/model@{digest}"
        cosign.sign(image, first_key)
        signed = deployment("signed", {"team": "s"})
        signed["spec"]["template"]["spec"]["containers"][0]["image"] = image
        signers = [{"name": "release-1", "publicKey": first_public}]
        apply(
            kubectl,
            namespace,
            policy(
                "signed-images",
                {
                    "enforcement": "Audit",
                    "selector": {"matchLabels": {"team": "s"}},
                    "images": {"signers": signers},
                },
            ),
            signed,
        )
        start_operator(
            "--audit-interval=1", f"--insecure-registry={registry.host}", "--image-cache-ttl=2"
        )

        def report_results() -> list[dict[str, Any]]:
            results: list[dict[str, Any]] = (
                get_json(kubectl, namespace, "policyreport", "modelshield").get("results") or []
            )
            return results

        wait_for(
            "the audit passes the signed image",
            lambda: [r["result"] for r in report_results()] == ["pass"],
        )
        status = wait_for(
            "status counts the verified workload compliant",
            lambda: (
                (s := policy_status(kubectl, namespace, "signed-images")).get("compliant") == 1
                and s
            ),
        )
        assert status["violating"] == 0

        # The key is rotated after admission: only release-2 is trusted now.
        rotated = {
            "spec": {"images": {"signers": [{"name": "release-2", "publicKey": second_public}]}}
        }
        kubectl(
            "-n",
            namespace,
            "patch",
            "modelsecuritypolicy",
            "signed-images",
            "--type=merge",
            "-p",
            json.dumps(rotated),
        )
        failures = wait_for(
            "the audit reports the image signed by a key no longer trusted",
            lambda: [r for r in report_results() if r["result"] == "warn"],
        )
        assert failures[0]["rule"].startswith("Image")
        assert failures[0]["resources"][0]["name"] == "signed"
        wait_for(
            "status counts the workload violating",
            lambda: policy_status(kubectl, namespace, "signed-images").get("violating") == 1,
        )

        # Trusted again, then the signature is removed from the registry.
        kubectl(
            "-n",
            namespace,
            "patch",
            "modelsecuritypolicy",
            "signed-images",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"images": {"signers": signers}}}),
        )
        wait_for(
            "the audit passes again", lambda: [r["result"] for r in report_results()] == ["pass"]
        )
        signature_tag = digest.replace(":", "-") + ".sig"
        manifests = f"http://{registry.host}/v2/ml/model/manifests"
        accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
        lookup = urllib.request.Request(f"{manifests}/{signature_tag}", headers=accept)  # noqa: S310 - our loopback registry
        with urllib.request.urlopen(lookup, timeout=5) as answer:  # noqa: S310
            signature_digest = answer.headers["Docker-Content-Digest"]
        # This registry keeps tags and digests apart: remove both.
        for reference in (signature_tag, signature_digest):
            removal = urllib.request.Request(f"{manifests}/{reference}", method="DELETE")  # noqa: S310
            urllib.request.urlopen(removal, timeout=5).close()  # noqa: S310
        removed = wait_for(
            "the audit reports the removed signature once the cache entry expired",
            lambda: [r for r in report_results() if r["result"] == "warn"],
        )
        assert removed[0]["rule"] == "ImageUnsigned", removed
    finally:
        registry.stop()
