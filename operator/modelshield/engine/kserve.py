"""What KServe turns its objects into: the containers, model sources and pod metadata.

Written from KServe's own code, v0.15.2 and v0.17.0 (``pkg/apis/serving``,
``pkg/controller/v1beta1/inferenceservice/components``,
``pkg/webhook/admission/pod/storage_initializer_injector.go``, ``pkg/credentials`` and
the ``kserve_storage`` Python package that the storage initializer runs):

- a component (``predictor``, ``transformer``, ``explainer``) is a pod spec plus framework
  blocks (``model``, ``sklearn``, ``art``...) that each inline a container and name a
  model (``storageUri``, or ``storage: {key, path, parameters}`` whose type and bucket
  come from the storage Secret unless ``parameters`` name them), ``storageUris`` lists
  more models, ``workerSpec`` is another pod spec, and any container's ``STORAGE_URI``
  environment variable is a model source (KServe reads it from a custom container);
- the pods carry the object's labels and annotations merged with the component's;
- at the pod, the model is what KServe's storage machinery downloads
  (``engine.kservepods``, which also reads the pod specs and annotations found here).

Pure and never raising: what cannot be read is returned as a problem.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from modelshield.engine import downloads, kservepods
from modelshield.engine.kservepods import PodPart, Source

INFERENCE_SERVICE = "InferenceService"
LLM_INFERENCE_SERVICE = "LLMInferenceService"
SERVING_RUNTIME = "ServingRuntime"
CLUSTER_SERVING_RUNTIME = "ClusterServingRuntime"

COMPONENTS = ("predictor", "transformer", "explainer")
#: Framework blocks of a component (predictor: v1beta1 PredictorSpec; explainer: art).
FRAMEWORKS = (
    "model",
    "sklearn",
    "xgboost",
    "tensorflow",
    "pytorch",
    "triton",
    "onnx",
    "huggingface",
    "pmml",
    "lightgbm",
    "paddle",
    "art",
)
#: The container name KServe gives an inline framework container.
SERVING_CONTAINER = "kserve-container"


@dataclasses.dataclass(frozen=True, slots=True)
class InlineContainer:
    """A framework block: a container KServe builds from the block's own fields."""

    path: str
    spec: Mapping[str, Any]
    pod: PodPart


@dataclasses.dataclass(frozen=True, slots=True)
class PodMetadata:
    """Labels one kind of pod will carry, and annotations it gets from one place (path)."""

    labels: Mapping[str, str]
    annotations: Mapping[str, Any]
    annotations_path: str


@dataclasses.dataclass(frozen=True)
class Reading(kservepods.Found):
    """Everything KServe will run for one object."""

    pods: list[PodPart] = dataclasses.field(default_factory=list)
    inline: list[InlineContainer] = dataclasses.field(default_factory=list)
    metadata: list[PodMetadata] = dataclasses.field(default_factory=list)


_EMPTY: Mapping[str, Any] = {}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else _EMPTY


def _merged(base: Mapping[str, Any], extra: Any) -> Mapping[str, Any]:
    return {**base, **extra} if isinstance(extra, dict) and extra else base


