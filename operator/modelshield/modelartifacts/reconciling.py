"""The ModelArtifact reconciler's core: fetched files + signers -> the new status.

Pure apart from reading the local model directory (hashing and scanning it): no
Kubernetes, no network. The kopf handlers fetch, call ``reconcile`` off the event loop,
patch the status it returns and post an Event per condition transition.

Conditions: ``Verified`` (the signed manifest matches the files and one of the signers
signed it), ``Scanned`` (every file was scanned; findings are listed, judged by
policies), ``Ready`` (verified, or no signer applies; scanned; nothing at or above the
blocking severity; the content has not changed since it was last verified).
"""

from __future__ import annotations

import datetime
import pathlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from modelshield.api.v1alpha1 import artifacts, common, policies
from modelshield.api.v1alpha1.common import ConditionStatus, Severity
from modelshield.engine import redacting
from modelshield.modelartifacts import hashing, modelverifying
from modelshield.modelartifacts.scanning import catalog, findings, scanners

# Reasons written to the conditions (CamelCase, stable: admission messages and alerts use them).
SIGNATURE_VERIFIED = "SignatureVerified"
CONTENT_CHANGED = "ContentChanged"
FETCH_FAILED = "FetchFailed"
#: An error the check did not expect (a crashed worker, a full disk, a bug): fail closed.
CHECK_FAILED = "CheckFailed"
SCAN_COMPLETE = "ScanComplete"
SCAN_FAILED = "ScanFailed"
BLOCKING_FINDINGS = "BlockingFindings"
NOT_VERIFIED = "NotVerified"
NOT_SCANNED = "NotScanned"
READY = "Ready"
READY_UNSIGNED = "ReadyWithoutSignature"

MAX_FINDINGS = 100
#: status.signerIdentity's bound; a longer identity is not recorded and so trusted by no policy.
MAX_IDENTITY = 4096


@dataclass(frozen=True)
class Verdict:
    """The new status, and the condition transitions worth an Event."""

    status: artifacts.ModelArtifactStatus
    transitions: tuple[common.Condition, ...]


def signer_secret_refs(
    requirements: Iterable[policies.ModelRequirements],
) -> list[tuple[str, str]]:
    """The (Secret name, key) of each ``secretRef`` signer: the keys ``trusted_signers`` reads."""
    return [
        (signer.secret_ref.name, signer.secret_ref.key)
        for requirement in requirements
        for signer in requirement.signers
        if signer.secret_ref is not None
    ]


def trusted_signers(
    requirements: Iterable[policies.ModelRequirements],
    secret_keys: Mapping[tuple[str, str], bytes],
    trust_config: pathlib.Path | None,
) -> list[modelverifying.TrustedSigner]:
    """The signers of the governing policies, in order, each once (secrets already read)."""
    signers: list[modelverifying.TrustedSigner] = []
    seen: set[modelverifying.TrustedSigner] = set()
    for requirement in requirements:
        for signer in requirement.signers:
            converted: modelverifying.TrustedSigner | None = None
            if signer.public_key is not None:
                converted = modelverifying.KeySigner(signer.name, signer.public_key.encode())
            elif signer.secret_ref is not None:
                pem = secret_keys.get((signer.secret_ref.name, signer.secret_ref.key))
                converted = modelverifying.KeySigner(signer.name, pem) if pem else None
            elif signer.keyless is not None:
                converted = modelverifying.KeylessSigner(
                    signer.name,
                    issuer=signer.keyless.issuer,
                    trust_config=trust_config,
                    subject=signer.keyless.subject,
                    subject_regexp=signer.keyless.subject_reg_exp,
                )
            if converted is not None and converted not in seen:
                seen.add(converted)
                signers.append(converted)
    return signers


def blocking_threshold(requirements: Iterable[policies.ModelRequirements]) -> Severity:
    """The strictest blocking severity among the policies (High when none says)."""
    thresholds = [r.block_findings_at_or_above for r in requirements]
    return min(thresholds, key=lambda s: s.rank) if thresholds else Severity.HIGH


