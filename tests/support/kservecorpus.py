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
import json
from typing import Any

from modelshield.engine.decisions import Code
from tests.support import workloadbuilders as builders

NAMESPACE = "ml"
LABELS = {"app": "model-server"}
MODEL = "model-v1"
#: The verified ModelArtifact's URI: what a compliant workload serves.
VERIFIED_URI = "s3://models/v1/"
EVIL_URI = "s3://models/evil/"
#: URIs KServe downloads more from than a ModelArtifact covers: s3://models/v1 is every
#: key starting with 'v1' (v1-evil/ too) where the operator verifies the directory v1/ (a
#: ModelArtifact may no longer name it: its schema wants the '/'; one stored before may
#: still be Ready), and an Azure URL is a blob listing where the operator fetched one
#: HTTPS file (a verified ModelArtifact of it is in ARTIFACTS).
PREFIX_URI = "s3://models/v1"
AZURE_URI = "https://acct.blob.core.windows.net/models/v1"
#: name -> URI of every verified ModelArtifact of the corpus.
ARTIFACTS = {MODEL: VERIFIED_URI, "model-v1-azure": AZURE_URI}
SIGNED_IMAGE = "registry.example.com/ml/fraud-server@sha256:" + "a" * 64
UNSIGNED_IMAGE = "registry.example.com/ml/evil:latest"
SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"
#: What KServe's controller writes on the pods of an InferenceService with a storage
#: spec, and its pod mutator reads (storage Secret entry, STORAGE_OVERRIDE_CONFIG).
STORAGE_SPEC = "internal.serving.kserve.io/storage-spec"
STORAGE_SPEC_PARAM = "internal.serving.kserve.io/storage-spec-param"
EVIL_ENDPOINT = "http://evil:9000"
#: The image of the storage initializer KServe injects (its ConfigMap's, not the user's).
STORAGE_INITIALIZER_IMAGE = "kserve/storage-initializer:v0.17.0"

#: The requirement blocks every case is judged under (wire names; signers filled in).
MODELS = "models"
IMAGES = "images"


def hardened(image: str = SIGNED_IMAGE, name: str = "kserve-container") -> dict[str, Any]:
    """A container that passes every runtime check (the engine tests' one, KServe's name)."""
    return builders.hardened_container(image, name)


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
    init_env: list[dict[str, Any]] | None = None,
    init_env_from: list[dict[str, Any]] | None = None,
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
        if init_env is not None:
            spec["initContainers"][0]["env"] = init_env
        if init_env_from is not None:
            spec["initContainers"][0]["envFrom"] = init_env_from
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
        "storage-spec-default-secret",
        # No key: KServe hands over the default storage Secret's `default_s3` entry when
        # it exists, endpoint_url included.
        isvc(sklearn(storage={"path": "v1/", "parameters": {"type": "s3", "bucket": "models"}})),
        MODELS,
        Code.MODEL_SOURCE_UNVERIFIABLE,
        "spec.predictor.model.storage",
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


def _literal(name: str, document: str) -> dict[str, Any]:
    return {"name": name, "value": document}


