"""Training provenance: what a policy demands of it, and what the operator records.

A policy's ``models.provenance`` block asks for a signed in-toto statement (SLSA
provenance v1 predicate, DSSE envelope) bound to the model's verified digest, signed by a
trusted builder, naming datasets from allowed sources (and, when asked, datasets that a
verified ``ModelArtifact`` of type ``Dataset`` records with the same digest). The operator
verifies the statement and writes what it names into ``status.provenance``; admission
judges that status against each policy and never fetches anything.
"""

from __future__ import annotations

import datetime
from enum import StrEnum
from typing import Annotated

import pydantic

from modelshield.api.v1alpha1.common import ApiModel, Duration
from modelshield.api.v1alpha1.signers import Signer

#: The file the operator looks for when ``spec.provenance.uri`` is not set: beside the
#: model (never inside it, where it would change the digest it attests), named after it.
DEFAULT_SUFFIX = ".intoto.jsonl"

#: The Provenance condition type on a ModelArtifact.
PROVENANCE = "Provenance"

#: Dependencies a statement may name before the list in status is cut (and says so).
MAX_DATASETS = 32

#: A dataset source prefix: scheme://authority/path (file:///path has no authority), no
#: whitespace, query, fragment or user information (a prefix with those could never match
#: a dataset URI as intended).
DatasetSourcePrefix = Annotated[
    str,
    pydantic.Field(
        min_length=1,
        max_length=2048,
        pattern=r"^(file:///[^\s?#@]*|[a-z][a-z0-9+.-]*://[^\s?#@/][^\s?#@]*)$",
    ),
]


class ArtifactType(StrEnum):
    """What a ModelArtifact records: a model that workloads serve, or a training dataset."""

    MODEL = "Model"
    DATASET = "Dataset"


class ProvenanceRequirements(ApiModel):
    """Signed training provenance the model must carry (in-toto statement, SLSA provenance v1)."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.requireSignedDatasets) || !self.requireSignedDatasets "
                    "|| (has(self.datasetSigners) && size(self.datasetSigners) > 0)",
                    "message": "requireSignedDatasets needs datasetSigners",
                }
            ]
        }
    )

    required: bool = pydantic.Field(
        default=True,
        description=(
            "A model without verified provenance is refused (ProvenanceMissing). False: "
            "provenance is judged only when the model has one."
        ),
    )
    trusted_builders: list[Signer] = pydantic.Field(
        description=(
            "Who may sign the provenance statement (the training pipeline's keys or keyless "
            "identities); any one of them (key rotation: list both)."
        ),
        min_length=1,
        max_length=16,
    )
    allowed_dataset_sources: list[DatasetSourcePrefix] = pydantic.Field(
        default_factory=list,
        description=(
            "Where training datasets may come from, as URI prefixes: s3://data/fraud/ (or "
            "s3://data/fraud) admits every dataset under s3://data/fraud/ and, without the "
            "slash, that object itself; it never admits s3://data/fraud-evil/. A bare "
            "scheme://host admits only datasets on that host. Empty allows any source."
        ),
        max_length=64,
    )
    require_signed_datasets: bool = pydantic.Field(
        default=False,
        description=(
            "Each dataset the provenance names must be recorded by a ModelArtifact of type "
            "Dataset in the workload's namespace with the same URI, verified, with the same "
            "digest, and signed by one of datasetSigners (DatasetUnverified otherwise)."
        ),
    )
    dataset_signers: list[Signer] = pydantic.Field(
        default_factory=list,
        description="Who may sign datasets (OpenSSF model-signing format over the dataset's files).",
        max_length=16,
    )
    max_age: Duration | None = pydantic.Field(
        default=None,
        description=(
            "The training run must have finished (runDetails.metadata.finishedOn, else "
            "startedOn) less than this long ago, e.g. 90d (ProvenanceExpired)."
        ),
    )

    @pydantic.model_validator(mode="after")
    def _signed_datasets_have_signers(self) -> ProvenanceRequirements:
        if self.require_signed_datasets and not self.dataset_signers:
            raise ValueError("requireSignedDatasets needs datasetSigners")
        return self


class ProvenanceReference(ApiModel):
    """Where the model's training provenance (a DSSE envelope of an in-toto statement) is found."""

    uri: str | None = pydantic.Field(
        default=None,
        description=(
            "URI of the provenance file (one DSSE envelope, or one per line); any scheme "
            "spec.uri may use. Defaults to the model's URI without its trailing slash plus "
            ".intoto.jsonl, beside the model (s3://models/fraud/v3/ -> "
            "s3://models/fraud/v3.intoto.jsonl); oci:// models must set it."
        ),
        max_length=2048,
        pattern=r"^(file|pvc|https?|s3|oci)://",
    )


class DatasetRecord(ApiModel):
    """One training input the provenance names."""

    name: str = pydantic.Field(default="", description="Its name in the statement.", max_length=253)
    uri: str = pydantic.Field(default="", description="Where it was read from.", max_length=2048)
    digest: str = pydantic.Field(
        default="",
        description="Its sha256 digest as the statement gives it (sha256:<64 hex>), or empty.",
        max_length=80,
    )


class ProvenanceStatus(ApiModel):
    """What the verified provenance statement says (the Provenance condition says whether it verified)."""

    builder: str | None = pydantic.Field(
        default=None,
        description="Name of the trusted builder whose signature verified.",
        max_length=253,
    )
    builder_key: str = pydantic.Field(
        default="",
        description=(
            "sha256 fingerprint of the public key (DER SubjectPublicKeyInfo) whose signature "
            "verified: a policy accepts the statement only from its own builder's key."
        ),
        max_length=80,
    )
    builder_issuer: str = pydantic.Field(
        default="",
        description="Keyless builder: the OIDC issuer of the certificate that verified.",
        max_length=1024,
    )
    builder_identity: str = pydantic.Field(
        default="",
        description=(
            "Keyless builder: the certificate identity (SAN) that verified; a policy accepts "
            "the statement only when its own keyless builder names this issuer and identity."
        ),
        max_length=4096,
    )
    builder_id: str = pydantic.Field(
        default="", description="runDetails.builder.id of the statement.", max_length=2048
    )
    source: str = pydantic.Field(
        default="", description="The code repository the model was trained from.", max_length=2048
    )
    commit: str = pydantic.Field(
        default="", description="The code's commit (gitCommit digest).", max_length=128
    )
    finished: datetime.datetime | None = pydantic.Field(
        default=None,
        description="When the training run finished (finishedOn, else startedOn), if stated.",
    )
    datasets: list[DatasetRecord] = pydantic.Field(
        default_factory=list,
        description="Training inputs other than code, as the statement names them.",
        max_length=MAX_DATASETS,
    )
    datasets_truncated: bool = pydantic.Field(
        default=False, description="The statement named more datasets than are listed."
    )


def default_uri(model_uri: str) -> str | None:
    """The conventional provenance location beside a model, or None for oci:// models."""
    if model_uri.startswith("oci://"):
        return None
    return model_uri.rstrip("/") + DEFAULT_SUFFIX
