"""What KServe's storage machinery makes of a pod: the models its storage initializer
downloads, and from which server.

Written from KServe v0.15.2 and v0.17.0 (``pkg/webhook/admission/pod/
storage_initializer_injector.go``, ``pkg/credentials`` and the ``kserve_storage``
package the storage initializer runs). At a pod (or pod template, or a component of a
KServe object, which inlines one), the model is what the ``storage-initializer`` init
container downloads (its arguments: source, destination, ...; its environment picks the
S3 server), or what KServe's pod mutator will inject it for (the
``internal.serving.kserve.io/storage-initializer-sourceuri`` annotation, with the
storage-spec annotations), and any container's ``STORAGE_URI``.

Pure and never raising: what cannot be read is returned as a problem.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from modelshield.engine import downloads

_INTERNAL = "internal.serving.kserve.io"
SOURCE_URI_ANNOTATION = f"{_INTERNAL}/storage-initializer-sourceuri"
_STORAGE_SPEC_ANNOTATION = f"{_INTERNAL}/storage-spec"
_STORAGE_SPEC_PARAMS_ANNOTATION = f"{_INTERNAL}/storage-spec-param"
_LOCAL_MODEL_LABEL = f"{_INTERNAL}/localmodel"
_LOCAL_MODEL_SOURCE_ANNOTATION = f"{_INTERNAL}/localmodel-sourceuri"
_LOCAL_MODEL_PVC_ANNOTATION = f"{_INTERNAL}/localmodel-pvc-name"
#: KServe's storage-spec path before the Secret supplies scheme and bucket.
PLACEHOLDER_SCHEME = "<scheme-placeholder>://"
STORAGE_INITIALIZER = "storage-initializer"
STORAGE_URI_ENV = "STORAGE_URI"


@dataclasses.dataclass(frozen=True, slots=True)
class PodPart:
    """A pod spec (or a component, which inlines one) whose container lists KServe runs."""

    path: str
    spec: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """A model the pods will load; ``uri`` None when it cannot be told offline (why)."""

    path: str
    uri: str | None
    why: str = ""
    #: Not a model but the S3 server it is downloaded from, as written ("": none, so
    #: AWS S3): admitted only when it is the one ModelArtifacts are fetched from.
    endpoint: str | None = None


@dataclasses.dataclass(frozen=True)
class Found:
    """The model sources read so far, and what could not be read (path, problem)."""

    sources: list[Source] = dataclasses.field(default_factory=list)
    problems: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def env_sources(reading: Found, container: Mapping[str, Any], path: str) -> None:
    env = container.get("env")
    if not isinstance(env, list):
        return
    for index, entry in enumerate(env):
        if not isinstance(entry, dict) or entry.get("name") != STORAGE_URI_ENV:
            continue
        where = f"{path}.env[{index}]"
        if entry.get("valueFrom") is not None:
            reading.sources.append(
                Source(
                    f"{where}.valueFrom",
                    None,
                    f"{STORAGE_URI_ENV} is set from a ConfigMap or Secret, which admission "
                    "does not read; write the model's URI as its value",
                )
            )
        value = entry.get("value")
        # A local path is where a volume or the storage initializer put the files, not a
        # download: KServe itself rewrites the serving container's value to /mnt/models.
        if isinstance(value, str) and "://" in value:
            reading.sources.append(Source(f"{where}.value", value))


def container_sources(reading: Found, pod: PodPart) -> None:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        entries = pod.spec.get(field)
        if not isinstance(entries, list):
            continue
        for index, entry in enumerate(entries):
            if isinstance(entry, dict):
                path = f"{pod.path}.{field}[{index}]"
                env_sources(reading, entry, path)
                if field == "initContainers" and entry.get("name") == STORAGE_INITIALIZER:
                    _initializer_sources(reading, entry, path)


def _initializer_sources(reading: Found, container: Mapping[str, Any], path: str) -> None:
    """initializer-entrypoint SRC_0 DEST_0 ... SRC_n DEST_n: every SRC is downloaded."""
    if container.get("command"):
        # KServe's container has none (utils.CreateInitContainerWithConfig): with another
        # entrypoint the arguments no longer say what is downloaded.
        reading.sources.append(
            Source(
                f"{path}.command",
                None,
                "the storage initializer runs its own command, so its arguments do not say "
                "what it downloads; remove the command",
            )
        )
    for choice in downloads.endpoint_choices(container):
        reading.sources.append(
            Source(f"{path}.{choice.field}", None, choice.why, endpoint=choice.endpoint)
        )
    args = container.get("args")
    if not isinstance(args, list) or not args or len(args) % 2:
        reading.problems.append(
            (f"{path}.args", "is not the storage initializer's source/destination pairs")
        )
        return
    uris = [value for value in args[::2] if isinstance(value, str)]
    default = downloads.default_endpoint_choice(container, uris)
    if default is not None:
        reading.sources.append(
            Source(f"{path}.{default.field}", None, default.why, endpoint=default.endpoint)
        )
    for index in range(0, len(args), 2):
        value = args[index]
        if not isinstance(value, str):
            reading.problems.append((f"{path}.args[{index}]", "is not a string"))
        elif value.startswith(PLACEHOLDER_SCHEME):
            reading.sources.append(
                Source(f"{path}.args[{index}]", None, "its storage Secret was never applied")
            )
        elif downloads.VARIABLE_REFERENCE in value:
            reading.sources.append(
                Source(
                    f"{path}.args[{index}]",
                    None,
                    "the kubelet substitutes $(...) in arguments, so the URI downloaded is "
                    "not the one written; write the URI itself",
                )
            )
        else:
            reading.sources.append(Source(f"{path}.args[{index}]", value))


def annotation_sources(
    reading: Found,
    annotations: Mapping[str, Any],
    labels: Mapping[str, Any],
    path: str,
    *,
    injected: bool = False,
) -> None:
    """The source KServe's pod mutator injects the storage initializer for (``injected``:
    the pod has one already, and the mutator then leaves it as it is)."""
    value = annotations.get(SOURCE_URI_ANNOTATION)
    if not isinstance(value, str):
        return
    where = f"{path}['{SOURCE_URI_ANNOTATION}']"
    if not injected:
        for choice in downloads.storage_spec_choice(
            annotations, _STORAGE_SPEC_ANNOTATION, _STORAGE_SPEC_PARAMS_ANNOTATION
        ):
            reading.sources.append(
                Source(f"{path}['{choice.field}']", None, choice.why, endpoint=choice.endpoint)
            )
    local_model = labels.get(_LOCAL_MODEL_LABEL)
    if isinstance(local_model, str):
        # InjectStorageInitializer: the LocalModel cache's PVC instead of a download.
        pvc = annotations.get(_LOCAL_MODEL_PVC_ANNOTATION)
        cached = annotations.get(_LOCAL_MODEL_SOURCE_ANNOTATION)
        sub = value.removeprefix(cached) if isinstance(cached, str) else value
        sub = sub if sub.startswith("/") else "/" + sub
        uri = f"pvc://{pvc}/models/{local_model}{sub}" if isinstance(pvc, str) else None
        reading.sources.append(Source(where, uri, "its local model PVC is not named"))
        return
    if value.startswith(PLACEHOLDER_SCHEME):
        try:
            params = json.loads(str(annotations.get(_STORAGE_SPEC_PARAMS_ANNOTATION, "{}")))
        except ValueError:
            params = {}
        uri, why = downloads.storage_spec_uri(value.removeprefix(PLACEHOLDER_SCHEME), params)
        reading.sources.append(Source(where, uri, why))
        return
    reading.sources.append(Source(where, value))


def _names_a_source(spec: Mapping[str, Any], annotations: Mapping[str, Any]) -> bool:
    """A cheap look first: most governed pods have nothing of KServe's (every review)."""
    if SOURCE_URI_ANNOTATION in annotations:
        return True
    for field in ("initContainers", "containers", "ephemeralContainers"):
        entries = spec.get(field)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            if field == "initContainers" and entry.get("name") == STORAGE_INITIALIZER:
                return True
            env = entry.get("env")
            if isinstance(env, list):
                for variable in env:
                    if isinstance(variable, dict) and variable.get("name") == STORAGE_URI_ENV:
                        return True
    return False


def read_pod(
    spec: Mapping[str, Any],
    spec_path: str,
    annotations: Mapping[str, Any],
    labels: Mapping[str, Any],
    annotations_path: str,
) -> list[Source]:
    """The models a pod (or pod template) loads through KServe's storage machinery."""
    if not _names_a_source(spec, annotations):
        return []
    reading = Found()
    inits = spec.get("initContainers")
    injected = isinstance(inits, list) and any(
        isinstance(c, dict) and c.get("name") == STORAGE_INITIALIZER for c in inits
    )
    annotation_sources(reading, annotations, labels, annotations_path, injected=injected)
    container_sources(reading, PodPart(spec_path, spec))
    return reading.sources
