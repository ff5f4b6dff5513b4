"""The engine's answer: allowed or not, and why, in words a person can act on."""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import Any

from modelshield.api.v1alpha1.policies import Enforcement


class Code(StrEnum):
    """Stable violation codes; tools and reports may rely on them."""

    WORKLOAD_MALFORMED = "WorkloadMalformed"
    IMAGE_REGISTRY_NOT_ALLOWED = "ImageRegistryNotAllowed"
    IMAGE_NOT_PINNED = "ImageNotPinnedByDigest"
    IMAGE_NOT_VERIFIED = "ImageNotVerified"
    IMAGE_UNSIGNED = "ImageUnsigned"
    IMAGE_SIGNATURE_INVALID = "ImageSignatureInvalid"
    IMAGE_SIGNER_UNTRUSTED = "ImageSignerUntrusted"
    IMAGE_VERIFICATION_FAILED = "ImageVerificationFailed"
    ATTESTATION_MISSING = "AttestationMissing"
    ATTESTATION_TOO_OLD = "AttestationTooOld"
    ATTESTATION_VULNERABILITIES = "AttestationVulnerabilities"
    MODEL_NOT_DECLARED = "ModelNotDeclared"
    MODEL_ARTIFACT_NOT_FOUND = "ModelArtifactNotFound"
    MODEL_SOURCE_UNVERIFIABLE = "ModelSourceUnverifiable"
    MODEL_NOT_VERIFIED = "ModelNotVerified"
    MODEL_SIGNER_UNTRUSTED = "ModelSignerUntrusted"
    MODEL_DIGEST_MISMATCH = "ModelDigestMismatch"
    MODEL_NOT_SCANNED = "ModelNotScanned"
    MODEL_SCAN_FINDINGS = "ModelScanFindings"
    MODEL_VERDICT_STALE = "ModelVerdictStale"
    MODEL_STARTUP_VERIFICATION_MISSING = "ModelStartupVerificationMissing"
    MODEL_IS_DATASET = "ModelIsDataset"
    PROVENANCE_MISSING = "ProvenanceMissing"
    PROVENANCE_UNTRUSTED_BUILDER = "ProvenanceUntrustedBuilder"
    PROVENANCE_SUBJECT_MISMATCH = "ProvenanceSubjectMismatch"
    PROVENANCE_EXPIRED = "ProvenanceExpired"
    DATASET_SOURCE_NOT_ALLOWED = "DatasetSourceNotAllowed"
    DATASET_UNVERIFIED = "DatasetUnverified"
    RUNTIME_RUN_AS_ROOT = "RuntimeRunAsRoot"
    RUNTIME_WRITABLE_ROOT_FILESYSTEM = "RuntimeWritableRootFilesystem"
    RUNTIME_PRIVILEGE_ESCALATION = "RuntimePrivilegeEscalation"
    RUNTIME_PRIVILEGED = "RuntimePrivileged"
    RUNTIME_NO_RESOURCE_LIMITS = "RuntimeNoResourceLimits"


@dataclasses.dataclass(frozen=True)
class PolicyRef:
    """Which policy demanded something: kind, namespace (empty for cluster) and name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclasses.dataclass(frozen=True)
class Violation:
    """One requirement a workload does not meet."""

    code: Code
    #: JSON path into the object, e.g. ``spec.template.spec.containers[0].image``.
    path: str
    #: What is wrong and what to do, naming the container and the policy.
    message: str
    policy: PolicyRef
    enforcement: Enforcement

    def describe(self) -> str:
        """One line for a person: policy, path, message."""
        return f"[{self.policy}] {self.path}: {self.message}"


@dataclasses.dataclass(frozen=True)
class Decision:
    """The verdict on one workload."""

    allowed: bool
    #: Violations of Enforce policies (these deny).
    violations: tuple[Violation, ...] = ()
    #: Violations of Audit policies (these admit with a warning).
    warnings: tuple[Violation, ...] = ()
    #: JSONPatch operations (RFC 6902) the mutating webhook applies.
    patches: tuple[dict[str, Any], ...] = ()
    #: The policies that govern the workload; empty when none does.
    governed_by: tuple[PolicyRef, ...] = ()

    def message(self) -> str:
        """The denial message: every Enforce violation, one per line."""
        return "\n".join(violation.describe() for violation in self.violations)


ALLOWED_UNGOVERNED = Decision(allowed=True)
