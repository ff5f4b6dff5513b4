"""The ServingRuntime an InferenceService names, as KServe's predictor turns it into containers.

Written from KServe v0.17.0 (``pkg/controller/v1beta1/inferenceservice/components/
predictor.go``: ``reconcileModel``; ``inferenceservice/utils``: ``GetServingRuntime``,
``MergeRuntimeContainers``, ``UpdateImageTag``):

- ``predictor.model.runtime`` names the runtime: the ServingRuntime of that name in the
  InferenceService's namespace, else the ClusterServingRuntime of that name;
- the runtime's ``kserve-container`` is merged with ``predictor.model`` (the
  InferenceService's fields win, so its ``image`` replaces the runtime's), its
  ``transformer-container`` with the predictor's container of that name, and every other
  runtime container joins the pod as written;
- ``predictor.model.runtimeVersion`` replaces the tag of the serving container's image
  (unless the image is pinned by digest).

Without ``runtime``, KServe picks one by ``modelFormat`` among the runtimes that
auto-select it, ordered by protocol version, creation time, name and priority: that
choice is not made here (the pods are judged with the containers KServe gives them).

Pure: the runtime itself is looked up by the caller (the webhook's cache).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, TypeVar

SERVING_RUNTIME = "ServingRuntime"
CLUSTER_SERVING_RUNTIME = "ClusterServingRuntime"
SERVING_CONTAINER = "kserve-container"
TRANSFORMER_CONTAINER = "transformer-container"
RUNTIME_PATH = "spec.predictor.model.runtime"
RUNTIME_VERSION_PATH = "spec.predictor.model.runtimeVersion"
#: UpdateImageTag's pattern: the tag at the end of the reference.
_TAG = re.compile(r"(:([\w.\-_]*))$")


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """What an InferenceService's predictor asks of its runtime."""

    #: ``predictor.model.runtime``; None when KServe selects one by model format.
    name: str | None
    #: ``predictor.model.image``, which replaces the runtime's serving image.
    model_image: str | None
    #: ``predictor.model.runtimeVersion``, which replaces the serving image's tag.
    runtime_version: str | None
    #: The predictor's ``transformer-container`` sets an image of its own.
    transformer_image: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Borrowed:
    """A container the pods will run that the InferenceService does not spell out."""

    path: str
    name: str
    image: str
    spec: Mapping[str, Any]


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def request_of(root: Mapping[str, Any]) -> Request | None:
    """The runtime request of an InferenceService's predictor model, or None without one."""
    spec = root.get("spec")
    predictor = spec.get("predictor") if isinstance(spec, dict) else None
    model = predictor.get("model") if isinstance(predictor, dict) else None
    if not isinstance(model, dict):
        return None
    containers = predictor.get("containers") if isinstance(predictor, dict) else None
    transformer = any(
        isinstance(c, dict) and c.get("name") == TRANSFORMER_CONTAINER and _string(c.get("image"))
        for c in (containers if isinstance(containers, list) else ())
    )
    return Request(
        name=_string(model.get("runtime")),
        model_image=_string(model.get("image")),
        runtime_version=_string(model.get("runtimeVersion")),
        transformer_image=transformer,
    )


def retagged(image: str, version: str | None) -> str:
    """``UpdateImageTag``: the image with ``version`` as its tag (a digest stays)."""
    if version is None or "@sha256:" in image:
        return image
    if _TAG.search(image):
        return _TAG.sub(":" + version.replace("\\", "\\\\"), image)
    return f"{image}:{version}"


def version_container(request: Request) -> Borrowed | None:
    """The predictor's own image under another tag, when ``runtimeVersion`` retags it."""
    if request.model_image is None or request.runtime_version is None:
        return None
    image = retagged(request.model_image, request.runtime_version)
    if image == request.model_image:
        return None
    return Borrowed(RUNTIME_VERSION_PATH, SERVING_CONTAINER, image, {"image": image})


_Runtime = TypeVar("_Runtime")


def named(
    namespace: str,
    name: str,
    namespaced: Mapping[tuple[str, str], _Runtime],
    cluster: Mapping[str, _Runtime],
) -> tuple[str, _Runtime] | None:
    """``GetServingRuntime``: the namespace's ServingRuntime of that name, else the
    ClusterServingRuntime of that name; (kind, runtime), None when neither exists."""
    found = namespaced.get((namespace, name))
    if found is not None:
        return SERVING_RUNTIME, found
    shared = cluster.get(name)
    if shared is not None:
        return CLUSTER_SERVING_RUNTIME, shared
    return None


def runtime_path(kind: str, name: str) -> str:
    """Where the runtime's containers are reported: the field naming it, and which it is."""
    return f"{RUNTIME_PATH}[{kind} {name}]"


def borrowed_containers(request: Request, kind: str, runtime: Mapping[str, Any]) -> list[Borrowed]:
    """The runtime's containers the predictor pods will run, with the images they get."""
    spec = runtime.get("spec")
    containers = spec.get("containers") if isinstance(spec, dict) else None
    found: list[Borrowed] = []
    base = runtime_path(kind, request.name or "")
    for index, container in enumerate(containers if isinstance(containers, list) else ()):
        if not isinstance(container, dict):
            continue
        name = container.get("name")
        image = container.get("image")
        if name == SERVING_CONTAINER:
            if request.model_image is not None:
                continue  # predictor.model.image replaces it: judged where it is written
            image = retagged(image, request.runtime_version) if isinstance(image, str) else image
        elif name == TRANSFORMER_CONTAINER and request.transformer_image:
            continue
        found.append(
            Borrowed(
                f"{base}.spec.containers[{index}]",
                name if isinstance(name, str) else f"#{index}",
                image if isinstance(image, str) else "",
                container,
            )
        )
    return found
