"""The API server the suite runs against behaves like a real cluster's.

These guard the harness itself (and the way build-tools.sh builds the
binaries): a broken OpenAPI document, a wrong version string or a missing
controller would otherwise show up as confusing failures in later tests.
"""

from __future__ import annotations

import json
import re
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client

from e2e.clients import Cluster, Kubectl
from e2e.toolcache import pinned_kubernetes_version

WAIT_SECONDS = 60.0


def get_json(kubectl: Kubectl, path: str) -> Any:
    """GET a raw API path with the kubeconfig's credentials, parsed as JSON.
    kubectl, not the Python client: it handles every kubeconfig auth method."""
    return json.loads(kubectl("get", "--raw", path).stdout)


def status_without_credentials(cluster: Cluster, path: str, token: str | None) -> int:
    """The HTTP status the API server answers a request that carries only TOKEN
    (or nothing) and none of the kubeconfig's credentials."""
    configuration = cluster.api_client.configuration
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if not configuration.verify_ssl:  # the kubeconfig says insecure-skip-tls-verify
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(configuration.host + path)  # noqa: S310 - the test cluster
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return refused.code


def owners_of(metadata: client.V1ObjectMeta | None) -> list[client.V1OwnerReference]:
    return list(metadata.owner_references or []) if metadata else []


def test_openapi_v2_is_a_valid_swagger_document(kubectl: Kubectl) -> None:
    document = get_json(kubectl, "/openapi/v2")
    # A kube-apiserver built with Go 1.27's encoding/json/v2 emits the embedded
    # vendor-extension struct as an "Extensions" property, and kubectl refuses
    # the whole document.
    assert "Extensions" not in document
    assert document["swagger"] == "2.0"
    assert "io.k8s.api.apps.v1.Deployment" in document["definitions"]
    assert "/apis/apps/v1/namespaces/{namespace}/deployments" in document["paths"]


def test_openapi_v3_serves_group_documents(kubectl: Kubectl) -> None:
    index = get_json(kubectl, "/openapi/v3")
    apps = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    document = get_json(kubectl, apps)
    assert document["openapi"].startswith("3.")
    assert "Extensions" not in document
    assert "io.k8s.api.apps.v1.Deployment" in document["components"]["schemas"]


def test_kubectl_explain_reads_the_openapi_schema(kubectl: Kubectl) -> None:
    explained = kubectl("explain", "deployment.spec.replicas").stdout
    assert "FIELD: replicas <integer>" in explained
    assert "DESCRIPTION:" in explained


def test_kubectl_version_shows_the_real_release(cluster: Cluster, kubectl: Kubectl) -> None:
    versions = json.loads(kubectl("version", "--output=json").stdout)
    server_version = versions["serverVersion"]["gitVersion"]
    assert re.fullmatch(r"v1\.\d+\.\d+.*", server_version), server_version
    if cluster.started_locally:
        # The binaries were built with -ldflags -X; without them both would
        # read v0.0.0-master.
        pinned = pinned_kubernetes_version()
        assert pinned is not None
        assert server_version == pinned
        assert versions["clientVersion"]["gitVersion"] == pinned
        assert versions["serverVersion"]["major"] == "1"
        assert versions["serverVersion"]["minor"] == pinned.split(".")[1]


def test_deployment_creates_replica_set_and_pending_pods(cluster: Cluster, namespace: str) -> None:
    apps = client.AppsV1Api(cluster.api_client)
    core = client.CoreV1Api(cluster.api_client)
    labels = {"app": "model-server"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="model-server"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[
                            # Never pulled: the local control plane has no nodes.
                            client.V1Container(name="server", image="registry.invalid/server:1")
                        ]
                    ),
                ),
            ),
        ),
    )

    deadline = time.monotonic() + WAIT_SECONDS
    pods: list[client.V1Pod] = []
    replica_sets: list[client.V1ReplicaSet] = []
    while time.monotonic() < deadline:
        replica_sets = apps.list_namespaced_replica_set(namespace).items
        pods = core.list_namespaced_pod(namespace).items
        if len(replica_sets) == 1 and len(pods) == 2:
            break
        time.sleep(0.5)
    assert len(replica_sets) == 1, "the deployment controller made no ReplicaSet"
    replica_set_owners = owners_of(replica_sets[0].metadata)
    assert [owner.kind for owner in replica_set_owners] == ["Deployment"]
    assert len(pods) == 2, "the replicaset controller did not create both pods"
    replica_set_name = replica_sets[0].metadata.name if replica_sets[0].metadata else None
    for pod in pods:
        assert [owner.name for owner in owners_of(pod.metadata)] == [replica_set_name]
        if cluster.started_locally:
            # No nodes, so no scheduling: the pods stay Pending.
            assert pod.status is not None
            assert pod.status.phase == "Pending"


def test_requests_without_valid_credentials_are_refused(cluster: Cluster) -> None:
    path = "/api/v1/namespaces/kube-system/secrets"
    assert status_without_credentials(cluster, path, token="not-a-real-token") == 401
    # Anonymous requests: 401 where anonymous auth is off (the local control
    # plane), 403 where it is on but RBAC grants system:anonymous nothing.
    assert status_without_credentials(cluster, path, token=None) in {401, 403}


def test_rbac_denies_a_service_account_until_a_role_grants_access(
    cluster: Cluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api_client)
    rbac = client.RbacAuthorizationV1Api(cluster.api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    token_request = core.create_namespaced_service_account_token(
        "reader",
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    )
    assert token_request.status is not None
    token = token_request.status.token
    pods_path = f"/api/v1/namespaces/{namespace}/pods"
    assert status_without_credentials(cluster, pods_path, token) == 403

    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader-reads-pods"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
            ],
        ),
    )
    # The authorizer reads roles from an informer cache: allow it a moment.
    deadline = time.monotonic() + WAIT_SECONDS
    while status_without_credentials(cluster, pods_path, token) != 200:
        if time.monotonic() > deadline:
            pytest.fail("the RoleBinding never took effect")
        time.sleep(0.2)
    secrets_path = f"/api/v1/namespaces/{namespace}/secrets"
    assert status_without_credentials(cluster, secrets_path, token) == 403
