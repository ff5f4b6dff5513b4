"""The InferenceService bypass corpus (issue 19): each trick, and the pod KServe makes of it.

Every case was admitted before modelshield read KServe objects the way KServe builds
pods: a model source other than ``storageUri``, labels only on a component, an inline
component container, a ``workerSpec``, a raw-prefix S3 URI... Each names the violation
and the JSON path of the trick. The pods are what KServe v0.15.2/v0.17.0 creates:
``storage-initializer`` init container args (source, destination) from the controller
(``storageUris``) or the pod mutator (``storageUri``, from the internal annotation).
Shared by the engine tests, the webhook tests and the e2e tests.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from modelshield.engine.decisions import Code

NAMESPACE = "ml"
LABELS = {"app": "model-server"}
MODEL = "model-v1"
#: The verified ModelArtifact's URI: what a compliant workload serves.
VERIFIED_URI = "s3://models/v1/"
EVIL_URI = "s3://models/evil/"
#: ModelArtifacts the operator verified, under URIs KServe downloads more from: the
#: operator fetched s3://models/v1 as the directory v1/ (KServe: every key starting with
#: 'v1', so v1-evil/ too) and the Azure URL as one HTTPS file (KServe: a blob listing).
PREFIX_URI = "s3://models/v1"
AZURE_URI = "https://acct.blob.core.windows.net/models/v1"
#: name -> URI of every verified ModelArtifact of the corpus.
ARTIFACTS = {MODEL: VERIFIED_URI, "model-v1-prefix": PREFIX_URI, "model-v1-azure": AZURE_URI}
SIGNED_IMAGE = "registry.example.com/ml/fraud-server@sha256:" + "a" * 64
UNSIGNED_IMAGE = "registry.example.com/ml/evil:latest"
SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"
#: The image of the storage initializer KServe injects (its ConfigMap's, not the user's).
STORAGE_INITIALIZER_IMAGE = "kserve/storage-initializer:v0.17.0"

#: The requirement blocks every case is judged under (wire names; signers filled in).
MODELS = "models"
IMAGES = "images"


def hardened(image: str = SIGNED_IMAGE, name: str = "kserve-container") -> dict[str, Any]:
    """A container that passes every runtime check."""
    return {
        "name": name,
        "image": image,
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        },
        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
    }


def isvc(
    predictor: dict[str, Any],
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **components: dict[str, Any],
) -> dict[str, Any]:
    """An InferenceService naming the verified model in its annotation (the decoy)."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "iris",
            "namespace": NAMESPACE,
            "labels": dict(LABELS if labels is None else labels),
            "annotations": {"modelshield.dev/model-artifact": MODEL, **(annotations or {})},
        },
        "spec": {"predictor": predictor, **components},
    }


def sklearn(**fields: Any) -> dict[str, Any]:
    """A predictor serving an sklearn model with the runtime's image."""
    return {"model": {"modelFormat": {"name": "sklearn"}, **fields}}


def pod(
    *,
    init_args: list[str] | None = None,
    annotations: dict[str, str] | None = None,
    env: list[dict[str, Any]] | None = None,
    init_command: list[str] | None = None,
) -> dict[str, Any]:
    """A predictor Pod as KServe creates it (annotation decoy included)."""
    container = hardened()
    if env:
        container["env"] = env
    spec: dict[str, Any] = {"containers": [container]}
    if init_args is not None:
        initializer = hardened(STORAGE_INITIALIZER_IMAGE, "storage-initializer")
        spec["initContainers"] = [{**initializer, "args": init_args}]
        if init_command is not None:
            spec["initContainers"][0]["command"] = init_command
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "iris-predictor-0",
            "namespace": NAMESPACE,
            "labels": dict(LABELS),
            "annotations": {"modelshield.dev/model-artifact": MODEL, **(annotations or {})},
        },
        "spec": spec,
    }


@dataclasses.dataclass(frozen=True)
class Case:
    """One trick: the object, the requirement it slips past, the violation it must get."""

    name: str
    body: dict[str, Any]
    requirement: str
    code: Code
    path: str

    def object(self) -> dict[str, Any]:
        """A copy of the object, safe to change."""
        return copy.deepcopy(self.body)


