"""The InferenceService bypass corpus (tests/kservecorpus.py) on a real API server.

Each trick is created with kubectl through kube-apiserver, which calls the webhook:
the InferenceServices and the Pods KServe makes of them are all refused, each with the
JSON path of its trick in the message. The InferenceService CRD is KServe's own when
e2e/kserve.py installed it, otherwise the minimal open one of e2e/fixtures (the corpus
uses only fields of KServe's schema, so neither prunes a trick away).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import kserve_objects
from e2e.clients import Kubectl
from e2e.kservecorpuscluster import in_namespace
from e2e.webhooks import DENIED, Images, WebhookProcess, images, wait_for, webhook
from tests.support import kservecorpus as corpus

__all__ = ["images", "webhook"]  # module-scoped fixtures, shared by name

POLICY = "kserve-corpus"
CRD = "crd/inferenceservices.serving.kserve.io"
CASES = corpus.INFERENCE_SERVICES + corpus.PODS


def _policy(namespace: str, images: Images) -> dict[str, Any]:
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": POLICY, "namespace": namespace},
        "spec": {
            "enforcement": "Enforce",
            "selector": {"matchLabels": dict(corpus.LABELS)},
            "images": {"signers": [{"name": "release", "publicKey": images.public_key}]},
            "models": {"signers": [{"name": "model-release", "publicKey": images.public_key}]},
        },
    }


@pytest.fixture
def governed(webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images) -> str:
    """The namespace with the policy and the corpus's verified ModelArtifacts, once the
    webhook admits a compliant InferenceService (its caches follow by watch)."""
    if kubectl("get", CRD, check=False).returncode != 0:
        crd = Path(__file__).resolve().parent / "fixtures" / "inferenceservice-crd.yaml"
        kubectl("apply", "--server-side", "--field-manager=modelshield-e2e", f"--filename={crd}")
        kubectl("wait", "--for=condition=Established", "--timeout=60s", CRD)
    kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(_policy(namespace, images))
    )
    for name, uri in corpus.ARTIFACTS.items():
        kserve_objects.apply_artifact(kubectl, namespace, name, uri, images.public_key)
    compliant = in_namespace(namespace, images, corpus.COMPLIANT[0])
    evil = in_namespace(namespace, images, corpus.isvc(corpus.sklearn(storageUri=corpus.EVIL_URI)))

    def ready() -> bool:
        def created(text: str) -> bool:
            result = kubectl("create", "--dry-run=server", "-f", "-", input_text=text, check=False)
            return result.returncode == 0

        return created(compliant) and not created(evil)

    wait_for("the webhook to judge by the policy and see the ModelArtifacts", ready)
    return namespace


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_trick_is_refused_by_the_api_server_with_its_path(
    governed: str, kubectl: Kubectl, images: Images, case: corpus.Case
) -> None:
    result = kubectl(
        "create", "-f", "-", input_text=in_namespace(governed, images, case.body), check=False
    )
    assert result.returncode != 0, f"{case.name} was admitted"
    assert DENIED in result.stderr, result.stderr
    assert f"ModelSecurityPolicy {governed}/{POLICY}" in result.stderr
    assert f"] {case.path}: " in result.stderr, result.stderr


def test_what_kserve_makes_of_a_compliant_service_is_created(
    governed: str, kubectl: Kubectl, images: Images
) -> None:
    for index, body in enumerate(corpus.COMPLIANT):
        named = {**body, "metadata": {**body["metadata"], "name": f"compliant-{index}"}}
        kubectl("create", "-f", "-", input_text=in_namespace(governed, images, named))


KINDS_CRDS = (
    "crd/llminferenceservices.serving.kserve.io",
    "crd/servingruntimes.serving.kserve.io",
    "crd/clusterservingruntimes.serving.kserve.io",
)


@pytest.fixture
def kserve_kinds(governed: str, kubectl: Kubectl) -> str:
    """The governed namespace, with CRDs for KServe's other kinds (minimal ones if absent)."""
    if any(kubectl("get", crd, check=False).returncode != 0 for crd in KINDS_CRDS):
        crds = Path(__file__).resolve().parent / "fixtures" / "kserve-kinds-crds.yaml"
        kubectl("apply", "--server-side", "--field-manager=modelshield-e2e", f"--filename={crds}")
        kubectl("wait", "--for=condition=Established", "--timeout=60s", *KINDS_CRDS)
    return governed


