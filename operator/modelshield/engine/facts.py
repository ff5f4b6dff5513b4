"""Facts: what the verifiers and the ModelArtifact reconciler established.

The engine never fetches anything: callers look facts up (the webhook from its caches,
the CLI from a facts file) and hand them in through a ``FactSource``. A fact that is
missing is never a pass: the engine turns it into a "not verified" violation.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from enum import StrEnum
from typing import Protocol

from modelshield.api.v1alpha1 import artifacts, common
from modelshield.api.v1alpha1.common import Severity


class Outcome(StrEnum):
    """How one verification ended; every failure has its own, so messages can be precise."""

    VERIFIED = "Verified"
    NO_SIGNATURE = "NoSignature"
    SIGNATURE_MISMATCH = "SignatureMismatch"
    SIGNER_UNTRUSTED = "SignerUntrusted"
    DIGEST_MISMATCH = "DigestMismatch"
    TIMED_OUT = "TimedOut"
    REGISTRY_UNREACHABLE = "RegistryUnreachable"
    NOT_FOUND = "NotFound"
    ERROR = "Error"


@dataclasses.dataclass(frozen=True)
class SignatureFact:
    """The result of verifying an image's signature against one signer set."""

    outcome: Outcome
    signer: str | None = None
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class AttestationFact:
    """One attestation whose DSSE signature verified and whose subject is the image digest."""

    predicate_type: str
    signer: str
    issued_at: datetime.datetime
    #: Count of vulnerabilities per severity, for vulnerability-scan predicates.
    vulnerabilities: Mapping[Severity, int] | None = None


@dataclasses.dataclass(frozen=True)
class ImageFacts:
    """Everything established about one image reference for one image requirement."""

    reference: str
    digest: str | None
    signature: SignatureFact
    attestations: tuple[AttestationFact, ...] = ()
    #: Why attestations could not be looked at (registry down...); None when they were.
    attestation_failure: SignatureFact | None = None


@dataclasses.dataclass(frozen=True)
class ScanFindingFact:
    """A model scan finding, as the ModelArtifact's status records it."""

    severity: Severity
    file: str
    reason: str
    location: str = ""


@dataclasses.dataclass(frozen=True)
class ProvenanceFacts:
    """The Provenance condition of a ModelArtifact and what its verified statement names."""

    verified: bool
    #: The condition's reason (ProvenanceVerified, ProvenanceMissing, ...).
    reason: str
    message: str = ""
    builder: str | None = None
    #: Fingerprint of the key that verified (keyids.fingerprint).
    builder_key: str = ""
    #: Keyless builder: the certificate's issuer and identity that verified.
    builder_issuer: str = ""
    builder_identity: str = ""
    source: str = ""
    commit: str = ""
    finished: datetime.datetime | None = None
    #: (name, uri, digest) of each training input other than code.
    datasets: tuple[tuple[str, str, str], ...] = ()
    datasets_truncated: bool = False


@dataclasses.dataclass(frozen=True)
class ArtifactFacts:
    """A ModelArtifact's spec and the facts its status records."""

    namespace: str
    name: str
    uri: str
    expected_digest: str | None
    #: The status describes the current spec (status.observedGeneration == generation).
    current: bool
    verified: bool
    verified_digest: str | None
    signer: str | None
    scanned: bool
    findings: tuple[ScanFindingFact, ...] = ()
    verification_message: str = ""
    #: When the operator last fetched, verified and scanned the model (status.lastChecked);
    #: None when the status does not say, which admission judges stale.
    last_checked: datetime.datetime | None = None
    #: spec.recheckInterval: how often the verdict is renewed.
    recheck_interval: datetime.timedelta = datetime.timedelta(hours=24)
    #: spec.type: Model, or Dataset (a training dataset's record, never served).
    artifact_type: str = "Model"
    #: The Provenance condition and status.provenance; None when the status has none.
    provenance: ProvenanceFacts | None = None
    #: Which key (fingerprint) or keyless issuer and identity verified the signature
    #: (status.signerKey, signerIssuer, signerIdentity); empty in an older status.
    signer_key: str = ""
    signer_issuer: str = ""
    signer_identity: str = ""