def _condition(
    kind: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    previous: artifacts.ModelArtifactStatus | None,
    now: datetime.datetime,
) -> common.Condition:
    old = next((c for c in (previous.conditions if previous else []) if c.type == kind), None)
    # API conventions: the transition time moves only when the status does.
    moved = old is None or old.status != status
    return common.Condition(
        type=kind,
        status=status,
        reason=reason,
        message=redacting.redact(message)[:32768],
        last_transition_time=now if moved or old is None else old.last_transition_time,
        observed_generation=generation,
    )


def _verify(
    spec: artifacts.ModelArtifactSpec,
    generation: int,
    model_dir: pathlib.Path,
    signers: Sequence[modelverifying.TrustedSigner],
    previous: artifacts.ModelArtifactStatus | None,
    signature_path: pathlib.Path | None,
) -> tuple[ConditionStatus, str, str, str | None, modelverifying.VerifiedModel | None]:
    """(status, reason, message, digest, what verified) of the Verified condition."""
    try:
        # Refused with or without signers: the scanner skips .git as model-signing does.
        modelverifying.refuse_git_paths(model_dir)
    except modelverifying.VerificationError as error:
        return ConditionStatus.FALSE, error.reason, error.message, None, None
    if not signers:
        if spec.digest is not None:
            digest = hashing.root_digest(hashing.configure().hash(model_dir))
            if digest != spec.digest:
                return (
                    ConditionStatus.FALSE,
                    modelverifying.DIGEST_MISMATCH,
                    f"the files hash to {digest}, spec.digest expects {spec.digest}",
                    None,
                    None,
                )
        return (
            ConditionStatus.FALSE,
            modelverifying.NO_SIGNERS,
            "no policy in this namespace names model signers; nothing to verify against",
            None,
            None,
        )
    try:
        result = modelverifying.verify(
            model_dir, signers, signature=signature_path, expected_digest=spec.digest
        )
    except modelverifying.VerificationError as error:
        return ConditionStatus.FALSE, error.reason, error.message, None, None
    pinned = (
        previous.verified_digest
        if previous is not None and previous.observed_generation == generation
        else None
    )
    if spec.digest is None and pinned is not None and pinned != result.digest:
        return (
            ConditionStatus.FALSE,
            CONTENT_CHANGED,
            f"the model at {spec.uri} changed from {pinned} to {result.digest} without a spec "
            "change; set spec.digest to accept the new version",
            None,
            None,
        )
    return (
        ConditionStatus.TRUE,
        SIGNATURE_VERIFIED,
        f"{result.files} file(s) match the manifest {result.digest} signed by {result.signer}",
        result.digest,
        result,
    )