_PREDICTOR = {"containers": [hardened()]}

INFERENCE_SERVICES = [
    Case(
        "storageUris",
        isvc({**sklearn(), "storageUris": [{"uri": EVIL_URI, "mountPath": "/mnt/models"}]}),
        MODELS,
        Code.MODEL_ARTIFACT_NOT_FOUND,
        "spec.predictor.storageUris[0].uri",
    ),
    Case(
        "storage-key-path-bucket-from-secret",
        isvc(sklearn(storage={"key": "localMinIO", "path": "models/evil/"})),
        MODELS,
        Code.MODEL_SOURCE_UNVERIFIABLE,
        "spec.predictor.model.storage.path",
    ),
    Case(
        "storage-key-path-bucket-in-parameters",
        isvc(
            sklearn(
                storage={
                    "key": "localMinIO",
                    "path": "evil/",
                    "parameters": {"type": "s3", "bucket": "models"},
                }
            )
        ),
        MODELS,
        Code.MODEL_ARTIFACT_NOT_FOUND,
        "spec.predictor.model.storage.path",
    ),
    Case(
        "storage-endpoint-override",
        isvc(
            sklearn(
                storageUri=VERIFIED_URI,
                storage={"parameters": {"type": "s3", "endpoint_url": "http://evil:9000"}},
            )
        ),
        MODELS,
        Code.MODEL_SOURCE_UNVERIFIABLE,
        "spec.predictor.model.storage.parameters.endpoint_url",
    ),
    Case(
        "STORAGE_URI-env-custom-container",
        isvc({"containers": [{**hardened(), "env": [{"name": "STORAGE_URI", "value": EVIL_URI}]}]}),
        MODELS,
        Code.MODEL_ARTIFACT_NOT_FOUND,
        "spec.predictor.containers[0].env[0].value",
    ),
    Case(
        "STORAGE_URI-env-from-configmap",
        isvc(
            {
                "containers": [
                    {
                        **hardened(),
                        "env": [
                            {
                                "name": "STORAGE_URI",
                                "valueFrom": {"configMapKeyRef": {"name": "m", "key": "uri"}},
                            }
                        ],
                    }
                ]
            }
        ),
        MODELS,
        Code.MODEL_SOURCE_UNVERIFIABLE,
        "spec.predictor.containers[0].env[0].valueFrom",
    ),
    Case(
        "STORAGE_URI-env-transformer",
        isvc(
            sklearn(storageUri=VERIFIED_URI),
            transformer={
                "containers": [{**hardened(), "env": [{"name": "STORAGE_URI", "value": EVIL_URI}]}]
            },
        ),
        MODELS,
        Code.MODEL_ARTIFACT_NOT_FOUND,
        "spec.transformer.containers[0].env[0].value",
    ),
    Case(
        "internal-source-annotation-on-the-object",
        isvc(_PREDICTOR, annotations={SOURCE_URI: EVIL_URI}),
        MODELS,
        Code.MODEL_ARTIFACT_NOT_FOUND,
        f"metadata.annotations['{SOURCE_URI}']",
    ),
    Case(
        "internal-source-annotation-on-the-predictor",
        isvc({**_PREDICTOR, "annotations": {SOURCE_URI: EVIL_URI}}),
        MODELS,
        Code.MODEL_ARTIFACT_NOT_FOUND,
        f"spec.predictor.annotations['{SOURCE_URI}']",
    ),
    Case(
        "s3-prefix-without-trailing-slash",
        isvc(sklearn(storageUri=PREFIX_URI)),
        MODELS,
        Code.MODEL_SOURCE_UNVERIFIABLE,
        "spec.predictor.model.storageUri",
    ),
    Case(
        "azure-blob-prefix",
        isvc(sklearn(storageUri=AZURE_URI)),
        MODELS,
        Code.MODEL_SOURCE_UNVERIFIABLE,
        "spec.predictor.model.storageUri",
    ),
    Case(
        "selected-by-predictor-labels",
        isvc(
            {**sklearn(storageUri=EVIL_URI), "labels": dict(LABELS)},
            labels={"team": "ml"},
        ),
        MODELS,
        Code.MODEL_ARTIFACT_NOT_FOUND,
        "spec.predictor.model.storageUri",
    ),
    Case(
        "selected-by-transformer-labels",
        isvc(
            _PREDICTOR,
            labels={"team": "ml"},
            transformer={"containers": [hardened(UNSIGNED_IMAGE)], "labels": dict(LABELS)},
        ),
        IMAGES,
        Code.IMAGE_UNSIGNED,
        "spec.transformer.containers[0].image",
    ),
    Case(
        "inline-model-image",
        isvc(sklearn(storageUri=VERIFIED_URI, image=UNSIGNED_IMAGE)),
        IMAGES,
        Code.IMAGE_UNSIGNED,
        "spec.predictor.model.image",
    ),
    Case(
        "inline-sklearn-image",
        isvc({"sklearn": {"storageUri": VERIFIED_URI, "image": UNSIGNED_IMAGE}}),
        IMAGES,
        Code.IMAGE_UNSIGNED,
        "spec.predictor.sklearn.image",
    ),
    Case(
        "workerSpec",
        isvc(
            {
                **sklearn(storageUri=VERIFIED_URI),
                "workerSpec": {"containers": [hardened(UNSIGNED_IMAGE, "worker-container")]},
            }
        ),
        IMAGES,
        Code.IMAGE_UNSIGNED,
        "spec.predictor.workerSpec.containers[0].image",
    ),
]

