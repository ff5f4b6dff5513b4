"""The Helm chart against a real API server: every object accepted, the webhook
configurations live and fail-closed where they should be, and nothing left behind.

Pods cannot run on the local control plane (no kubelet), so this tests objects, not
pods: server-side dry-run of every documented combination, then a real `helm install`
(CRDs off: the session's `modelshield_crds` fixture already owns them), `helm upgrade`
(the generated CA survives), the pre-delete hook's script run against the cluster the
way its Job would, and `helm uninstall`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from cryptography import x509

from e2e.clients import Cluster, Kubectl
from modelshield.controllers import certificates, settings, writing
from tests.support import chartrendering as rendering

# Kinds whose CRDs a bare control plane does not have (cert-manager, Prometheus
# Operator): checked structurally by tests/chart, not sent to the server here.
THIRD_PARTY_GROUPS = ("cert-manager.io/", "monitoring.coreos.com/")
CONFIGURATION_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
IGNORE_LABEL = "modelshield.dev/ignore"
PEERING_CRD = "clusterkopfpeerings.kopf.dev"


class Helm:
    """helm against the test cluster, with its own cache and config directories."""

    def __init__(self, cluster: Cluster, home: pathlib.Path) -> None:
        self.kubeconfig = cluster.kubeconfig_path
        self.environment = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        self.environment.pop("KUBECONFIG", None)

    def __call__(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(rendering.helm_path()), "--kubeconfig", str(self.kubeconfig), *arguments]
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=rendering.HELM_TIMEOUT_SECONDS,
            env=self.environment,
            check=False,
        )
        if check and completed.returncode != 0:
            pytest.fail(
                f"`helm {' '.join(arguments)}` exited with {completed.returncode}:\n"
                f"{completed.stderr}{completed.stdout}",
                pytrace=False,
            )
        return completed


@pytest.fixture
def helm(cluster: Cluster, tmp_path: pathlib.Path) -> Helm:
    return Helm(cluster, tmp_path / "helm")


@pytest.fixture(scope="module")
def kopf_peering_crd(kubectl: Kubectl) -> dict[str, Any]:
    """The chart's kopf peering CRD, installed for real and left installed (like the
    modelshield CRDs): a dry run cannot check a ClusterKopfPeering against a CRD that is
    itself only dry-run, and `helm install` creates the peering object only when the API
    server serves the kind. The e2e operators run --standalone, so it changes nothing else."""
    crd = rendering.one(rendering.rendered("default"), "CustomResourceDefinition", PEERING_CRD)
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=modelshield-e2e",
        "--filename=-",
        input_text=yaml.safe_dump(crd),
    )
    kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{PEERING_CRD}")
    return crd


@pytest.fixture
def other_namespace(kubectl: Kubectl) -> Iterator[str]:
    """A second namespace, where the release's webhooks do apply."""
    created = kubectl(
        "create",
        "--output=jsonpath={.metadata.name}",
        "--filename=-",
        input_text=yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"generateName": "e2e-workloads-"},
            }
        ),
    )
    name = created.stdout.strip()
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def _release_name(namespace: str) -> str:
    # Cluster-scoped names (roles, webhook configurations) derive from the release:
    # one per test namespace, so runs never collide.
    return "modelshield-" + namespace.removeprefix("e2e-")


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "server", "image": "registry.invalid/m:1"}]},
            },
        },
    }


def _create_deployment(kubectl: Kubectl, namespace: str, name: str) -> str | None:
    """Create a Deployment (server-side dry run, so admission runs and nothing is
    stored); the API server's refusal, or None when it was admitted."""
    completed = kubectl(
        "create",
        "--dry-run=server",
        "--namespace",
        namespace,
        "--filename=-",
        input_text=yaml.safe_dump(_deployment(name)),
        check=False,
    )
    return None if completed.returncode == 0 else completed.stderr


def _get(kubectl: Kubectl, *arguments: str) -> dict[str, Any]:
    document = json.loads(kubectl("get", "--output=json", *arguments).stdout)
    assert isinstance(document, dict)
    return document


