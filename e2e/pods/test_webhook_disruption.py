"""The fail-closed webhook on a real node while its pods are disturbed.

A stream of creates runs through the webhook while `helm upgrade` rolls its pods and while
one pod is evicted (as a node drain would): none may be refused. When no replica answers,
admission stays closed: a governed create is refused and not stored, and `helm test`
fails; once the replicas are back, both pass again.

The creates go to a namespace holding a ModelSecurityPolicy: the operator labels namespaces
no policy could govern `modelshield.dev/ungoverned`, and the webhooks skip those, so a
stream there would pass with no webhook at all.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from e2e.clients import close_api_client, new_api_client
from e2e.pods import admissionstream
from e2e.pods.admissionstream import AdmissionStream
from e2e.pods.harness import HELM_INSTALL_TIMEOUT, NodeCluster, Release, helm, helm_run
from e2e.pods.workloads import apply, get_json
from tests.support import chartrendering as rendering

ADMITTED_WITHIN_SECONDS = 60.0
ROLLED_WITHIN_SECONDS = 300.0
UNGOVERNED_LABEL = "modelshield.dev/ungoverned"
#: The stream must have run through the disturbance, not only around it.
MIN_CREATES_DURING = 10


@pytest.fixture
def governed_namespace(node_cluster: NodeCluster, installed_chart: Release) -> Iterator[str]:
    """A namespace the webhook governs: it holds a policy (selecting none of the stream's
    Deployments, which are thus admitted when the webhook answers)."""
    name = "e2e-governed-" + uuid.uuid4().hex[:6]
    node_cluster.kubectl("create", "namespace", name)
    policy = {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "governs-this-namespace"},
        "spec": {
            "selector": {"matchLabels": {"e2e": "selects-nothing"}},
            "runtime": {"runAsNonRoot": True},
        },
    }
    apply(node_cluster.kubectl, name, policy)
    wait_until_admitted(node_cluster, name)
    assert_governed(node_cluster, name)
    yield name
    node_cluster.kubectl("delete", "namespace", name, "--wait=false")


def assert_governed(node_cluster: NodeCluster, namespace: str) -> None:
    labels = get_json(node_cluster.kubectl, "namespace", namespace)["metadata"].get("labels") or {}
    assert UNGOVERNED_LABEL not in labels, labels


def webhook_pods(
    node_cluster: NodeCluster, release: Release, *, terminating: bool = False
) -> list[str]:
    """Names of the webhook's pods; those being deleted (draining) only if `terminating`."""
    pods = get_json(
        node_cluster.kubectl,
        "-n",
        release.namespace,
        "pods",
        "-l",
        "app.kubernetes.io/component=webhook",
    )["items"]
    return sorted(
        p["metadata"]["name"]
        for p in pods
        if terminating or not p["metadata"].get("deletionTimestamp")
    )


def wait_until_admitted(node_cluster: NodeCluster, namespace: str) -> None:
    """Until a governed create in `namespace` is admitted (the webhook knows the namespace
    and answers)."""
    api_client = new_api_client(node_cluster.control_plane.kubeconfig_path)
    apps = client.AppsV1Api(api_client)
    deadline = time.monotonic() + ADMITTED_WITHIN_SECONDS
    try:
        while True:
            name = "admitted-" + uuid.uuid4().hex[:6]
            refused = admissionstream.create(apps, namespace, name)
            if refused is None:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"no create admitted in {namespace}: {refused}", pytrace=False)
            time.sleep(1)
    finally:
        close_api_client(api_client)


def wait_ready(node_cluster: NodeCluster, release: Release, replicas: int) -> None:
    """Until the webhook runs `replicas` Ready pods, none of them terminating (`kubectl
    rollout status` returns at once after an eviction: the rollout itself is complete)."""
    deadline = time.monotonic() + ROLLED_WITHIN_SECONDS
    while True:
        pods = get_json(
            node_cluster.kubectl, "-n", release.namespace, "pods", "-l",
            "app.kubernetes.io/component=webhook",
        )["items"]  # fmt: skip
        ready = [
            p
            for p in pods
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions") or []
            )
        ]
        if len(pods) == len(ready) == replicas:
            return
        if time.monotonic() > deadline:
            names = [(p["metadata"]["name"], p.get("status", {}).get("phase")) for p in pods]
            pytest.fail(f"webhook pods not {replicas} Ready: {names}", pytrace=False)
        time.sleep(1)


def _assert_none_lost(
    node_cluster: NodeCluster, stream: AdmissionStream, namespace: str, since: float
) -> None:
    during = [answer for answer in stream.answers if answer.at >= since]
    assert len(during) >= MIN_CREATES_DURING, f"only {len(during)} creates during the disturbance"
    assert not stream.refused, [f"{a.name}: {a.error}" for a in stream.refused][:5]
    stored = get_json(
        node_cluster.kubectl, "-n", namespace, "deployments", "-l", "stream=admission"
    )
    names = {d["metadata"]["name"] for d in stored["items"]}
    assert {name for name in names if name.startswith("stream-")} == stream.admitted_names()
    assert_governed(node_cluster, namespace)