def _from_secret(name: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": "storage-config", "key": "k"}}}


#: Every spelling, in the storage initializer's environment, of a server to download from.
_ENDPOINT_CHOICES = {
    "STORAGE_OVERRIDE_CONFIG-endpoint": _literal(
        "STORAGE_OVERRIDE_CONFIG", json.dumps({"type": "s3", "endpoint_url": EVIL_ENDPOINT})
    ),
    # json.loads (kserve_storage's parser) decodes the escape: the key is endpoint_url.
    "STORAGE_OVERRIDE_CONFIG-escaped-key": _literal(
        "STORAGE_OVERRIDE_CONFIG", '{"type": "s3", "endpoint\\u005furl": "http://evil:9000"}'
    ),
    # The last of duplicate keys wins in json.loads: any endpoint_url is refused.
    "STORAGE_OVERRIDE_CONFIG-duplicate-key": _literal(
        "STORAGE_OVERRIDE_CONFIG",
        '{"type": "s3", "endpoint_url": "http://a", "endpoint_url": "http://evil:9000"}',
    ),
    "STORAGE_OVERRIDE_CONFIG-not-json": _literal("STORAGE_OVERRIDE_CONFIG", "endpoint_url=x"),
    # The kubelet substitutes $(V) before the initializer parses it: with
    # V = '", "endpoint_url": "http://evil:9000' the document names a server.
    "STORAGE_OVERRIDE_CONFIG-variable-reference": _literal(
        "STORAGE_OVERRIDE_CONFIG", json.dumps({"type": "s3", "x": "$(V)"})
    ),
    "STORAGE_OVERRIDE_CONFIG-from-configmap": {
        "name": "STORAGE_OVERRIDE_CONFIG",
        "valueFrom": {"configMapKeyRef": {"name": "m", "key": "k"}},
    },
    "STORAGE_CONFIG-literal-endpoint": _literal(
        "STORAGE_CONFIG", json.dumps({"type": "s3", "endpoint_url": EVIL_ENDPOINT})
    ),
    "STORAGE_CONFIG-from-secret": _from_secret("STORAGE_CONFIG"),
    "AWS_ENDPOINT_URL": _literal("AWS_ENDPOINT_URL", EVIL_ENDPOINT),
    "AWS_ENDPOINT_URL_S3": _literal("AWS_ENDPOINT_URL_S3", EVIL_ENDPOINT),
    "AWS_ENDPOINT_URL-from-secret": _from_secret("AWS_ENDPOINT_URL"),
    "AWS_CONFIG_FILE": _literal("AWS_CONFIG_FILE", "/mnt/models/aws-config"),
    "AWS_PROFILE": _literal("AWS_PROFILE", "elsewhere"),
}

#: Every spelling of "accept another certificate for the S3 server" (or an https://
#: model's): a man in the middle of the configured server serves another model.
_TLS_CHOICES = {
    "S3_VERIFY_SSL-0": _literal("S3_VERIFY_SSL", "0"),
    "S3_VERIFY_SSL-false": _literal("S3_VERIFY_SSL", "false"),
    "S3_VERIFY_SSL-FALSE": _literal("S3_VERIFY_SSL", "FALSE"),
    "S3_VERIFY_SSL-variable-reference": _literal("S3_VERIFY_SSL", "$(VERIFY)"),
    "S3_VERIFY_SSL-from-secret": _from_secret("S3_VERIFY_SSL"),
    "AWS_CA_BUNDLE": _literal("AWS_CA_BUNDLE", "/mnt/ca/evil.pem"),
    "AWS_CA_BUNDLE-from-secret": _from_secret("AWS_CA_BUNDLE"),
    "CA_BUNDLE_CONFIGMAP_NAME": _literal("CA_BUNDLE_CONFIGMAP_NAME", "evil-ca"),
    # KServe's pod mutator turns it into CA_BUNDLE_CONFIGMAP_NAME and the volume.
    "AWS_CA_BUNDLE_CONFIGMAP": _literal("AWS_CA_BUNDLE_CONFIGMAP", "evil-ca"),
    "CA_BUNDLE_VOLUME_MOUNT_POINT": _literal("CA_BUNDLE_VOLUME_MOUNT_POINT", "/mnt/ca"),
    "REQUESTS_CA_BUNDLE": _literal("REQUESTS_CA_BUNDLE", "/mnt/ca/evil.pem"),
    "CURL_CA_BUNDLE": _literal("CURL_CA_BUNDLE", "/mnt/ca/evil.pem"),
    # Over a plain http:// server the proxy answers the download itself.
    "HTTP_PROXY": _literal("HTTP_PROXY", "http://proxy.evil:3128"),
    "http_proxy": _literal("http_proxy", "http://proxy.evil:3128"),
    "HTTPS_PROXY": _literal("HTTPS_PROXY", "http://proxy.evil:3128"),
    "all_proxy": _literal("all_proxy", "socks5://proxy.evil:1080"),
    "HTTP_PROXY-from-secret": _from_secret("HTTP_PROXY"),
    # _update_with_storage_spec copies these keys into S3_VERIFY_SSL and AWS_CA_BUNDLE.
    "STORAGE_OVERRIDE_CONFIG-verify_ssl": _literal(
        "STORAGE_OVERRIDE_CONFIG", json.dumps({"type": "s3", "verify_ssl": "0"})
    ),
    # A JSON false makes os.environ raise: refused too, not guessed at.
    "STORAGE_OVERRIDE_CONFIG-verify_ssl-boolean": _literal(
        "STORAGE_OVERRIDE_CONFIG", json.dumps({"type": "s3", "verify_ssl": False})
    ),
    "STORAGE_OVERRIDE_CONFIG-ca_bundle": _literal(
        "STORAGE_OVERRIDE_CONFIG", json.dumps({"type": "s3", "ca_bundle": "/mnt/ca/evil.pem"})
    ),
    "STORAGE_CONFIG-verify_ssl": _literal(
        "STORAGE_CONFIG", json.dumps({"type": "s3", "verify_ssl": "False"})
    ),
}

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
    *[
        Case(
            f"pod-initializer-{name}",
            pod(init_args=[VERIFIED_URI, "/mnt/models"], init_env=[variable]),
            MODELS,
            Code.MODEL_SOURCE_UNVERIFIABLE,
            f"spec.initContainers[0].env[0].{'valueFrom' if 'valueFrom' in variable else 'value'}",
        )
        for name, variable in _ENDPOINT_CHOICES.items()
    ],
    *[
        Case(
            f"pod-initializer-tls-{name}",
            pod(init_args=[VERIFIED_URI, "/mnt/models"], init_env=[variable]),
            MODELS,
            Code.MODEL_SOURCE_UNVERIFIABLE,
            f"spec.initContainers[0].env[0].{'valueFrom' if 'valueFrom' in variable else 'value'}",
        )
        for name, variable in _TLS_CHOICES.items()
    ],
    Case(
        "pod-storage-spec-param-verify_ssl",
        # KServe's pod mutator turns it into STORAGE_OVERRIDE_CONFIG.
        pod(
            annotations={
                SOURCE_URI: VERIFIED_URI,
                STORAGE_SPEC: "true",
                STORAGE_SPEC_PARAM: json.dumps({"type": "s3", "verify_ssl": "false"}),
            }
        ),
        MODELS,
        Code.MODEL_SOURCE_UNVERIFIABLE,
        f"metadata.annotations['{STORAGE_SPEC_PARAM}']",
    ),
    Case(
        "pod-storage-initializer-variable-reference",
        pod(init_args=["s3://models/$(SUFFIX)/", "/mnt/models"]),
        MODELS,
        Code.MODEL_SOURCE_UNVERIFIABLE,
        "spec.initContainers[0].args[0]",
    ),
    Case(
        "pod-initializer-envFrom",
        pod(
            init_args=[VERIFIED_URI, "/mnt/models"], init_env_from=[{"configMapRef": {"name": "e"}}]
        ),
        MODELS,
        Code.MODEL_SOURCE_UNVERIFIABLE,
        "spec.initContainers[0].envFrom",
    ),
    Case(
        "pod-storage-spec-param-annotation",
        # Before KServe's pod mutator: it will turn these into STORAGE_OVERRIDE_CONFIG.
        pod(
            annotations={
                SOURCE_URI: VERIFIED_URI,
                STORAGE_SPEC: "true",
                STORAGE_SPEC_PARAM: json.dumps({"type": "s3", "endpoint_url": EVIL_ENDPOINT}),
            }
        ),
        MODELS,
        Code.MODEL_SOURCE_UNVERIFIABLE,
        f"metadata.annotations['{STORAGE_SPEC_PARAM}']",
    ),
    Case(
        "pod-storage-spec-annotation-secret-entry",
        pod(annotations={SOURCE_URI: VERIFIED_URI, STORAGE_SPEC: "true"}),
        MODELS,
        Code.MODEL_SOURCE_UNVERIFIABLE,
        f"metadata.annotations['{STORAGE_SPEC}']",
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
    # Overrides that leave the server alone, and a region (the same bucket on AWS).
    pod(
        init_args=[VERIFIED_URI, "/mnt/models"],
        init_env=[
            _literal("STORAGE_OVERRIDE_CONFIG", json.dumps({"type": "s3", "bucket": "models"})),
            _literal("AWS_DEFAULT_REGION", "eu-west-1"),
            _literal("STORAGE_CONFIG", ""),
        ],
    ),
    # Certificates checked: verification left on (any other value), no CA bundle set.
    pod(
        init_args=[VERIFIED_URI, "/mnt/models"],
        init_env=[
            _literal("S3_VERIFY_SSL", "1"),
            _literal("AWS_CA_BUNDLE", ""),
            _literal("STORAGE_OVERRIDE_CONFIG", json.dumps({"type": "s3", "verify_ssl": "1"})),
        ],
    ),
    # An empty proxy variable is unset; NO_PROXY only keeps traffic off a proxy.
    pod(
        init_args=[VERIFIED_URI, "/mnt/models"],
        init_env=[_literal("HTTP_PROXY", ""), _literal("NO_PROXY", "*")],
    ),
]