@pytest.mark.parametrize("combination", sorted(rendering.COMBINATIONS))
def test_every_rendered_object_is_accepted_by_the_api_server(
    combination: str, namespace: str, kubectl: Kubectl, kopf_peering_crd: dict[str, Any]
) -> None:
    manifests = rendering.parse(
        rendering.render_text(
            rendering.COMBINATIONS[combination],
            release=_release_name(namespace),
            namespace=namespace,
        )
    )
    sent = [
        manifest
        for manifest in manifests
        if not manifest["apiVersion"].startswith(THIRD_PARTY_GROUPS)
    ]
    skipped = {manifest["kind"] for manifest in manifests} - {m["kind"] for m in sent}
    assert skipped <= {"Certificate", "Issuer", "ServiceMonitor"}, skipped
    # Server-side apply: the CRDs outgrow client-side apply's annotation.
    applied = kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "--field-manager=modelshield-e2e-chart",
        "--namespace",
        namespace,
        "--filename=-",
        input_text=yaml.safe_dump_all(sent),
    )
    lines = [line for line in applied.stdout.splitlines() if line.strip()]
    assert len(lines) == len(sent), applied.stdout


def test_install_upgrade_uninstall_leaves_nothing_fail_closed(
    cluster: Cluster,
    helm: Helm,
    namespace: str,
    other_namespace: str,
    kubectl: Kubectl,
    modelshield_crds: list[dict[str, Any]],
    kopf_peering_crd: dict[str, Any],
) -> None:
    release = _release_name(namespace)
    secret_name = f"{release}-webhook-tls"
    # The chart's CRDs are already installed (and owned) by the session fixture.
    install = ("--namespace", namespace, "--set", "crds.install=false")
    kubectl("delete", "clusterkopfpeering", settings.PEERING_NAME, "--ignore-not-found")
    notes = helm("install", release, str(rendering.CHART), *install).stdout
    try:
        # The post-install hook made the peering object the operator's instances share
        # (the kind is served: kopf_peering_crd), under the name the operator uses.
        peering = _get(kubectl, "clusterkopfpeering", settings.PEERING_NAME)
        assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
        # NOTES.txt tells the user it fails closed and how to break glass, with real names.
        assert "FAIL-CLOSED" in notes
        assert f"mutatingwebhookconfiguration {release}" in notes, notes
        assert f"rollout status deployment/{release}-webhook" in notes, notes
        _check_installed(helm, kubectl, release, namespace, other_namespace)
        before = _get(kubectl, "secret", secret_name, "--namespace", namespace)["data"]
        helm("upgrade", release, str(rendering.CHART), *install, "--set", "webhook.logLevel=debug")
        # Replaced by the post-upgrade hook, not lost.
        _get(kubectl, "clusterkopfpeering", settings.PEERING_NAME)
        after = _get(kubectl, "secret", secret_name, "--namespace", namespace)["data"]
        # An upgrade keeps the CA and certificate the pods and the caBundle already use.
        assert after == before
        validating = _get(kubectl, "validatingwebhookconfiguration", release)
        assert validating["webhooks"][0]["clientConfig"]["caBundle"] == before["ca.crt"]

        _run_pre_delete_hook_script(cluster, helm, release, namespace)
        for kind in CONFIGURATION_KINDS:
            assert kubectl("get", kind.lower(), release, check=False).returncode != 0, kind
        # Even before the rest of the release goes, workloads are admitted again.
        assert _create_deployment(kubectl, other_namespace, "after-hook") is None
    finally:
        # --no-hooks: the hook's Job would wait forever for a kubelet; its script ran above.
        helm("uninstall", release, "--namespace", namespace, "--no-hooks", check=False)

    assert helm("status", release, "--namespace", namespace, check=False).returncode != 0
    leftovers = kubectl(
        "get",
        "clusterroles,clusterrolebindings,validatingwebhookconfigurations,"
        "mutatingwebhookconfigurations",
        "--selector",
        f"app.kubernetes.io/instance={release}",
        "--output=name",
    )
    assert leftovers.stdout.strip() == ""
    assert _create_deployment(kubectl, other_namespace, "after-uninstall") is None
    # The CRDs (and with them every policy) stay, and so does the peering object.
    for crd in modelshield_crds:
        kubectl("get", "customresourcedefinition", crd["metadata"]["name"])
    kubectl("get", "clusterkopfpeering", settings.PEERING_NAME)