PODS = [
    Case(
        "pod-storage-initializer-args",
        pod(init_args=[EVIL_URI, "/mnt/models"]),
        MODELS,
        Code.MODEL_ARTIFACT_NOT_FOUND,
        "spec.initContainers[0].args[0]",
    ),
    Case(
        "pod-storage-initializer-second-pair",
        pod(init_args=[VERIFIED_URI, "/mnt/models/base", EVIL_URI, "/mnt/models/lora"]),
        MODELS,
        Code.MODEL_ARTIFACT_NOT_FOUND,
        "spec.initContainers[0].args[2]",
    ),
    Case(
        "pod-storage-initializer-own-command",
        pod(init_args=[VERIFIED_URI, "/mnt/models"], init_command=["sh", "-c", "fetch-evil"]),
        MODELS,
        Code.MODEL_SOURCE_UNVERIFIABLE,
        "spec.initContainers[0].command",
    ),
    Case(
        "pod-internal-source-annotation",
        pod(annotations={SOURCE_URI: EVIL_URI}),
        MODELS,
        Code.MODEL_ARTIFACT_NOT_FOUND,
        f"metadata.annotations['{SOURCE_URI}']",
    ),
    Case(
        "pod-storage-spec-placeholder",
        pod(annotations={SOURCE_URI: "<scheme-placeholder>://models/evil/"}),
        MODELS,
        Code.MODEL_SOURCE_UNVERIFIABLE,
        f"metadata.annotations['{SOURCE_URI}']",
    ),
    Case(
        "pod-STORAGE_URI-env",
        pod(env=[{"name": "STORAGE_URI", "value": EVIL_URI}]),
        MODELS,
        Code.MODEL_ARTIFACT_NOT_FOUND,
        "spec.containers[0].env[0].value",
    ),
    Case(
        "pod-s3-prefix-without-trailing-slash",
        pod(init_args=[PREFIX_URI, "/mnt/models"]),
        MODELS,
        Code.MODEL_SOURCE_UNVERIFIABLE,
        "spec.initContainers[0].args[0]",
    ),
]

#: What KServe makes of a compliant InferenceService: must stay admitted.
COMPLIANT = [
    isvc(sklearn(storageUri=VERIFIED_URI)),
    isvc({**sklearn(), "storageUris": [{"uri": VERIFIED_URI, "mountPath": "/mnt/models"}]}),
    pod(
        init_args=[VERIFIED_URI, "/mnt/models"],
        annotations={SOURCE_URI: VERIFIED_URI},
        # KServe rewrites the serving container's STORAGE_URI to the local mount.
        env=[{"name": "STORAGE_URI", "value": "/mnt/models"}],
    ),
]