def test_helm_upgrade_rolls_the_webhook_without_refusing_a_create(
    node_cluster: NodeCluster, installed_chart: Release, governed_namespace: str
) -> None:
    before = webhook_pods(node_cluster, installed_chart)
    with AdmissionStream(node_cluster.control_plane.kubeconfig_path, governed_namespace) as stream:
        time.sleep(1)
        started = time.monotonic()
        # A changed webhook value rolls its pods (maxUnavailable 0, one surge pod).
        helm(
            node_cluster,
            installed_chart.helm_home,
            "upgrade",
            installed_chart.name,
            str(rendering.CHART),
            "--namespace",
            installed_chart.namespace,
            "--values",
            str(installed_chart.values),
            # --set-string: helm reads 8 hex digits that happen to be all decimal (about
            # 1 draw in 40: CI's first default run) as a number, which the schema refuses.
            "--set-string",
            f"webhook.podAnnotations.rolled={uuid.uuid4().hex[:8]}",
            "--wait",
            "--timeout",
            HELM_INSTALL_TIMEOUT,
        )
        wait_ready(node_cluster, installed_chart, 2)
        time.sleep(2)
    after = webhook_pods(node_cluster, installed_chart)
    assert len(after) == 2, after
    assert not set(before) & set(after), (before, after)
    _assert_none_lost(node_cluster, stream, governed_namespace, started)


def test_an_evicted_webhook_pod_loses_no_create_and_the_pdb_keeps_the_other(
    node_cluster: NodeCluster, installed_chart: Release, governed_namespace: str
) -> None:
    pods = webhook_pods(node_cluster, installed_chart)
    assert len(pods) == 2, pods
    api_client = new_api_client(node_cluster.control_plane.kubeconfig_path)
    core = client.CoreV1Api(api_client)

    def evict(name: str) -> None:
        core.create_namespaced_pod_eviction(
            name,
            installed_chart.namespace,
            client.V1Eviction(
                metadata=client.V1ObjectMeta(name=name, namespace=installed_chart.namespace)
            ),
        )

    try:
        with AdmissionStream(
            node_cluster.control_plane.kubeconfig_path, governed_namespace
        ) as stream:
            time.sleep(1)
            started = time.monotonic()
            evict(pods[0])
            # The PodDisruptionBudget (minAvailable 1) refuses to evict the other one too.
            with pytest.raises(client.ApiException) as refused:
                evict(pods[1])
            assert refused.value.status == 429, refused.value.body
            assert "disruption budget" in str(refused.value.body), refused.value.body
            wait_ready(node_cluster, installed_chart, 2)
            time.sleep(2)
    finally:
        close_api_client(api_client)
    after = webhook_pods(node_cluster, installed_chart)
    assert pods[0] not in after
    assert pods[1] in after
    _assert_none_lost(node_cluster, stream, governed_namespace, started)


def test_admission_stays_closed_while_no_webhook_replica_answers(
    node_cluster: NodeCluster, installed_chart: Release, governed_namespace: str
) -> None:
    kubectl = node_cluster.kubectl
    deployment = f"deployment/{installed_chart.name}-webhook"
    kubectl("-n", installed_chart.namespace, "scale", deployment, "--replicas=0")
    try:
        # Gone, not draining: a terminating pod keeps answering for its shutdown delay.
        deadline = time.monotonic() + ADMITTED_WITHIN_SECONDS
        while webhook_pods(node_cluster, installed_chart, terminating=True) or _endpoints(
            node_cluster, installed_chart
        ):
            if time.monotonic() > deadline:
                pytest.fail("the webhook's pods did not go away", pytrace=False)
            time.sleep(1)
        api_client = new_api_client(node_cluster.control_plane.kubeconfig_path)
        try:
            refused = admissionstream.create(
                client.AppsV1Api(api_client), governed_namespace, "closed"
            )
        finally:
            close_api_client(api_client)
        assert refused is not None, "a governed create was admitted with no webhook running"
        assert "failed calling webhook" in refused, refused
        missing = kubectl("-n", governed_namespace, "get", "deployment", "closed", check=False)
        assert missing.returncode != 0
        assert "NotFound" in missing.stderr, missing.stderr
        # The chart's own test fails too, saying where it could not connect.
        tested = _helm_test(node_cluster, installed_chart)
        assert tested.returncode != 0, tested.stdout
        cluster_ip = get_json(
            kubectl, "-n", installed_chart.namespace, "service", f"{installed_chart.name}-webhook"
        )["spec"]["clusterIP"]
        assert f"at {cluster_ip}:443" in tested.stdout, tested.stdout
        # Refused or timed out, depending on how the Service proxy drops it.
        assert "in create_connection" in tested.stdout, tested.stdout
    finally:
        kubectl("-n", installed_chart.namespace, "scale", deployment, "--replicas=2")
    wait_ready(node_cluster, installed_chart, 2)
    wait_until_admitted(node_cluster, governed_namespace)
    # And `helm test` passes again (its new pod replaces the failed one, then goes).
    helm(node_cluster, installed_chart.helm_home, "test", installed_chart.name,
         "--namespace", installed_chart.namespace, "--timeout", "120s")  # fmt: skip


def _endpoints(node_cluster: NodeCluster, release: Release) -> list[str]:
    slices = get_json(
        node_cluster.kubectl,
        "-n",
        release.namespace,
        "endpointslices",
        "-l",
        f"kubernetes.io/service-name={release.name}-webhook",
    )["items"]
    return [
        address
        for endpoint_slice in slices
        for endpoint in endpoint_slice.get("endpoints") or []
        for address in endpoint.get("addresses") or []
    ]


def _helm_test(node_cluster: NodeCluster, release: Release) -> subprocess.CompletedProcess[str]:
    """`helm test` with the test pod's log (there is one to read only when it failed: a
    passed test pod is deleted at once)."""
    return helm_run(
        node_cluster, release.helm_home, "test", release.name, "--namespace", release.namespace,
        "--logs", "--timeout", "120s",
    )  # fmt: skip
