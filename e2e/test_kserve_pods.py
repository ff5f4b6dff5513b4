"""The bypass corpus's InferenceServices turned into pods by KServe itself.

tests/kservecorpus.py writes down, by hand, the pods KServe makes of each trick; here
KServe's real controller and pod mutator (e2e/kserve.py) make them. Each trick is
created while no policy governs the namespace, so KServe makes its Deployment and the
first pod; then the policy arrives, and the InferenceService is refused (a server dry
run of a copy) and so is the pod its ReplicaSet makes after the first is deleted: the
pod check stands on its own, as if the InferenceService check had been bypassed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from e2e.clients import Kubectl
from e2e.kserve import KServe, kserve
from e2e.kserve_objects import (
    POLICY,
    apply_policy,
    failed_creates,
    wait_for_owned,
)
from e2e.kservecorpuscluster import _as_kserve_labels_it, _prepare, in_namespace
from e2e.webhooks import DENIED, Images, WebhookProcess, images, wait_for, webhook
from tests.support import kservecorpus as corpus

__all__ = ["images", "kserve", "webhook"]  # module-scoped fixtures, shared by name

#: KServe's own validator refuses these tricks, so no pod is ever made of them.
REFUSED_BY_KSERVE = {
    "workerSpec": "Multinode only supports 'pvc' and 'oci' Storage Protocol(s3)",
}
#: KServe v0.17 makes no storage initializer of these: its pods download nothing from
#: the trick (the InferenceService is still refused for it).
IGNORED_BY_KSERVE = (
    "internal-source-annotation-on-the-object",
    "internal-source-annotation-on-the-predictor",
)
#: KServe's defaulting webhook runs first: it turns `sklearn: {image}` into `model: {image}`.
PATH_AFTER_KSERVE_DEFAULTING = {"inline-sklearn-image": "spec.predictor.model.image"}
#: What the pod's refusal says, where the pod shows the trick differently than the
#: InferenceService: KServe's pod mutator turns the storage spec into environment.
AT_THE_POD = {
    "storage-endpoint-override": "STORAGE_OVERRIDE_CONFIG sends the storage initializer "
    "to endpoint_url 'http://evil:9000'",
    "storage-spec-default-secret": "of storage Secret 'storage-config' (STORAGE_CONFIG)",
    "storage-key-path-bucket-from-secret": "of storage Secret 'storage-config' (STORAGE_CONFIG)",
}
CASES = [
    pytest.param(case, id=case.name)
    for case in corpus.INFERENCE_SERVICES
    if case.name not in REFUSED_BY_KSERVE and case.name not in IGNORED_BY_KSERVE
]


def _component(case: corpus.Case) -> str:
    """The component whose pods carry the trick."""
    parts = case.path.split(".")
    if parts[0] == "spec" and parts[1] in ("predictor", "transformer", "explainer"):
        return parts[1]
    return "predictor"


def _body(namespace: str, images: Images, case: corpus.Case) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(
        _as_kserve_labels_it(in_namespace(namespace, images, case.body))
    )
    return body


def _first_pod(kubectl: Kubectl, namespace: str, images: Images, case: corpus.Case) -> Any:
    """The first pod KServe makes of the trick, created while no policy governs it."""
    _prepare(kubectl, namespace, images)
    body = _body(namespace, images, case)
    kubectl("create", "-f", "-", input_text=json.dumps(body))
    deployment = f"{body['metadata']['name']}-{_component(case)}"
    replica_set = wait_for_owned(kubectl, namespace, "replicasets", "Deployment", deployment)
    return wait_for_owned(kubectl, namespace, "pods", "ReplicaSet", replica_set["metadata"]["name"])


@pytest.mark.parametrize("case", CASES)
def test_the_pod_kserve_makes_of_each_trick_is_refused(
    webhook: WebhookProcess,
    kserve: KServe,
    kubectl: Kubectl,
    namespace: str,
    images: Images,
    case: corpus.Case,
) -> None:
    first = _first_pod(kubectl, namespace, images, case)
    replica_set = first["metadata"]["ownerReferences"][0]["name"]

    apply_policy(kubectl, namespace, images)
    body = _body(namespace, images, case)
    copy = {**body, "metadata": {**body["metadata"], "name": "again"}}
    result = kubectl(
        "create", "--dry-run=server", "-f", "-", input_text=json.dumps(copy), check=False
    )
    assert result.returncode != 0, f"the InferenceService of {case.name} was admitted"
    assert DENIED in result.stderr, result.stderr
    path = PATH_AFTER_KSERVE_DEFAULTING.get(case.name, case.path)
    assert f"] {path}: " in result.stderr, result.stderr

    kubectl("delete", "-n", namespace, f"pod/{first['metadata']['name']}", "--wait=false")
    messages = wait_for(
        f"the ReplicaSet's pod of {case.name} to be refused, like {first['spec']}",
        lambda: failed_creates(kubectl, namespace, replica_set),
    )
    assert DENIED in messages[0]
    assert f"ModelSecurityPolicy {namespace}/{POLICY}" in messages[0]
    assert AT_THE_POD.get(case.name, "") in messages[0], messages[0]


@pytest.mark.parametrize("name", IGNORED_BY_KSERVE)
def test_kserve_makes_no_storage_initializer_of_these_tricks(
    webhook: WebhookProcess,
    kserve: KServe,
    kubectl: Kubectl,
    namespace: str,
    images: Images,
    name: str,
) -> None:
    case = next(c for c in corpus.INFERENCE_SERVICES if c.name == name)
    pod = _first_pod(kubectl, namespace, images, case)
    assert [c["name"] for c in pod["spec"].get("initContainers", [])] == []
    assert corpus.SOURCE_URI not in pod["metadata"].get("annotations", {})
    assert corpus.EVIL_URI not in json.dumps(pod)


@pytest.mark.parametrize("name", sorted(REFUSED_BY_KSERVE))
def test_kserve_itself_refuses_these_tricks(
    kserve: KServe, kubectl: Kubectl, namespace: str, images: Images, name: str
) -> None:
    case = next(c for c in corpus.INFERENCE_SERVICES if c.name == name)
    result = kubectl(
        "create", "-f", "-", input_text=json.dumps(_body(namespace, images, case)), check=False
    )
    assert result.returncode != 0
    assert 'admission webhook "inferenceservice.kserve-webhook-server.validator"' in result.stderr
    assert REFUSED_BY_KSERVE[name] in result.stderr


#: KServe's S3 credentials for a ServiceAccount (pkg/credentials/s3, BuildS3EnvVars): the
#: Secret's annotation names the server, which KServe's pod mutator writes into the
#: storage initializer's AWS_ENDPOINT_URL. Admission reads no Secret.
ELSEWHERE = "evil.example:9000"
S3_CREDENTIALS: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {
        "name": "s3-elsewhere",
        "annotations": {
            "serving.kserve.io/s3-endpoint": ELSEWHERE,
            "serving.kserve.io/s3-usehttps": "0",
        },
    },
    "stringData": {"AWS_ACCESS_KEY_ID": "e2e", "AWS_SECRET_ACCESS_KEY": "e2e"},
}
ACCOUNT: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "ServiceAccount",
    "metadata": {"name": "models-elsewhere"},
    "secrets": [{"name": "s3-elsewhere"}],
}


def test_a_server_named_by_the_service_accounts_s3_secret_is_refused_at_the_pod(
    webhook: WebhookProcess, kserve: KServe, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    """The InferenceService serves the verified URI and is admitted: the server comes
    from a Secret, which admission does not read. The pod shows it, and is refused."""
    _prepare(kubectl, namespace, images)
    for body in (S3_CREDENTIALS, ACCOUNT):
        kubectl("apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(body))
    apply_policy(kubectl, namespace, images)
    service = json.loads(_as_kserve_labels_it(in_namespace(namespace, images, corpus.COMPLIANT[0])))
    service["spec"]["predictor"]["serviceAccountName"] = ACCOUNT["metadata"]["name"]
    kubectl("create", "-f", "-", input_text=json.dumps(service))

    deployment = f"{service['metadata']['name']}-predictor"
    replica_set = wait_for_owned(kubectl, namespace, "replicasets", "Deployment", deployment)
    messages = wait_for(
        "the pod reading the model from another S3 server to be refused",
        lambda: failed_creates(kubectl, namespace, replica_set["metadata"]["name"]),
    )
    assert DENIED in messages[0]
    assert "the model this loads cannot be told before it runs" in messages[0], messages[0]
    assert f"downloads s3:// models from 'http://{ELSEWHERE}' (AWS_ENDPOINT_URL" in messages[0]
    assert "] spec.initContainers[0].env[" in messages[0], messages[0]
