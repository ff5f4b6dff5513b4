"""An InferenceService judged with the ServingRuntime it names, on the real API server.

KServe's real controller runs the named runtime's image in the predictor pod; the
webhook (which list+watches KServe's runtimes) refuses the InferenceService when that
image fails the policy, at a path naming the runtime, before any pod exists. A runtime
not created yet is no verdict at the InferenceService.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from e2e.clients import Kubectl
from e2e.kserve import KServe, kserve
from e2e.kserve_objects import RUNTIME, apply_policy, wait_for_owned
from e2e.kservecorpuscluster import _as_kserve_labels_it, _prepare, in_namespace
from e2e.webhooks import DENIED, Images, WebhookProcess, images, wait_for, webhook
from tests.support import kservecorpus as corpus

__all__ = ["images", "kserve", "webhook"]  # module-scoped fixtures, shared by name

EVIL = "evil-runtime"
PATH = f"spec.predictor.model.runtime[ServingRuntime {EVIL}].spec.containers[0].image"


def _runtime(name: str, image: str) -> str:
    """A runtime outside the policy's selector (nothing governs it on its own)."""
    return yaml.safe_dump(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ServingRuntime",
            "metadata": {"name": name},
            "spec": {
                "supportedModelFormats": [{"name": "sklearn", "version": "1"}],
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": image,
                        "args": ["--model_dir=/mnt/models"],
                        "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                    }
                ],
            },
        }
    )


def _service(namespace: str, images: Images, name: str, runtime: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(
        _as_kserve_labels_it(in_namespace(namespace, images, corpus.COMPLIANT[0]))
    )
    body["metadata"]["name"] = name
    body["spec"]["predictor"]["model"]["runtime"] = runtime
    return body


def _dry_run(kubectl: Kubectl, body: dict[str, Any]) -> Any:
    return kubectl(
        "create", "--dry-run=server", "-f", "-", input_text=json.dumps(body), check=False
    )


def test_the_named_runtimes_image_is_judged_at_the_inference_service(
    webhook: WebhookProcess, kserve: KServe, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    _prepare(kubectl, namespace, images)
    kubectl("apply", "-n", namespace, "-f", "-", input_text=_runtime(EVIL, images.unsigned))

    # Before any policy: what KServe's controller runs is the runtime's image.
    first = _service(namespace, images, "picks-evil", EVIL)
    kubectl("create", "-f", "-", input_text=json.dumps(first))
    replica_set = wait_for_owned(
        kubectl, namespace, "replicasets", "Deployment", "picks-evil-predictor"
    )
    pod = wait_for_owned(kubectl, namespace, "pods", "ReplicaSet", replica_set["metadata"]["name"])
    served = {c["name"]: c["image"] for c in pod["spec"]["containers"]}
    assert served["kserve-container"] == images.unsigned

    apply_policy(kubectl, namespace, images)
    again = _service(namespace, images, "again", EVIL)

    def judged_with_the_runtime() -> Any:
        result = _dry_run(kubectl, again)
        return result if result.returncode != 0 else None

    refused = wait_for(
        "the webhook to judge the InferenceService with its runtime", judged_with_the_runtime
    )
    assert DENIED in refused.stderr, refused.stderr
    assert f"] {PATH}: " in refused.stderr, refused.stderr

    # The signed runtime the corpus names: admitted.
    signed = _service(namespace, images, "signed", RUNTIME)
    admitted = _dry_run(kubectl, signed)
    assert admitted.returncode == 0, admitted.stderr

    # A runtime that does not exist yet: KServe makes no pod until it does (and the
    # runtime and the pods are judged then); no verdict here.
    unknown = _service(namespace, images, "later", "not-created-yet")
    admitted = _dry_run(kubectl, unknown)
    assert admitted.returncode == 0, admitted.stderr
