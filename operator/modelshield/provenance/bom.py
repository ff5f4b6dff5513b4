"""A CycloneDX 1.6 bill of materials of workloads: images, models, datasets, code.

Built and validated by cyclonedx-python-lib: each workload is an application whose
dependencies are its container images and its machine-learning models; each model (with
its manifest digest, signer, builder and commit as properties, the code repository as a
VCS reference) depends on its training datasets (data components with their digests).
The document is checked against the CycloneDX 1.6 JSON schema before it is returned.
"""

from __future__ import annotations

from collections.abc import Sequence

from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from modelshield.provenance import lineage


class InvalidBomError(ValueError):
    """The document does not validate against the CycloneDX schema (a bug here)."""


def _hashes(digest: str | None) -> list[HashType]:
    if digest and digest.startswith("sha256:"):
        return [HashType(alg=HashAlgorithm.SHA_256, content=digest.removeprefix("sha256:"))]
    return []


def _reference(
    url: str, kind: ExternalReferenceType, comment: str | None = None
) -> list[ExternalReference]:
    try:
        return [ExternalReference(type=kind, url=XsUri(url), comment=comment)]
    except ValueError:
        return []


def _model(model: lineage.ModelLineage) -> Component:
    said = model.provenance
    properties = [Property(name="modelshield:ready", value=str(model.ready).lower())]
    if model.signer:
        properties.append(Property(name="modelshield:signer", value=model.signer))
    properties.append(
        Property(
            name="modelshield:provenance-verified", value=str(model.provenance_verified).lower()
        )
    )
    references = _reference(model.uri, ExternalReferenceType.DISTRIBUTION)
    if said is not None:
        if said.builder:
            properties.append(Property(name="modelshield:builder", value=said.builder))
        if said.builder_id:
            properties.append(Property(name="modelshield:builder-id", value=said.builder_id))
        if said.commit:
            properties.append(Property(name="modelshield:commit", value=said.commit))
        if said.finished is not None:
            properties.append(Property(name="modelshield:trained", value=said.finished.isoformat()))
        if said.source:
            references += _reference(said.source, ExternalReferenceType.VCS, said.commit or None)
    return Component(
        name=model.name,
        group=model.namespace,
        type=ComponentType.MACHINE_LEARNING_MODEL,
        bom_ref=f"model:{model.namespace}/{model.name}",
        version=model.digest or None,
        hashes=_hashes(model.digest),
        external_references=references,
        properties=properties,
    )


def _dataset(model: lineage.ModelLineage, dataset: lineage.DatasetLineage) -> Component:
    properties = [
        Property(name="modelshield:record-verified", value=str(dataset.record_verified).lower())
    ]
    if dataset.record:
        properties.append(Property(name="modelshield:record", value=dataset.record))
    if dataset.record_signer:
        properties.append(Property(name="modelshield:signer", value=dataset.record_signer))
    return Component(
        name=dataset.name or dataset.uri,
        type=ComponentType.DATA,
        bom_ref=f"dataset:{model.namespace}:{dataset.uri}@{dataset.digest}",
        version=dataset.digest or None,
        hashes=_hashes(dataset.digest),
        external_references=_reference(dataset.uri, ExternalReferenceType.DISTRIBUTION),
        properties=properties,
    )


def build(workloads: Sequence[lineage.WorkloadLineage]) -> Bom:
    """The bill of materials of these workloads (one application component each)."""
    bom = Bom()
    components: dict[str, Component] = {}

    def add(component: Component) -> Component:
        key = str(component.bom_ref)
        if key not in components:
            components[key] = component
            bom.components.add(component)
        return components[key]

    for workload in workloads:
        application = Component(
            name=workload.name,
            group=workload.namespace,
            type=ComponentType.APPLICATION,
            bom_ref=f"workload:{workload.key}",
            properties=[Property(name="modelshield:kind", value=workload.kind)],
        )
        if len(workloads) == 1:
            bom.metadata.component = application  # the subject of the document
        else:
            application = add(application)
        parts = [
            add(Component(name=image, type=ComponentType.CONTAINER, bom_ref=f"image:{image}"))
            for image in workload.images
        ]
        for model in workload.models:
            component = add(_model(model))
            parts.append(component)
            inputs = [add(_dataset(model, dataset)) for dataset in model.datasets]
            bom.register_dependency(component, inputs)
        bom.register_dependency(application, parts)
    return bom


def render(bom: Bom) -> str:
    """The document as CycloneDX 1.6 JSON, validated against the schema."""
    text: str = JsonV1Dot6(bom).output_as_string(indent=2)
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if errors is not None:
        raise InvalidBomError(f"the CycloneDX document does not validate: {errors}")
    return text
