"""`helm uninstall` on the node leaves nothing of modelshield behind but what the docs say
stays (docs/operations.md, Uninstall): the CRDs (`crds.keep`, with every policy and
ModelArtifact) and the ClusterKopfPeering. Above all no fail-closed webhook configuration
outlives its server: right after the uninstall, a governed create is admitted.

Runs last (it ends the session's release).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import yaml

from e2e.pods.harness import NodeCluster, Release, helm
from e2e.pods.workloads import get_json

PODS_GONE_WITHIN_SECONDS = 60.0
#: What docs/operations.md says stays after `helm uninstall`, besides the kept CRDs.
KEPT_HOOK_KINDS = {"ClusterKopfPeering"}


def _objects(rendered: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered) if isinstance(d, dict) and d.get("kind")]


def _exists(node_cluster: NodeCluster, document: dict[str, Any], default_namespace: str) -> bool:
    group = str(document["apiVersion"]).rpartition("/")[0]
    resource = f"{document['kind']}.{group}" if group else str(document["kind"])
    # kubectl ignores the namespace of cluster-scoped kinds.
    namespace = document["metadata"].get("namespace") or default_namespace
    found = node_cluster.kubectl(
        "get", resource, document["metadata"]["name"], "-n", namespace, "--ignore-not-found",
        "-o", "name", check=False,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    return bool(found.stdout.strip())


@pytest.mark.ends_release
def test_helm_uninstall_leaves_only_what_the_docs_keep(
    node_cluster: NodeCluster, installed_chart: Release
) -> None:
    kubectl = node_cluster.kubectl
    release = installed_chart
    common = ("--namespace", release.namespace)
    manifest = _objects(helm(node_cluster, release.helm_home, "get", "manifest", release.name,
                             *common))  # fmt: skip
    hooks = _objects(helm(node_cluster, release.helm_home, "get", "hooks", release.name, *common))
    assert manifest
    assert any(d["kind"] == "ValidatingWebhookConfiguration" for d in manifest)

    helm(node_cluster, release.helm_home, "uninstall", release.name, *common, "--wait",
         "--timeout", "300s")  # fmt: skip

    kept = [
        d
        for d in manifest
        if (d["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep"
    ]
    assert {d["kind"] for d in kept} == {"CustomResourceDefinition"}, [
        (d["kind"], d["metadata"]["name"]) for d in kept
    ]
    left = [
        (d["kind"], d["metadata"]["name"])
        for d in manifest
        if d not in kept and _exists(node_cluster, d, release.namespace)
    ]
    assert not left, left
    missing = [
        d["metadata"]["name"] for d in kept if not _exists(node_cluster, d, release.namespace)
    ]
    assert not missing, missing
    left_hooks = [
        (d["kind"], d["metadata"]["name"])
        for d in hooks
        if _exists(node_cluster, d, release.namespace)
    ]
    assert {kind for kind, _ in left_hooks} <= KEPT_HOOK_KINDS, left_hooks
    # `--wait` waits for the objects helm deletes; their pods go after them.
    deadline = time.monotonic() + PODS_GONE_WITHIN_SECONDS
    while pods := get_json(kubectl, "-n", release.namespace, "pods")["items"]:
        if time.monotonic() > deadline:
            pytest.fail(f"pods left: {[p['metadata']['name'] for p in pods]}", pytrace=False)
        time.sleep(1)
    configurations = kubectl(
        "get", "validatingwebhookconfigurations,mutatingwebhookconfigurations", "-o", "name"
    ).stdout.split()
    assert not [c for c in configurations if "modelshield" in c], configurations

    # Nothing fail-closed is left: a create in a namespace the webhook governed is admitted.
    namespace = "e2e-after-" + uuid.uuid4().hex[:6]
    kubectl("create", "namespace", namespace)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "after-uninstall"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "after"}},
            "template": {
                "metadata": {"labels": {"app": "after"}},
                "spec": {"containers": [{"name": "c", "image": "registry.invalid/m:1"}]},
            },
        },
    }
    kubectl("-n", namespace, "create", "-f", "-", input_text=yaml.safe_dump(deployment))
    kubectl("delete", "namespace", namespace, "--wait=false")
