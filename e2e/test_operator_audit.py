"""The operator over time, against a real API server: killed and restarted mid-reconcile,
the background audit and its PolicyReports, webhook certificates, and RBAC on the server."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.clients import Cluster, Kubectl

# Fixtures are found by name in the module that uses them.
from e2e.operators import (
    NETWORK,
    OPERATOR_NAMESPACE,
    WEBHOOK_CONFIGURATION,
    OperatorProcess,
    apply,
    deployment,
    get_json,
    owned,
    owned_names,
    policy,
    policy_status,
    wait_for,
)
from modelshield.controllers import rbac
from modelshield.supplychain.images import registries
from tests.support import localtools


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