def reconcile(
    spec: artifacts.ModelArtifactSpec,
    generation: int,
    model_dir: pathlib.Path | None,
    signers: Sequence[modelverifying.TrustedSigner],
    previous: artifacts.ModelArtifactStatus | None,
    *,
    now: datetime.datetime,
    block_at_or_above: Severity = Severity.HIGH,
    fetch_error: str | None = None,
    signature_path: pathlib.Path | None = None,
    scan: Callable[[pathlib.Path], findings.ScanReport] = catalog.scan_directory,
) -> Verdict:
    """The status that the fetched files (or the fetch failure) establish."""
    verified: tuple[ConditionStatus, str, str, str | None, modelverifying.VerifiedModel | None]
    if model_dir is None:
        message = fetch_error or "the model could not be fetched"
        return failed(generation, previous, now=now, reason=FETCH_FAILED, message=message)
    if not any(
        relative != hashing.DEFAULT_SIGNATURE_NAME
        for _, relative in scanners.model_files(model_dir)
    ):
        message = f"{spec.uri} holds no model files: an empty model is never Ready"
        return failed(
            generation, previous, now=now, reason=modelverifying.EMPTY_MODEL, message=message
        )
    verified = _verify(spec, generation, model_dir, signers, previous, signature_path)
    try:
        report = scan(model_dir)
        worst = report.worst()
        scan_state = (
            ConditionStatus.TRUE,
            SCAN_COMPLETE,
            f"{len(report.files)} file(s), {report.bytes_scanned} bytes scanned; "
            + (f"worst finding {worst.value}" if worst else "no findings"),
        )
    except Exception as error:  # noqa: BLE001 - any scanner crash is a failed scan
        report = findings.ScanReport()
        scan_state = (ConditionStatus.FALSE, SCAN_FAILED, f"scan failed: {error}")
    verified_status, verified_reason, verified_message, digest, signed = verified
    signer = signed.signer if signed is not None else None
    blocking = [f for f in report.findings if f.severity.rank >= block_at_or_above.rank]
    if verified_status is not ConditionStatus.TRUE and verified_reason != modelverifying.NO_SIGNERS:
        ready = (ConditionStatus.FALSE, NOT_VERIFIED, verified_message)
    elif scan_state[0] is not ConditionStatus.TRUE:
        ready = (ConditionStatus.FALSE, NOT_SCANNED, scan_state[2])
    elif blocking:
        first = blocking[0]
        ready = (
            ConditionStatus.FALSE,
            BLOCKING_FINDINGS,
            f"{len(blocking)} finding(s) at or above {block_at_or_above.value}; first: "
            f"{first.severity.value} in {first.file} ({first.location}): {first.reason}",
        )
    elif verified_status is ConditionStatus.TRUE:
        ready = (ConditionStatus.TRUE, READY, f"verified ({signer}) and scanned")
    else:
        ready = (ConditionStatus.TRUE, READY_UNSIGNED, "scanned; no policy requires a signature")
    conditions = [
        _condition(
            artifacts.VERIFIED,
            verified_status,
            verified_reason,
            verified_message,
            generation,
            previous,
            now,
        ),
        _condition(artifacts.SCANNED, *scan_state, generation, previous, now),
        _condition(artifacts.READY, *ready, generation, previous, now),
    ]
    listed, truncated = findings.to_api(report.findings, MAX_FINDINGS)
    status = artifacts.ModelArtifactStatus(
        observed_generation=generation,
        conditions=conditions,
        verified_digest=digest,
        signer=signer,
        # Which key or identity verified: each policy accepts only its own (issue 16).
        signer_key=signed.key if signed is not None else "",
        signer_issuer=signed.issuer if signed is not None else "",
        signer_identity=signed.identity
        if signed is not None and len(signed.identity) <= MAX_IDENTITY
        else "",
        findings=listed,
        findings_truncated=truncated,
        last_checked=now,
    )
    return Verdict(status, tuple(_transitions(previous, conditions)))


def failed(
    generation: int,
    previous: artifacts.ModelArtifactStatus | None,
    *,
    now: datetime.datetime,
    reason: str,
    message: str,
) -> Verdict:
    """The status of a check that could not finish: nothing verified, scanned or Ready.

    Never the previous verdict: a model that cannot be fetched or checked any more may have
    been swapped, so an error is as bad as a failed verification (fail closed).
    """
    conditions = [
        _condition(kind, ConditionStatus.FALSE, reason, message, generation, previous, now)
        for kind in (artifacts.VERIFIED, artifacts.SCANNED)
    ]
    conditions.append(
        _condition(
            artifacts.READY,
            ConditionStatus.FALSE,
            NOT_VERIFIED,
            message,
            generation,
            previous,
            now,
        )
    )
    status = artifacts.ModelArtifactStatus(
        observed_generation=generation, conditions=conditions, last_checked=now
    )
    return Verdict(status, tuple(_transitions(previous, conditions)))


def _transitions(
    previous: artifacts.ModelArtifactStatus | None, conditions: Sequence[common.Condition]
) -> Iterable[common.Condition]:
    old = {c.type: c for c in (previous.conditions if previous else [])}
    for condition in conditions:
        before = old.get(condition.type)
        if before is None or (before.status, before.reason) != (condition.status, condition.reason):
            yield condition
