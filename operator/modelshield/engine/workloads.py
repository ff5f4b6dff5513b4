"""Find the pod specs, containers, labels and model of any pod-bearing kind.

Parsing never raises: admission and the fuzz tests hand in arbitrary JSON. What cannot
be read is reported as a ``problem`` so that a governed workload fails closed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from modelshield.engine import kserve, kservepods, kserveruntimes

#: Pod-template annotation that names the ModelArtifact a workload serves.
MODEL_ANNOTATION = "modelshield.dev/model-artifact"

# Where each kind keeps its pod template: (path to template metadata, path to pod spec).
_TEMPLATE_PATHS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Pod": (("metadata",), ("spec",)),
    "Deployment": (("spec", "template", "metadata"), ("spec", "template", "spec")),
    "StatefulSet": (("spec", "template", "metadata"), ("spec", "template", "spec")),
    "DaemonSet": (("spec", "template", "metadata"), ("spec", "template", "spec")),
    "ReplicaSet": (("spec", "template", "metadata"), ("spec", "template", "spec")),
    "ReplicationController": (("spec", "template", "metadata"), ("spec", "template", "spec")),
    "Job": (("spec", "template", "metadata"), ("spec", "template", "spec")),
    "CronJob": (
        ("spec", "jobTemplate", "spec", "template", "metadata"),
        ("spec", "jobTemplate", "spec", "template", "spec"),
    ),
}

INFERENCE_SERVICE = kserve.INFERENCE_SERVICE
#: KServe's kinds, read as KServe turns them into pods (``engine.kserve``).
KSERVE_KINDS = frozenset(
    {
        kserve.INFERENCE_SERVICE,
        kserve.LLM_INFERENCE_SERVICE,
        kserve.SERVING_RUNTIME,
        kserve.CLUSTER_SERVING_RUNTIME,
    }
)
#: Kinds without a namespace: only cluster policies govern them, in every namespace.
CLUSTER_SCOPED_KINDS = frozenset({kserve.CLUSTER_SERVING_RUNTIME})
#: Kinds that name no model of their own (a runtime serves the models of others).
MODELLESS_KINDS = frozenset({kserve.SERVING_RUNTIME, kserve.CLUSTER_SERVING_RUNTIME})
CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")
SUPPORTED_KINDS = frozenset(_TEMPLATE_PATHS) | KSERVE_KINDS

_EMPTY: Mapping[str, Any] = {}


@dataclasses.dataclass(frozen=True, slots=True)
class Container:
    """One container wherever it sits, with the JSON path of its entry."""

    path: str
    field: str
    name: str
    image: str
    spec: Mapping[str, Any]
    pod: PodSpec
    #: Run by the pods but written elsewhere (the selected ServingRuntime's containers,
    #: the predictor's image retagged by runtimeVersion): judged on its image only (its
    #: other fields merge with the object's, and are judged on the runtime and the
    #: pods), never patched (the path names no field of this object).
    borrowed: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class PodSpec:
    """A pod spec inside the object, with its JSON path."""

    path: str
    spec: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class ModelReference:
    """How the workload names its model: a ModelArtifact name or a storage URI.

    Neither, with ``unresolved`` saying why: a source that cannot be told offline (a
    storage Secret's bucket, an environment variable from a ConfigMap...), never a pass.
    """

    path: str
    artifact_name: str | None = None
    storage_uri: str | None = None
    unresolved: str = ""
    #: Set on the S3 server the model is downloaded from, as written ("": none named,
    #: so AWS S3), with ``unresolved`` saying who names it: admitted only when it is the
    #: one ModelArtifacts are fetched from (``s3endpoints.ModelStore``).
    endpoint: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Workload:
    """What the engine needs from one object, whatever its kind."""

    kind: str
    namespace: str
    name: str
    #: The labels policies select on: the pod template's (an InferenceService's own).
    labels: Mapping[str, str]
    containers: tuple[Container, ...]
    models: tuple[ModelReference, ...]
    #: What could not be read; a governed workload with problems is denied.
    problems: tuple[tuple[str, str], ...] = ()
    #: Every label set its pods will carry (KServe: the object's merged with each
    #: component's); a policy that selects any of them governs the workload.
    label_sets: tuple[Mapping[str, str], ...] = ()
    #: An InferenceService's request of its ServingRuntime (``kserveruntimes``), whose
    #: containers ``with_runtime`` adds once the caller has looked the runtime up.
    runtime: kserveruntimes.Request | None = None

    @property
    def identity(self) -> str:
        """kind/namespace/name, as reports and status show it."""
        return f"{self.kind}/{self.namespace}/{self.name}"


# JSON objects arrive as dicts; checking `dict` rather than the `Mapping` ABC keeps the
# per-request path cheap (the ABC check costs several times more).
def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else _EMPTY


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _walk(root: Mapping[str, Any], path: Sequence[str]) -> Any:
    node: Any = root
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _string_map(value: Any) -> Mapping[str, str]:
    # Not copied: a non-string value simply never equals a selector's string.
    return value if isinstance(value, dict) else _EMPTY


def _containers_of(pod: PodSpec, problems: list[tuple[str, str]]) -> list[Container]:
    found = []
    for field in CONTAINER_FIELDS:
        entries = pod.spec.get(field)
        if entries is None:
            continue
        if not isinstance(entries, list):
            problems.append((f"{pod.path}.{field}", "is not a list"))
            continue
        for index, entry in enumerate(entries):
            path = f"{pod.path}.{field}[{index}]"
            if not isinstance(entry, dict):
                problems.append((path, "is not an object"))
                continue
            image = entry.get("image")
            if not isinstance(image, str) or not image:
                # A container without an image cannot be verified, so it cannot pass.
                problems.append((f"{path}.image", "is missing"))
                image = ""
            name = entry.get("name")
            found.append(
                Container(
                    path=path,
                    field=field,
                    name=name if isinstance(name, str) else f"#{index}",
                    image=image,
                    spec=entry,
                    pod=pod,
                )
            )
    return found


_KSERVE_READERS = {
    kserve.INFERENCE_SERVICE: kserve.read_inference_service,
    kserve.LLM_INFERENCE_SERVICE: kserve.read_llm_inference_service,
    kserve.SERVING_RUNTIME: kserve.read_serving_runtime,
    kserve.CLUSTER_SERVING_RUNTIME: kserve.read_serving_runtime,
}


def _reference(source: kservepods.Source) -> ModelReference:
    if source.uri is None:
        return ModelReference(
            path=source.path,
            unresolved=source.why or "it cannot be read",
            endpoint=source.endpoint,
        )
    return ModelReference(path=source.path, storage_uri=source.uri)


def _kserve_parts(
    reading: kserve.Reading, problems: list[tuple[str, str]]
) -> tuple[list[Container], list[ModelReference]]:
    containers: list[Container] = []
    for part in reading.pods:
        containers.extend(_containers_of(PodSpec(path=part.path, spec=part.spec), problems))
    for inline in reading.inline:
        # A framework block (predictor.model, predictor.sklearn...) is KServe's serving
        # container; its image replaces the ServingRuntime's.
        image = inline.spec.get("image")
        if not isinstance(image, str) or not image:
            problems.append((f"{inline.path}.image", "is not an image reference"))
            image = ""
        containers.append(
            Container(
                path=inline.path,
                field="containers",
                name=kserve.SERVING_CONTAINER,
                image=image,
                spec=inline.spec,
                pod=PodSpec(path=inline.pod.path, spec=inline.pod.spec),
            )
        )
    models = [_reference(source) for source in reading.sources]
    for meta in reading.metadata:
        artifact_name = meta.annotations.get(MODEL_ANNOTATION)
        if isinstance(artifact_name, str):
            models.append(
                ModelReference(
                    path=f"{meta.annotations_path}['{MODEL_ANNOTATION}']",
                    artifact_name=artifact_name,
                )
            )
    problems.extend(reading.problems)
    return containers, models


@dataclasses.dataclass(frozen=True, slots=True)
class Header:
    """The cheap part of a workload: enough to find the policies that govern it."""

    kind: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    root: Mapping[str, Any]
    #: The metadata that carries the pod labels and the model annotation, and its path.
    template_metadata: Mapping[str, Any]
    template_metadata_path: str
    #: Every label set the pods will carry (one but for KServe's kinds).
    label_sets: tuple[Mapping[str, str], ...] = ()
    #: A KServe object as KServe will run it (``engine.kserve``); None for other kinds.
    kserve_reading: kserve.Reading | None = None


def template_metadata_path(kind: str) -> str:
    """The JSON path of the metadata whose annotations name a workload's model."""
    if kind == INFERENCE_SERVICE:
        return "metadata"
    return ".".join(_TEMPLATE_PATHS.get(kind, _TEMPLATE_PATHS["Pod"])[0])


def read_header(obj: Any) -> Header:
    """Kind, namespace, name and selection labels; never raises."""
    root = _mapping(obj)
    kind = _string(root.get("kind"))
    metadata = _mapping(root.get("metadata"))
    reader = _KSERVE_READERS.get(kind)
    reading = reader(root) if reader is not None else None
    if reading is not None:
        template_metadata, metadata_path = metadata, "metadata"
        label_sets = tuple(_string_map(m.labels) for m in reading.metadata)
    else:
        path = _TEMPLATE_PATHS.get(kind, _TEMPLATE_PATHS["Pod"])[0]
        template_metadata, metadata_path = _mapping(_walk(root, path)), ".".join(path)
        label_sets = (_string_map(template_metadata.get("labels")),)
    return Header(
        kind=kind,
        namespace=_string(metadata.get("namespace")),
        name=_string(metadata.get("name")) or _string(metadata.get("generateName")),
        labels=label_sets[0] if label_sets else _EMPTY,
        root=root,
        template_metadata=template_metadata,
        template_metadata_path=metadata_path,
        label_sets=label_sets,
        kserve_reading=reading,
    )


def complete(header: Header, namespace: str | None = None) -> Workload:
    """Read containers and model references, for a workload that some policy governs."""
    root = header.root
    problems: list[tuple[str, str]] = []
    runtime = None
    if header.kserve_reading is not None:
        containers, models = _kserve_parts(header.kserve_reading, problems)
        if header.kind == INFERENCE_SERVICE:
            runtime = kserveruntimes.request_of(root)
            retagged = kserveruntimes.version_container(runtime) if runtime else None
            if retagged is not None:
                containers.append(_borrowed(retagged))
    else:
        spec_path = _TEMPLATE_PATHS.get(header.kind, _TEMPLATE_PATHS["Pod"])[1]
        pod_spec_value = _walk(root, spec_path)
        if pod_spec_value is not None and not isinstance(pod_spec_value, dict):
            problems.append((".".join(spec_path), "is not an object"))
        pod = PodSpec(path=".".join(spec_path), spec=_mapping(pod_spec_value))
        containers = _containers_of(pod, problems)
        annotations = _mapping(header.template_metadata.get("annotations"))
        annotations_path = f"{header.template_metadata_path}.annotations"
        models = []
        artifact_name = annotations.get(MODEL_ANNOTATION)
        if isinstance(artifact_name, str):
            models.append(
                ModelReference(
                    path=f"{annotations_path}['{MODEL_ANNOTATION}']",
                    artifact_name=artifact_name,
                )
            )
        # What KServe's storage initializer will download into this pod, so that the pod
        # stands on its own even if its InferenceService was never checked.
        sources = kservepods.read_pod(
            pod.spec,
            pod.path,
            annotations,
            _mapping(header.template_metadata.get("labels")),
            annotations_path,
        )
        models.extend(_reference(source) for source in sources)
    return Workload(
        kind=header.kind,
        namespace=header.namespace if namespace is None else namespace,
        name=header.name,
        labels=header.labels,
        containers=tuple(containers),
        models=tuple(models),
        problems=tuple(problems),
        label_sets=header.label_sets,
        runtime=runtime,
    )


def _borrowed(container: kserveruntimes.Borrowed) -> Container:
    parent = container.path.rsplit(".spec.containers[", 1)[0]
    return Container(
        path=container.path,
        field="containers",
        name=container.name,
        image=container.image,
        spec=container.spec,
        pod=PodSpec(path=parent, spec=_EMPTY),
        borrowed=True,
    )


def with_runtime(workload: Workload, kind: str, runtime: Mapping[str, Any]) -> Workload:
    """The InferenceService with the containers its named ServingRuntime (``kind``:
    ServingRuntime or ClusterServingRuntime) adds to the predictor pods."""
    if workload.runtime is None or workload.runtime.name is None:
        return workload
    borrowed = kserveruntimes.borrowed_containers(workload.runtime, kind, runtime)
    return dataclasses.replace(
        workload, containers=workload.containers + tuple(_borrowed(c) for c in borrowed)
    )


def parse(obj: Any) -> Workload:
    """Read a workload out of any object; never raises."""
    return complete(read_header(obj))
