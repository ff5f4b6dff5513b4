"""``--s3-endpoint`` on the real API server, with KServe's real controller and pod mutator.

The webhook runs with the S3 endpoint the operator fetches ModelArtifacts from. KServe
takes the server of each InferenceService's pods from its ServiceAccount's S3 Secret
(``serving.kserve.io/s3-endpoint``, pkg/credentials/s3) and writes it as the storage
initializer's ``AWS_ENDPOINT_URL``: the pod is admitted when that is the configured
server, refused when it is another, and refused when there is none (AWS S3).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from e2e.clients import Cluster, Kubectl
from e2e.kserve import KServe, kserve
from e2e.kserve_objects import apply_policy, failed_creates, wait_for_owned
from e2e.kservecorpuscluster import _as_kserve_labels_it, _prepare, in_namespace
from e2e.webhooks import DENIED, Images, WebhookProcess, images, running_webhook, wait_for
from tests.support import kservecorpus as corpus

__all__ = ["images", "kserve"]  # module-scoped fixtures, shared by name

#: The operator's and the webhook's --s3-endpoint (a Service by its full name).
HOST = "minio.models-store.svc.cluster.local"
CONFIGURED = f"http://{HOST}:9000"


@pytest.fixture(scope="module")
def webhook(
    cluster: Cluster,
    kubectl: Kubectl,
    modelshield_crds: list[dict[str, Any]],
    images: Images,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebhookProcess]:
    """The admission server, told where ModelArtifacts are fetched from."""
    with running_webhook(
        cluster, kubectl, images, tmp_path_factory, f"--s3-endpoint={CONFIGURED}/"
    ) as process:
        yield process


def _credentials(name: str, endpoint: str | None) -> list[dict[str, Any]]:
    """A ServiceAccount with KServe's S3 credentials naming endpoint (host:port, plain
    HTTP), or with none."""
    account: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name},
    }
    if endpoint is None:
        return [account]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"{name}-s3",
            "annotations": {
                "serving.kserve.io/s3-endpoint": endpoint,
                "serving.kserve.io/s3-usehttps": "0",
            },
        },
        "stringData": {"AWS_ACCESS_KEY_ID": "e2e", "AWS_SECRET_ACCESS_KEY": "e2e"},
    }
    account["secrets"] = [{"name": f"{name}-s3"}]
    return [secret, account]


def _serve(kubectl: Kubectl, namespace: str, images: Images, account: str) -> str:
    """The compliant InferenceService (the verified URI) under the account, admitted;
    the name of the ReplicaSet KServe makes for its predictor."""
    service = json.loads(_as_kserve_labels_it(in_namespace(namespace, images, corpus.COMPLIANT[0])))
    service["metadata"]["name"] = account
    service["spec"]["predictor"]["serviceAccountName"] = account
    kubectl("create", "-f", "-", input_text=json.dumps(service))
    replica_set = wait_for_owned(
        kubectl, namespace, "replicasets", "Deployment", f"{account}-predictor"
    )
    return str(replica_set["metadata"]["name"])


def _setup(
    kubectl: Kubectl, namespace: str, images: Images, account: str, endpoint: str | None
) -> None:
    _prepare(kubectl, namespace, images)
    for body in _credentials(account, endpoint):
        kubectl("apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(body))
    apply_policy(kubectl, namespace, images)


def test_a_pod_downloading_from_the_configured_server_is_admitted(
    webhook: WebhookProcess, kserve: KServe, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    # Written as an administrator might: upper case, the port KServe keeps as given.
    _setup(kubectl, namespace, images, "models-here", f"{HOST.upper()}:9000")
    replica_set = _serve(kubectl, namespace, images, "models-here")
    pod = wait_for_owned(kubectl, namespace, "pods", "ReplicaSet", replica_set)
    (initializer,) = pod["spec"]["initContainers"]
    env = {e["name"]: e.get("value") for e in initializer["env"]}
    # KServe's own writing of the server: what admission compared.
    assert env["AWS_ENDPOINT_URL"] == f"http://{HOST.upper()}:9000"
    assert initializer["args"][0] == corpus.VERIFIED_URI
    assert failed_creates(kubectl, namespace, replica_set) == []


_ELSEWHERE = f"which is not the S3 endpoint ModelArtifacts are fetched from, '{CONFIGURED}'"


@pytest.mark.parametrize(
    ("endpoint", "said"),
    [
        (
            f"{HOST}:9001",
            f"downloads s3:// models from 'http://{HOST}:9001' (AWS_ENDPOINT_URL; "
            f"KServe sets it from the S3 credentials of the pod's ServiceAccount",
        ),
        (f"evil.{HOST}:9000", f"downloads s3:// models from 'http://evil.{HOST}:9000'"),
        (None, f"boto3 downloads s3:// models from AWS S3, not from '{CONFIGURED}'"),
    ],
    ids=["other-port", "other-host", "no-server"],
)
def test_a_pod_downloading_from_another_server_is_refused(
    webhook: WebhookProcess,
    kserve: KServe,
    kubectl: Kubectl,
    namespace: str,
    images: Images,
    endpoint: str | None,
    said: str,
) -> None:
    """The InferenceService is admitted (its server comes from a Secret, which admission
    does not read); the pod KServe makes shows the server, and is refused at its path."""
    _setup(kubectl, namespace, images, "models-elsewhere", endpoint)
    replica_set = _serve(kubectl, namespace, images, "models-elsewhere")
    messages = wait_for(
        "the pod reading the model from another S3 server to be refused",
        lambda: failed_creates(kubectl, namespace, replica_set),
    )
    assert DENIED in messages[0]
    assert said in messages[0], messages[0]
    if endpoint is not None:
        assert _ELSEWHERE in messages[0], messages[0]
    assert "] spec.initContainers[0].env" in messages[0], messages[0]