class FactSource(Protocol):
    """Where the engine looks facts up. Implementations must not block.

    Each one names this class as its base, so a reader goes from here to every one in a
    search: ``StaticFacts`` (below), the operator's ``controllers.caches.WorldFacts`` and
    the admission server's ``modelshield_webhooks.reviewfacts.ReviewFacts``.
    """

    def image(self, reference: str, requirement_key: str) -> ImageFacts | None:
        """Facts for an image reference under one compiled image requirement."""
        ...

    def artifact(self, namespace: str, name: str) -> ArtifactFacts | None:
        """The ModelArtifact of that name."""
        ...

    def artifact_by_uri(self, namespace: str, uri: str) -> ArtifactFacts | None:
        """The ModelArtifact in the namespace whose spec.uri is uri."""
        ...


@dataclasses.dataclass(frozen=True)
class StaticFacts(FactSource):
    """A FactSource over fixed tables: the CLI's facts file, tests, the audit's snapshot."""

    images: Mapping[str, ImageFacts] = dataclasses.field(default_factory=dict)
    artifacts: Mapping[tuple[str, str], ArtifactFacts] = dataclasses.field(default_factory=dict)

    def image(self, reference: str, requirement_key: str) -> ImageFacts | None:
        """Facts by reference; a static table holds one verdict per image for every key."""
        return self.images.get(reference)

    def artifact(self, namespace: str, name: str) -> ArtifactFacts | None:
        """The artifact by namespace and name."""
        return self.artifacts.get((namespace, name))

    def artifact_by_uri(self, namespace: str, uri: str) -> ArtifactFacts | None:
        """The first artifact in the namespace with that URI."""
        for (artifact_namespace, _), facts in self.artifacts.items():
            if artifact_namespace == namespace and facts.uri == uri:
                return facts
        return None


def _condition_true(conditions: list[common.Condition], kind: str) -> bool:
    return any(c.type == kind and c.status is common.ConditionStatus.TRUE for c in conditions)


def from_model_artifact(artifact: artifacts.ModelArtifact) -> ArtifactFacts:
    """The facts a ModelArtifact's status records; an artifact without status proves nothing."""
    status = artifact.status or artifacts.ModelArtifactStatus()
    verified = next((c for c in status.conditions if c.type == artifacts.VERIFIED), None)
    return ArtifactFacts(
        namespace=artifact.metadata.namespace,
        name=artifact.metadata.name,
        uri=artifact.spec.uri,
        expected_digest=artifact.spec.digest,
        current=artifact.status is not None
        and status.observed_generation == artifact.metadata.generation,
        verified=_condition_true(status.conditions, artifacts.VERIFIED),
        verified_digest=status.verified_digest,
        signer=status.signer,
        scanned=_condition_true(status.conditions, artifacts.SCANNED),
        findings=tuple(
            ScanFindingFact(severity=f.severity, file=f.file, reason=f.reason, location=f.location)
            for f in status.findings
        ),
        verification_message=verified.message if verified is not None else "",
        # A timestamp without a zone (hand-written) is read as UTC, as the API server does.
        last_checked=status.last_checked.replace(tzinfo=datetime.UTC)
        if status.last_checked is not None and status.last_checked.tzinfo is None
        else status.last_checked,
        recheck_interval=common.parse_duration(artifact.spec.recheck_interval),
        artifact_type=artifact.spec.type.value,
        provenance=_provenance(status),
        signer_key=status.signer_key,
        signer_issuer=status.signer_issuer,
        signer_identity=status.signer_identity,
    )


def _provenance(status: artifacts.ModelArtifactStatus) -> ProvenanceFacts | None:
    condition = next((c for c in status.conditions if c.type == artifacts.PROVENANCE), None)
    if condition is None:
        return None
    said = status.provenance
    finished = said.finished if said is not None else None
    if finished is not None and finished.tzinfo is None:
        finished = finished.replace(tzinfo=datetime.UTC)
    return ProvenanceFacts(
        verified=condition.status is common.ConditionStatus.TRUE and said is not None,
        reason=condition.reason,
        message=condition.message,
        builder=said.builder if said is not None else None,
        builder_key=said.builder_key if said is not None else "",
        builder_issuer=said.builder_issuer if said is not None else "",
        builder_identity=said.builder_identity if said is not None else "",
        source=said.source if said is not None else "",
        commit=said.commit if said is not None else "",
        finished=finished,
        datasets=tuple((d.name, d.uri, d.digest) for d in said.datasets) if said else (),
        datasets_truncated=said.datasets_truncated if said is not None else False,
    )