def _check_installed(
    helm: Helm, kubectl: Kubectl, release: str, namespace: str, other_namespace: str
) -> None:
    objects = rendering.parse(helm("get", "manifest", release, "--namespace", namespace).stdout)
    assert len(objects) > 10
    for obj in objects:
        group = obj["apiVersion"].rpartition("/")[0]
        resource = f"{obj['kind']}.{group}" if group else obj["kind"]
        where = ["--namespace", namespace] if obj["metadata"].get("namespace") else []
        kubectl("get", resource, obj["metadata"]["name"], *where)

    service = _get(kubectl, "service", f"{release}-webhook", "--namespace", namespace)
    secret = _get(kubectl, "secret", f"{release}-webhook-tls", "--namespace", namespace)
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for kind in CONFIGURATION_KINDS:
        for webhook in _get(kubectl, kind.lower(), release)["webhooks"]:
            target = webhook["clientConfig"]["service"]
            assert (target["namespace"], target["name"]) == (namespace, service["metadata"]["name"])
            assert target["port"] in {port["port"] for port in service["spec"]["ports"]}
            assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
            assert webhook["failurePolicy"] == "Fail"

    # Fail closed, for real: no webhook pod can answer here, so a workload in a governed
    # namespace is refused ...
    refused = _eventually_refused(kubectl, other_namespace)
    assert "failed calling webhook" in refused, refused
    # ... but the release namespace and kube-system are never intercepted ...
    assert _create_deployment(kubectl, namespace, "in-release-namespace") is None
    assert _create_deployment(kubectl, "kube-system", "in-kube-system") is None
    # ... and a namespace can opt out.
    kubectl("label", "namespace", other_namespace, f"{IGNORE_LABEL}=true")
    try:
        _eventually_admitted(kubectl, other_namespace)
    finally:
        kubectl("label", "namespace", other_namespace, f"{IGNORE_LABEL}-")
    _eventually_refused(kubectl, other_namespace)


def _eventually_refused(kubectl: Kubectl, namespace: str) -> str:
    # The API server picks up new webhook configurations and namespace labels within
    # a moment (informers), not synchronously.
    deadline = time.monotonic() + 30
    while (error := _create_deployment(kubectl, namespace, "governed")) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"a Deployment in {namespace} is still admitted with no webhook running")
        time.sleep(0.5)
    return error


def _eventually_admitted(kubectl: Kubectl, namespace: str) -> None:
    deadline = time.monotonic() + 30
    while (error := _create_deployment(kubectl, namespace, "opted-out")) is not None:
        if time.monotonic() > deadline:
            pytest.fail(f"opt-out label ignored: {error}")
        time.sleep(0.5)


def _run_pre_delete_hook_script(cluster: Cluster, helm: Helm, release: str, namespace: str) -> None:
    """Run the pre-delete Job's own command and environment, here instead of in a pod."""
    hooks = rendering.parse(helm("get", "hooks", release, "--namespace", namespace).stdout)
    job = rendering.one(hooks, "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    environment = {variable["name"]: variable["value"] for variable in container["env"]}
    python = pathlib.Path(sys.executable)
    completed = subprocess.run(
        [str(python), *container["command"][1:]],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": os.environ.get("PATH", ""),
            "KUBECONFIG": str(cluster.kubeconfig_path),
            **environment,
        },
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert f"deleted ValidatingWebhookConfiguration {release}" in completed.stdout
    assert f"deleted MutatingWebhookConfiguration {release}" in completed.stdout


def test_operator_rotation_keeps_the_release_upgradable(
    cluster: Cluster,
    helm: Helm,
    namespace: str,
    kubectl: Kubectl,
    modelshield_crds: list[dict[str, Any]],
) -> None:
    """The chart makes the first certificate, the operator renews it later, and the next
    `helm upgrade` must neither fail nor put the old CA back."""
    release = _release_name(namespace)
    secret_name = f"{release}-webhook-tls"
    install = ("--namespace", namespace, "--set", "crds.install=false")
    helm("install", release, str(rendering.CHART), *install)
    try:
        chart_made = _get(kubectl, "secret", secret_name, "--namespace", namespace)["data"]
        manager = certificates.CertificateManager(
            writing.Kube(cluster.api_client),
            certificates.Target(
                namespace=namespace,
                service=f"{release}-webhook",
                secret=secret_name,
                webhook_configurations=(release,),
            ),
        )
        # The operator accepts the chart's certificate as it is ...
        asyncio.run(manager.ensure())
        assert _get(kubectl, "secret", secret_name, "--namespace", namespace)["data"] == chart_made
        # ... and renews it when it nears expiry, then syncs both caBundles.
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=364)
        asyncio.run(manager.ensure(now=later))
        rotated = _get(kubectl, "secret", secret_name, "--namespace", namespace)["data"]
        assert rotated["tls.crt"] != chart_made["tls.crt"]

        helm("upgrade", release, str(rendering.CHART), *install)
        after_upgrade = _get(kubectl, "secret", secret_name, "--namespace", namespace)["data"]
        assert after_upgrade == rotated
        for kind in CONFIGURATION_KINDS:
            for webhook in _get(kubectl, kind.lower(), release)["webhooks"]:
                assert webhook["clientConfig"]["caBundle"] == rotated["ca.crt"], kind
    finally:
        helm("uninstall", release, "--namespace", namespace, "--no-hooks", check=False)


