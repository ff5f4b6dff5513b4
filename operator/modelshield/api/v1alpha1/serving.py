"""Where a model or dataset version runs: the workloads the operator found serving it.

The operator writes ``status.servedBy`` on every ModelArtifact (issue 16, "where every
model version runs"): the workloads whose model sources (read by the engine exactly as
admission reads them) name the record, or name a model trained on a Dataset record.
"""

from __future__ import annotations

import pydantic

from modelshield.api.v1alpha1.common import ApiModel

#: How many workloads a record lists; ``total`` counts them all.
MAX_LISTED = 50


class ServingWorkload(ApiModel):
    """One workload serving the model (or a model trained on the dataset)."""

    kind: str = pydantic.Field(
        description="Deployment, StatefulSet, DaemonSet, Job, CronJob or InferenceService.",
        max_length=63,
    )
    namespace: str = pydantic.Field(description="Its namespace.", max_length=253)
    name: str = pydantic.Field(description="Its name.", max_length=253)
    replicas: int | None = pydantic.Field(
        default=None,
        ge=0,
        description=(
            "Desired replicas (spec.replicas) of a Deployment or StatefulSet; 0: scaled to "
            "zero, still deployed. Not given for an InferenceService."
        ),
    )
    model: str | None = pydantic.Field(
        default=None,
        description=(
            "On a Dataset record: the ModelArtifact, trained on this dataset by its verified "
            "provenance, that the workload serves."
        ),
        max_length=253,
    )


class ServedBy(ApiModel):
    """The workloads serving a record, as the operator last found them."""

    workloads: list[ServingWorkload] = pydantic.Field(
        default_factory=list,
        description=(
            f"The first {MAX_LISTED} workloads by kind and name (total counts them all); "
            "kept current as workloads are created, changed and deleted."
        ),
        max_length=MAX_LISTED,
    )
    total: int = pydantic.Field(
        default=0, ge=0, description="How many workloads serve it (more than listed: truncated)."
    )
