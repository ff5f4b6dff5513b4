"""ModelArtifact: one model version, and the facts the operator established about it."""

from __future__ import annotations

import datetime

import pydantic

from modelshield.api.v1alpha1 import common, serving
from modelshield.api.v1alpha1 import provenance as provenance_types
from modelshield.api.v1alpha1.common import ApiModel, Severity
from modelshield.api.v1alpha1.policies import ObjectMeta
from modelshield.api.v1alpha1.provenance import (
    ArtifactType,
    ProvenanceReference,
    ProvenanceStatus,
)

DIGEST_PATTERN = r"^sha256:[a-f0-9]{64}$"
#: KServe's storage initializer downloads every key that starts with an s3:// path
#: (s3://b/fraud also serves fraud-evil/...), while the operator verifies the directory.
S3_URI_MESSAGE = (
    "an s3:// uri must end with '/': it names a directory, and KServe downloads every "
    "object whose key starts with the path (s3://b/fraud would also serve s3://b/fraud-evil/); "
    "add '/' at the end"
)

#: Condition types on a ModelArtifact's status.
VERIFIED = "Verified"
SCANNED = "Scanned"
#: Written when a policy asks for training provenance.
PROVENANCE = provenance_types.PROVENANCE
READY = "Ready"


class SignatureReference(ApiModel):
    """Where the model's signature (an OpenSSF model-signing bundle) is found."""

    uri: str | None = pydantic.Field(
        default=None,
        description="URI of the signature bundle; defaults to model.sig at the root of the model.",
        max_length=2048,
    )


class ModelArtifactSpec(ApiModel):
    """One model version: where it lives and what it must hash to."""

    uri: str = pydantic.Field(
        description=(
            "Where the model files are: a file://, pvc://, http(s)://, s3:// or oci:// URI "
            "(the schemes the operator can fetch; gs:// is not one: serve Google Cloud "
            "Storage through its S3-compatible endpoint as s3://). An s3:// URI is a "
            "directory and ends with '/' (s3://models/fraud/v7/)."
        ),
        min_length=1,
        max_length=2048,
        pattern=r"^(file|pvc|https?|s3|oci)://",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!self.startsWith('s3://') || self.endsWith('/')",
                    "message": S3_URI_MESSAGE,
                }
            ]
        },
    )
    digest: str | None = pydantic.Field(
        default=None,
        description="Expected sha256 digest of the signed model manifest (sha256:<64 hex>).",
        pattern=DIGEST_PATTERN,
    )
    signature: SignatureReference = pydantic.Field(
        default_factory=SignatureReference, description="Where the model's signature is found."
    )
    type: ArtifactType = pydantic.Field(
        default=ArtifactType.MODEL,
        description=(
            "Model (served by workloads) or Dataset (a training dataset, fetched and verified "
            "the same way against the policies' models.provenance.datasetSigners, never "
            "served; a workload naming it is refused)."
        ),
    )
    recheck_interval: common.Duration = pydantic.Field(
        default="24h",
        description="How often the operator fetches, verifies and scans the model again.",
    )
    provenance: ProvenanceReference = pydantic.Field(
        default_factory=ProvenanceReference,
        description="Where the model's training provenance is found (read when a policy asks for it).",
    )

    @pydantic.field_validator("uri")
    @classmethod
    def _s3_uri_is_a_directory(cls, uri: str) -> str:
        if uri.startswith("s3://") and not uri.endswith("/"):
            raise ValueError(S3_URI_MESSAGE)
        return uri


class ScanFinding(ApiModel):
    """One thing the scanner found in a model file."""

    severity: Severity = pydantic.Field(description="Low, Medium, High or Critical.")
    file: str = pydantic.Field(description="Path of the file inside the model.", max_length=4096)
    location: str = pydantic.Field(
        default="",
        description="Byte offset, operator or layer where it was found.",
        max_length=1024,
    )
    reason: str = pydantic.Field(description="Why this is a finding.", max_length=4096)


class ModelArtifactStatus(ApiModel):
    """Facts the operator established; admission reads them and never downloads a model."""

    observed_generation: int = pydantic.Field(
        default=0, ge=0, description="The .metadata.generation this status describes."
    )
    conditions: list[common.Condition] = pydantic.Field(
        default_factory=list,
        description="Verified, Scanned and Ready; Provenance when a policy asks for it.",
        max_length=16,
    )
    verified_digest: str | None = pydantic.Field(
        default=None,
        description="Digest of the model manifest whose signature verified.",
        pattern=DIGEST_PATTERN,
    )
    signer: str | None = pydantic.Field(
        default=None, description="Name of the policy signer that matched.", max_length=253
    )
    signer_key: str = pydantic.Field(
        default="",
        description=(
            "sha256 fingerprint of the public key (DER SubjectPublicKeyInfo) whose signature "
            "verified; for a certificate chain, of the chain's trust anchor: a policy accepts "
            "the model only from its own signer's key, not from another policy's signer of "
            "the same name."
        ),
        max_length=80,
    )
    signer_issuer: str = pydantic.Field(
        default="",
        description="Keyless signature: the OIDC issuer of the certificate that verified.",
        max_length=1024,
    )
    signer_identity: str = pydantic.Field(
        default="",
        description=(
            "Keyless signature: the identity (SAN) of the certificate that verified; a policy "
            "accepts it only when its own keyless signer names this issuer and identity. "
            "For a certificate chain with a pinned subject, that subject."
        ),
        max_length=4096,
    )
    findings: list[ScanFinding] = pydantic.Field(
        default_factory=list,
        description="Scan findings, most severe first (bounded: see findingsTruncated).",
        max_length=100,
    )
    findings_truncated: bool = pydantic.Field(
        default=False, description="More findings existed than are listed."
    )
    last_checked: datetime.datetime | None = pydantic.Field(
        default=None, description="When the model was last fetched, verified and scanned."
    )
    provenance: ProvenanceStatus | None = pydantic.Field(
        default=None,
        description=(
            "What the model's verified training provenance names: builder, code source and "
            "commit, datasets (the Provenance condition says whether it verified)."
        ),
    )
    served_by: serving.ServedBy | None = pydantic.Field(
        default=None,
        description=(
            "Where this version runs: the workloads serving it (for a Dataset record, serving "
            "a model trained on it), written by the operator's serving index; absent until "
            "the operator has recorded it."
        ),
    )


class ModelArtifact(ApiModel):
    """One model version that workloads may serve, with its verification and scan facts."""

    api_version: str = pydantic.Field(
        default="modelshield.dev/v1alpha1", description="API version."
    )
    kind: str = pydantic.Field(default="ModelArtifact", description="Kind.")
    metadata: ObjectMeta = pydantic.Field(default_factory=ObjectMeta, description="Metadata.")
    spec: ModelArtifactSpec = pydantic.Field(description="Desired model version.")
    status: ModelArtifactStatus | None = pydantic.Field(default=None, description="Observed facts.")
