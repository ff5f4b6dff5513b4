"""Find the pod specs, containers, labels and model of any pod-bearing kind.

Parsing never raises: admission and the fuzz tests hand in arbitrary JSON. What cannot
be read is reported as a ``problem`` so that a governed workload fails closed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

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

INFERENCE_SERVICE = "InferenceService"
#: Components of an InferenceService that run containers.
_ISVC_COMPONENTS = ("predictor", "transformer", "explainer")
CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")
SUPPORTED_KINDS = frozenset(_TEMPLATE_PATHS) | {INFERENCE_SERVICE}

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


@dataclasses.dataclass(frozen=True, slots=True)
class PodSpec:
    """A pod spec inside the object, with its JSON path."""

    path: str
    spec: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class ModelReference:
    """How the workload names its model: a ModelArtifact name or a storage URI."""

    path: str
    artifact_name: str | None = None
    storage_uri: str | None = None


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


def _isvc_parts(
    spec: Mapping[str, Any], problems: list[tuple[str, str]]
) -> tuple[list[Container], list[ModelReference]]:
    containers: list[Container] = []
    models: list[ModelReference] = []
    for component in _ISVC_COMPONENTS:
        part = spec.get(component)
        if part is None:
            continue
        if not isinstance(part, dict):
            problems.append((f"spec.{component}", "is not an object"))
            continue
        # A component is itself a pod spec (containers, securityContext...) plus framework
        # blocks such as `model`, `sklearn` or `pytorch` that carry a storageUri.
        pod = PodSpec(path=f"spec.{component}", spec=part)
        containers.extend(_containers_of(pod, problems))
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(value.get("storageUri"), str):
                models.append(
                    ModelReference(
                        path=f"spec.{component}.{key}.storageUri",
                        storage_uri=value["storageUri"],
                    )
                )
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
    if kind == INFERENCE_SERVICE:
        template_metadata, metadata_path = metadata, "metadata"
    else:
        path = _TEMPLATE_PATHS.get(kind, _TEMPLATE_PATHS["Pod"])[0]
        template_metadata, metadata_path = _mapping(_walk(root, path)), ".".join(path)
    return Header(
        kind=kind,
        namespace=_string(metadata.get("namespace")),
        name=_string(metadata.get("name")) or _string(metadata.get("generateName")),
        labels=_string_map(template_metadata.get("labels")),
        root=root,
        template_metadata=template_metadata,
        template_metadata_path=metadata_path,
    )


def complete(header: Header, namespace: str | None = None) -> Workload:
    """Read containers and model references, for a workload that some policy governs."""
    root = header.root
    problems: list[tuple[str, str]] = []
    if header.kind == INFERENCE_SERVICE:
        containers, models = _isvc_parts(_mapping(root.get("spec")), problems)
    else:
        spec_path = _TEMPLATE_PATHS.get(header.kind, _TEMPLATE_PATHS["Pod"])[1]
        pod_spec_value = _walk(root, spec_path)
        if pod_spec_value is not None and not isinstance(pod_spec_value, dict):
            problems.append((".".join(spec_path), "is not an object"))
        pod = PodSpec(path=".".join(spec_path), spec=_mapping(pod_spec_value))
        containers, models = _containers_of(pod, problems), []
    annotations = _mapping(header.template_metadata.get("annotations"))
    artifact_name = annotations.get(MODEL_ANNOTATION)
    if isinstance(artifact_name, str):
        models.append(
            ModelReference(
                path=f"{header.template_metadata_path}.annotations['{MODEL_ANNOTATION}']",
                artifact_name=artifact_name,
            )
        )
    return Workload(
        kind=header.kind,
        namespace=header.namespace if namespace is None else namespace,
        name=header.name,
        labels=header.labels,
        containers=tuple(containers),
        models=tuple(models),
        problems=tuple(problems),
    )


def parse(obj: Any) -> Workload:
    """Read a workload out of any object; never raises."""
    return complete(read_header(obj))