def _object(reading: Reading, parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is not None and not isinstance(value, dict):
        reading.problems.append((path, "is not an object"))
    return _mapping(value)


def _storage(reading: Reading, block: Mapping[str, Any], path: str) -> None:
    storage = block.get("storage")
    if storage is None:
        return
    if not isinstance(storage, dict):
        reading.problems.append((f"{path}.storage", "is not an object"))
        return
    parameters = storage.get("parameters")
    if isinstance(parameters, dict) and "endpoint_url" in parameters:
        # STORAGE_OVERRIDE_CONFIG: the storage initializer then downloads the same URI
        # from another server than the one the ModelArtifact was verified against.
        reading.sources.append(
            Source(
                f"{path}.storage.parameters.endpoint_url",
                None,
                "it sends the storage initializer to another storage endpoint than the one "
                "ModelArtifacts are verified against; remove endpoint_url",
            )
        )
    # CreateStorageSpecSecretEnvs: the storage Secret's entry (`key`, or the default
    # Secret's `default`/`default_<type>` when it exists) reaches the initializer as
    # STORAGE_CONFIG, endpoint_url included.
    named = "key" in storage
    reading.sources.append(
        Source(
            f"{path}.storage.key" if named else f"{path}.storage",
            None,
            "KServe hands the storage initializer the storage Secret's entry "
            f"({'its key' if named else 'the default Secret, when it has one'}), whose "
            "endpoint_url picks the S3 server and which admission does not read; serve the "
            "model by storageUri instead of a storage spec",
        )
    )
    where = storage.get("path")
    if where is None:
        return
    if not isinstance(where, str):
        reading.problems.append((f"{path}.storage.path", "is not a string"))
        return
    uri, why = downloads.storage_spec_uri(where, parameters)
    reading.sources.append(Source(f"{path}.storage.path", uri, why))


def _string_source(reading: Reading, value: Any, path: str) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        reading.problems.append((path, "is not a string"))
    elif value:
        reading.sources.append(Source(path, value))


def _component(reading: Reading, part: Mapping[str, Any], path: str) -> None:
    pod = PodPart(path, part)
    reading.pods.append(pod)
    kservepods.container_sources(reading, pod)
    for name in FRAMEWORKS:
        block = _object(reading, part, name, f"{path}.{name}")
        if not block:
            continue
        block_path = f"{path}.{name}"
        if "image" in block:
            reading.inline.append(InlineContainer(block_path, block, pod))
        _string_source(reading, block.get("storageUri"), f"{block_path}.storageUri")
        _storage(reading, block, block_path)
        kservepods.env_sources(reading, block, block_path)
    _string_source(reading, part.get("storageUri"), f"{path}.storageUri")
    uris = part.get("storageUris")
    if uris is not None and not isinstance(uris, list):
        reading.problems.append((f"{path}.storageUris", "is not a list"))
    for index, entry in enumerate(uris if isinstance(uris, list) else ()):
        where = f"{path}.storageUris[{index}]"
        if not isinstance(entry, dict):
            reading.problems.append((where, "is not an object"))
            continue
        if not isinstance(entry.get("uri"), str) or not entry["uri"]:
            reading.problems.append((f"{where}.uri", "is missing"))
            continue
        reading.sources.append(Source(f"{where}.uri", entry["uri"]))
    worker = _object(reading, part, "workerSpec", f"{path}.workerSpec")
    if worker:
        worker_pod = PodPart(f"{path}.workerSpec", worker)
        reading.pods.append(worker_pod)
        kservepods.container_sources(reading, worker_pod)


def read_inference_service(root: Mapping[str, Any]) -> Reading:
    """An InferenceService as KServe's controller builds its pods."""
    reading = Reading()
    metadata = _mapping(root.get("metadata"))
    labels = _mapping(metadata.get("labels"))
    annotations = _mapping(metadata.get("annotations"))
    reading.metadata.append(PodMetadata(labels, annotations, "metadata.annotations"))
    spec = _object(reading, root, "spec", "spec")
    for name in COMPONENTS:
        part = _object(reading, spec, name, f"spec.{name}")
        if name not in spec or not part:
            continue
        path = f"spec.{name}"
        _component(reading, part, path)
        # The component's pods carry the object's labels and annotations and its own.
        pod_labels = _merged(labels, part.get("labels"))
        own = _object(reading, part, "annotations", f"{path}.annotations")
        reading.metadata.append(PodMetadata(pod_labels, own, f"{path}.annotations"))
    for meta in reading.metadata:
        kservepods.annotation_sources(reading, meta.annotations, meta.labels, meta.annotations_path)
    return reading


def read_llm_inference_service(root: Mapping[str, Any]) -> Reading:
    """An LLMInferenceService: ``spec.model.uri`` (and LoRA adapters) and its pod specs."""
    reading = Reading()
    metadata = _mapping(root.get("metadata"))
    labels = _mapping(metadata.get("labels"))
    annotations = _mapping(metadata.get("annotations"))
    reading.metadata.append(PodMetadata(labels, annotations, "metadata.annotations"))
    spec = _object(reading, root, "spec", "spec")
    model = _object(reading, spec, "model", "spec.model")
    _string_source(reading, model.get("uri"), "spec.model.uri")
    lora = _object(reading, model, "lora", "spec.model.lora")
    adapters = lora.get("adapters")
    for index, adapter in enumerate(adapters if isinstance(adapters, list) else ()):
        _string_source(
            reading, _mapping(adapter).get("uri"), f"spec.model.lora.adapters[{index}].uri"
        )
    workloads = [("spec", spec)]
    prefill = _object(reading, spec, "prefill", "spec.prefill")
    if prefill:
        workloads.append(("spec.prefill", prefill))
    scheduler = _mapping(_mapping(spec.get("router")).get("scheduler"))
    if scheduler:
        workloads.append(("spec.router.scheduler", scheduler))
    for path, part in workloads:
        for key in ("template", "worker"):
            pod = _object(reading, part, key, f"{path}.{key}")
            if pod:
                reading.pods.append(PodPart(f"{path}.{key}", pod))
                kservepods.container_sources(reading, reading.pods[-1])
        if isinstance(part.get("labels"), dict) and part["labels"]:
            reading.metadata.append(
                PodMetadata(_merged(labels, part["labels"]), annotations, "metadata.annotations")
            )
    return reading


def read_serving_runtime(root: Mapping[str, Any]) -> Reading:
    """A (Cluster)ServingRuntime: the containers every InferenceService using it runs."""
    reading = Reading()
    metadata = _mapping(root.get("metadata"))
    spec = _object(reading, root, "spec", "spec")
    labels = _merged(_mapping(metadata.get("labels")), spec.get("labels"))
    reading.metadata.append(PodMetadata(labels, _EMPTY, "metadata.annotations"))
    reading.pods.append(PodPart("spec", spec))
    kservepods.container_sources(reading, reading.pods[-1])
    worker = _object(reading, spec, "workerSpec", "spec.workerSpec")
    if worker:
        reading.pods.append(PodPart("spec.workerSpec", worker))
        kservepods.container_sources(reading, reading.pods[-1])
    return reading
