"""The reverse index: which workloads serve each ModelArtifact (pure).

A workload's model sources are read by the engine (``workloads.parse``: the model-artifact
annotation, every source KServe will load — storageUri(s), STORAGE_URI, the storage
initializer's arguments...) and resolved as admission resolves them
(``modelchecks.find_artifact``), so the index cannot miss a source that admission sees: a
second reader of the same objects would be a second truth. A workload whose source names
an artifact is recorded on it and on every other record of the same ``spec.uri`` in the
namespace: they describe the same files, and a look-alike record (``aaa`` with the URI of
the bad ``zzz``) must not hide where ``zzz``'s files run. A Dataset record lists the
workloads serving a model whose verified provenance names the dataset's URI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from modelshield.api.v1alpha1 import serving
from modelshield.engine import facts, modelchecks, workloads

ArtifactKey = tuple[str, str]
#: Kinds with a spec.replicas the record shows (0: scaled to zero, still deployed).
_REPLICATED = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})


@dataclasses.dataclass(frozen=True, order=True)
class Served:
    """One workload serving one model (kind, namespace, name, replicas)."""

    kind: str
    namespace: str
    name: str
    replicas: int | None = None


def replicas_of(body: Mapping[str, Any]) -> int | None:
    """The desired replicas of a replicated kind (absent means 1, as the API defaults it)."""
    if body.get("kind") not in _REPLICATED:
        return None
    value = (body.get("spec") or {}).get("replicas", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def read(body: Mapping[str, Any]) -> tuple[Served, tuple[workloads.ModelReference, ...]]:
    """A workload and its model sources, as the engine reads them for admission."""
    parsed = workloads.parse(body)
    workload = Served(parsed.kind, parsed.namespace, parsed.name, replicas_of(body))
    return workload, parsed.models


def served_artifacts(
    workload: Served,
    references: Iterable[workloads.ModelReference],
    source: facts.FactSource,
    uris: Mapping[str, Iterable[str]],
) -> frozenset[str]:
    """Names of the artifacts (in the workload's namespace) whose files the workload serves.

    ``uris`` maps a spec.uri to every artifact name in the namespace with that URI.
    """
    models = tuple(references)
    # find_artifact reads the namespace and the reference: nothing else of the workload.
    parsed = workloads.Workload(
        kind=workload.kind,
        namespace=workload.namespace,
        name=workload.name,
        labels={},
        containers=(),
        models=models,
    )
    names: set[str] = set()
    for reference in models:
        found = modelchecks.find_artifact(parsed, reference, source)
        if found is not None:
            names.add(found.name)
            names.update(uris.get(found.uri, ()))
    return frozenset(names)


def index(
    served: Mapping[Served, frozenset[str]], artifacts: Iterable[facts.ArtifactFacts]
) -> dict[ArtifactKey, serving.ServedBy]:
    """``status.servedBy`` of every artifact, from what each workload serves."""
    listed = list(artifacts)
    direct: dict[ArtifactKey, set[Served]] = {(a.namespace, a.name): set() for a in listed}
    for workload, names in served.items():
        for name in names:
            found = direct.get((workload.namespace, name))
            if found is not None:
                found.add(workload)
    by_artifact: dict[ArtifactKey, set[tuple[Served, str | None]]] = {
        key: {(workload, None) for workload in found} for key, found in direct.items()
    }
    for dataset in listed:
        if dataset.artifact_type != "Dataset":
            continue
        entries = by_artifact[(dataset.namespace, dataset.name)]
        for model in listed:
            said = model.provenance
            if (
                model.namespace == dataset.namespace
                and said is not None
                and said.verified
                and any(uri == dataset.uri for _, uri, _ in said.datasets)
            ):
                entries.update((w, model.name) for w in direct[(model.namespace, model.name)])
    return {key: _status(entries) for key, entries in by_artifact.items()}


def _status(entries: set[tuple[Served, str | None]]) -> serving.ServedBy:
    ordered = sorted(entries, key=lambda e: (e[0].kind, e[0].name, e[1] or ""))
    return serving.ServedBy(
        workloads=[
            serving.ServingWorkload(
                kind=w.kind, namespace=w.namespace, name=w.name, replicas=w.replicas, model=model
            )
            for w, model in ordered[: serving.MAX_LISTED]
        ],
        total=len(ordered),
    )