def _llm(namespace: str, name: str, uri: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "LLMInferenceService",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(corpus.LABELS)},
        "spec": {"model": {"uri": uri}, "template": {"containers": [corpus.hardened(image)]}},
    }


def _runtime(kind: str, name: str, image: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "autoSelect": True}],
            "containers": [corpus.hardened(image)],
        },
    }


def _refused(kubectl: Kubectl, body: dict[str, Any], path: str, *namespace: str) -> str:
    result = kubectl("create", *namespace, "-f", "-", input_text=yaml.safe_dump(body), check=False)
    assert result.returncode != 0, f"{body['kind']} {body['metadata']['name']} was admitted"
    assert DENIED in result.stderr, result.stderr
    assert f"] {path}: " in result.stderr, result.stderr
    return str(result.stderr)


def test_an_llm_inference_service_is_judged_on_its_model_uri_and_pod_template(
    kserve_kinds: str, kubectl: Kubectl, images: Images
) -> None:
    namespace = kserve_kinds
    good = _llm(namespace, "llm", corpus.VERIFIED_URI, images.signed)
    kubectl("create", "-f", "-", input_text=yaml.safe_dump(good))
    _refused(
        kubectl, _llm(namespace, "evil-model", corpus.EVIL_URI, images.signed), "spec.model.uri"
    )
    _refused(
        kubectl,
        _llm(namespace, "evil-image", corpus.VERIFIED_URI, images.unsigned),
        "spec.template.containers[0].image",
    )


def test_a_serving_runtime_is_judged_on_its_images(
    kserve_kinds: str, kubectl: Kubectl, images: Images
) -> None:
    namespace = kserve_kinds
    labels = dict(corpus.LABELS)
    signed = _runtime("ServingRuntime", "signed", images.signed, labels)
    kubectl("create", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(signed))
    unsigned = _runtime("ServingRuntime", "unsigned", images.unsigned, labels)
    _refused(kubectl, unsigned, "spec.containers[0].image", "-n", namespace)


def test_a_cluster_serving_runtime_reaches_the_webhook_and_cluster_policies_judge_it(
    kserve_kinds: str, kubectl: Kubectl, images: Images
) -> None:
    """Cluster-scoped: only a rule with scope Cluster sends it, and a cluster policy that
    picks its labels judges it whatever its namespaceSelector (it serves every namespace)."""
    selected = {"modelshield-e2e-runtime": kserve_kinds}
    cluster_policy = {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ClusterModelSecurityPolicy",
        "metadata": {"name": f"runtimes-{kserve_kinds}"},
        "spec": {
            "enforcement": "Enforce",
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": kserve_kinds}},
            "selector": {"matchLabels": selected},
            "images": {"signers": [{"name": "release", "publicKey": images.public_key}]},
        },
    }
    kubectl("apply", "-f", "-", input_text=yaml.safe_dump(cluster_policy))
    unsigned = _runtime(
        "ClusterServingRuntime", f"unsigned-{kserve_kinds}", images.unsigned, selected
    )
    try:

        def judged() -> bool:
            result = kubectl(
                "create",
                "--dry-run=server",
                "-f",
                "-",
                input_text=yaml.safe_dump(unsigned),
                check=False,
            )
            return f"ClusterModelSecurityPolicy runtimes-{kserve_kinds}" in result.stderr

        wait_for("the webhook to judge ClusterServingRuntimes by the cluster policy", judged)
        _refused(kubectl, unsigned, "spec.containers[0].image")
        signed = _runtime(
            "ClusterServingRuntime", f"signed-{kserve_kinds}", images.signed, selected
        )
        kubectl("create", "-f", "-", input_text=yaml.safe_dump(signed))
        kubectl("delete", f"clusterservingruntime/signed-{kserve_kinds}", "--wait=false")
    finally:
        kubectl("delete", f"clustermodelsecuritypolicy/runtimes-{kserve_kinds}", "--wait=false")