def test_uninstall_runs_the_pre_delete_hook_before_anything_else(
    cluster: Cluster,
    helm: Helm,
    namespace: str,
    kubectl: Kubectl,
    modelshield_crds: list[dict[str, Any]],
) -> None:
    """`helm uninstall` with hooks. No kubelet runs the hook's pod here, so the test plays
    the kubelet: it runs the pod's command against the cluster, then reports the pod
    Succeeded; the Job controller completes the Job and helm carries on."""
    release = _release_name(namespace)
    helm(
        "install",
        release,
        str(rendering.CHART),
        "--namespace",
        namespace,
        "--set",
        "crds.install=false",
    )
    job_name = f"{release}-cleanup"
    uninstall = subprocess.Popen(
        [
            str(rendering.helm_path()),
            "--kubeconfig",
            str(cluster.kubeconfig_path),
            "uninstall",
            release,
            "--namespace",
            namespace,
            "--timeout=120s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=helm.environment,
    )
    try:
        pod = _wait_for_hook_pod(kubectl, namespace, job_name)
        # While the hook runs, nothing of the release has been deleted yet.
        kubectl("get", "deployment", f"{release}-webhook", "--namespace", namespace)
        spec = pod["spec"]
        assert spec["serviceAccountName"] == job_name
        _run_container_locally(cluster, spec["containers"][0], release)
        kubectl(
            "patch",
            "pod",
            pod["metadata"]["name"],
            "--namespace",
            namespace,
            "--subresource=status",
            "--type=merge",
            "--patch",
            json.dumps(_succeeded_status(spec["containers"][0]["name"])),
        )
        output, _ = uninstall.communicate(timeout=150)
        assert uninstall.returncode == 0, output
    finally:
        if uninstall.poll() is None:
            uninstall.kill()
            uninstall.wait()
        helm("uninstall", release, "--namespace", namespace, "--no-hooks", check=False)
    for kind in CONFIGURATION_KINDS:
        assert kubectl("get", kind.lower(), release, check=False).returncode != 0, kind
    # hook-succeeded: the hook's own Job, ServiceAccount and RBAC are gone too.
    for resource in ("clusterrole", "clusterrolebinding"):
        assert kubectl("get", resource, job_name, check=False).returncode != 0, resource
    assert (
        kubectl("get", "serviceaccount", job_name, "--namespace", namespace, check=False).returncode
        != 0
    )


def _wait_for_hook_pod(kubectl: Kubectl, namespace: str, job_name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pods = _get(kubectl, "pods", "--namespace", namespace, f"--selector=job-name={job_name}")
        if pods["items"]:
            pod: dict[str, Any] = pods["items"][0]
            return pod
        time.sleep(0.5)
    pytest.fail(f"helm uninstall created no pod for the pre-delete Job {job_name} within 60 s")


def _run_container_locally(cluster: Cluster, container: dict[str, Any], release: str) -> None:
    environment = {variable["name"]: variable["value"] for variable in container["env"]}
    assert container["command"][0] == "python"
    completed = subprocess.run(
        [sys.executable, *container["command"][1:]],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": os.environ.get("PATH", ""),
            "KUBECONFIG": str(cluster.kubeconfig_path),
            **environment,
        },
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert f"deleted ValidatingWebhookConfiguration {release}" in completed.stdout


def _succeeded_status(container_name: str) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": container_name,
                    "image": "modelshield",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "startedAt": now,
                            "finishedAt": now,
                        }
                    },
                }
            ],
        }
    }
