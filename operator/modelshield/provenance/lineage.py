"""Lineage: what a workload is built from, and where a model or dataset runs (pure).

A ``Graph`` is made from Kubernetes objects as dicts (workloads and ModelArtifacts with
their status), from files or from a cluster alike. A workload's models are resolved the
way admission resolves them (the model-artifact annotation, or an InferenceService
storageUri matched to a ModelArtifact's spec.uri); a model's datasets are what its
verified provenance names (``status.provenance``), joined with the Dataset records of
the same URI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic

from modelshield.api.v1alpha1 import artifacts, provenance
from modelshield.engine import workloads
from modelshield.provenance import serving

#: Kinds whose pods serve models; objects owned by another (a Deployment's ReplicaSets
#: and Pods) are left out so each workload is listed once, by what its owner declares.
WORKLOAD_KINDS = frozenset(
    {
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "ReplicationController",
        "Job",
        "CronJob",
        "Pod",
        "InferenceService",
    }
)


@dataclasses.dataclass(frozen=True)
class DatasetLineage:
    """One training input of a model, and the Dataset record that vouches for it (if any)."""

    name: str
    uri: str
    digest: str
    record: str | None = None
    record_verified: bool = False
    record_signer: str | None = None


@dataclasses.dataclass(frozen=True)
class ModelLineage:
    """A served model and how it was made."""

    namespace: str
    name: str
    uri: str
    digest: str | None
    signer: str | None
    ready: bool
    provenance_verified: bool
    provenance: provenance.ProvenanceStatus | None
    datasets: tuple[DatasetLineage, ...] = ()


@dataclasses.dataclass(frozen=True)
class WorkloadLineage:
    """A workload, its images and its models (unresolved references by their text)."""

    kind: str
    namespace: str
    name: str
    images: tuple[str, ...]
    models: tuple[ModelLineage, ...]
    unresolved: tuple[str, ...] = ()
    #: Desired replicas of a Deployment or StatefulSet (0: scaled to zero); None otherwise.
    replicas: int | None = None

    @property
    def key(self) -> str:
        """Kind/namespace/name."""
        return f"{self.kind}/{self.namespace}/{self.name}"


def _condition(artifact: artifacts.ModelArtifact, kind: str) -> bool:
    status = artifact.status
    return status is not None and any(
        c.type == kind and c.status.value == "True" for c in status.conditions
    )


@dataclasses.dataclass
class Graph:
    """ModelArtifacts (``records``) and workloads (``served``), for both directions."""

    records: dict[tuple[str, str], artifacts.ModelArtifact] = dataclasses.field(
        default_factory=dict
    )
    served: list[workloads.Workload] = dataclasses.field(default_factory=list)
    #: Objects that could not be read, with why.
    skipped: list[str] = dataclasses.field(default_factory=list)
    #: Desired replicas by workload identity (kind/namespace/name).
    replicas: dict[str, int | None] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, objects: Iterable[Mapping[str, Any]]) -> Graph:
        """Index the objects; other kinds and owned objects are ignored."""
        graph = cls()
        for obj in objects:
            kind = obj.get("kind")
            metadata = obj.get("metadata") or {}
            if kind == "ModelArtifact":
                try:
                    artifact = artifacts.ModelArtifact.model_validate(
                        {
                            k: v
                            for k, v in obj.items()
                            if k in ("apiVersion", "kind", "metadata", "spec", "status")
                        }
                    )
                except pydantic.ValidationError as error:
                    graph.skipped.append(
                        f"ModelArtifact {metadata.get('name')}: {error.error_count()} error(s)"
                    )
                    continue
                graph.records[(artifact.metadata.namespace, artifact.metadata.name)] = artifact
            elif kind in WORKLOAD_KINDS and not metadata.get("ownerReferences"):
                parsed = workloads.parse(obj)
                graph.served.append(parsed)
                graph.replicas[parsed.identity] = serving.replicas_of(obj)
        return graph

    def _by_uri(self, namespace: str, uri: str) -> artifacts.ModelArtifact | None:
        found = sorted(
            (name, a)
            for (ns, name), a in self.records.items()
            if ns == namespace and a.spec.uri == uri
        )
        return found[0][1] if found else None

    def resolve(
        self, workload: workloads.Workload, reference: workloads.ModelReference
    ) -> artifacts.ModelArtifact | None:
        """The ModelArtifact a workload's model reference names, as admission finds it."""
        if reference.artifact_name is not None:
            return self.records.get((workload.namespace, reference.artifact_name))
        if reference.storage_uri is not None:
            return self._by_uri(workload.namespace, reference.storage_uri)
        return None

    def model(self, artifact: artifacts.ModelArtifact) -> ModelLineage:
        """How a model was made, with its datasets joined to their records."""
        namespace = artifact.metadata.namespace
        status = artifact.status or artifacts.ModelArtifactStatus()
        said = status.provenance
        datasets = []
        for dataset in said.datasets if said is not None else []:
            record = self._by_uri(namespace, dataset.uri)
            is_record = record is not None and record.spec.type is provenance.ArtifactType.DATASET
            datasets.append(
                DatasetLineage(
                    name=dataset.name,
                    uri=dataset.uri,
                    digest=dataset.digest,
                    record=record.metadata.name if record is not None and is_record else None,
                    record_verified=bool(
                        record is not None
                        and is_record
                        and _condition(record, artifacts.VERIFIED)
                        and record.status is not None
                        and record.status.verified_digest == dataset.digest
                    ),
                    record_signer=record.status.signer
                    if record is not None and is_record and record.status is not None
                    else None,
                )
            )
        return ModelLineage(
            namespace=namespace,
            name=artifact.metadata.name,
            uri=artifact.spec.uri,
            digest=status.verified_digest,
            signer=status.signer,
            ready=_condition(artifact, artifacts.READY),
            provenance_verified=_condition(artifact, artifacts.PROVENANCE) and said is not None,
            provenance=said,
            datasets=tuple(datasets),
        )

    def forward(self, workload: workloads.Workload) -> WorkloadLineage:
        """From a workload to its images, models, provenance, code and datasets."""
        models, unresolved = [], []
        for reference in workload.models:
            found = self.resolve(workload, reference)
            if found is None:
                text = reference.artifact_name or reference.storage_uri or reference.unresolved
                unresolved.append(str(text))
            else:
                models.append(self.model(found))
        return WorkloadLineage(
            kind=workload.kind,
            namespace=workload.namespace,
            name=workload.name,
            images=tuple(dict.fromkeys(c.image for c in workload.containers)),
            models=tuple(models),
            unresolved=tuple(unresolved),
            replicas=self.replicas.get(workload.identity),
        )

    def all_forward(self) -> list[WorkloadLineage]:
        """Every workload's lineage, in a stable order."""
        ordered = sorted(self.served, key=lambda w: (w.namespace, w.kind, w.name))
        return [self.forward(w) for w in ordered]

    def serving_model(self, namespace: str, name: str) -> list[WorkloadLineage]:
        """Every workload that serves the ModelArtifact."""
        return [
            lineage
            for lineage in self.all_forward()
            if any((m.namespace, m.name) == (namespace, name) for m in lineage.models)
        ]

    def trained_on(self, dataset: str, namespace: str | None = None) -> list[ModelLineage]:
        """Every model whose verified provenance names the dataset (a URI, or a record's name)."""
        uris = {dataset}
        if namespace is not None and (namespace, dataset) in self.records:
            uris.add(self.records[(namespace, dataset)].spec.uri)
        found = []
        for (ns, _), artifact in sorted(self.records.items()):
            if namespace is not None and ns != namespace:
                continue
            lineage = self.model(artifact)
            if lineage.provenance_verified and any(d.uri in uris for d in lineage.datasets):
                found.append(lineage)
        return found

    def serving_dataset(
        self, dataset: str, namespace: str | None = None
    ) -> list[tuple[ModelLineage, WorkloadLineage]]:
        """Every workload serving a model trained on the dataset, with that model."""
        return [
            (model, workload)
            for model in self.trained_on(dataset, namespace)
            for workload in self.serving_model(model.namespace, model.name)
        ]
