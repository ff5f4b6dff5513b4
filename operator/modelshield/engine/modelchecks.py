"""Checks of the ``models`` requirement block, against the facts in ModelArtifact status."""

from __future__ import annotations

from collections.abc import Iterator

from modelshield.engine import compiling, facts, workloads
from modelshield.engine.decisions import Code
from modelshield.engine.imagechecks import Finding

_HOW_TO_DECLARE = (
    f"annotate the pod template with {workloads.MODEL_ANNOTATION}: <ModelArtifact name>, "
    "or serve an InferenceService storageUri that a ModelArtifact in this namespace declares"
)


def find_artifact(
    workload: workloads.Workload, reference: workloads.ModelReference, source: facts.FactSource
) -> facts.ArtifactFacts | None:
    """The ModelArtifact a model reference names."""
    if reference.artifact_name is not None:
        return source.artifact(workload.namespace, reference.artifact_name)
    if reference.storage_uri is not None:
        return source.artifact_by_uri(workload.namespace, reference.storage_uri)
    return None


def check_workload(
    workload: workloads.Workload, requirement: compiling.CompiledModels, source: facts.FactSource
) -> Iterator[Finding]:
    """Every way the workload's model fails the requirement."""
    if not workload.models:
        path = (
            "metadata.annotations"
            if workload.kind in ("Pod", "InferenceService")
            else ("spec.template.metadata.annotations")
        )
        yield (Code.MODEL_NOT_DECLARED, path, f"the workload names no model; {_HOW_TO_DECLARE}")
        return
    for reference in workload.models:
        artifact = find_artifact(workload, reference, source)
        if artifact is None:
            named = reference.artifact_name or reference.storage_uri
            yield (
                Code.MODEL_ARTIFACT_NOT_FOUND,
                reference.path,
                f"no ModelArtifact in namespace {workload.namespace!r} matches {named!r}; "
                "create one (kind: ModelArtifact) with that name or spec.uri",
            )
            continue
        yield from _check_artifact(reference.path, artifact, requirement)


def _check_artifact(
    path: str, artifact: facts.ArtifactFacts, requirement: compiling.CompiledModels
) -> Iterator[Finding]:
    what = f"model {artifact.name!r} ({artifact.uri})"
    if not artifact.current:
        yield (
            Code.MODEL_NOT_VERIFIED,
            path,
            f"{what} has not been checked since its spec changed; wait until "
            f"`kubectl get modelartifact {artifact.name}` shows Ready",
        )
        return
    if requirement.signer_names:
        trusted = ", ".join(sorted(requirement.signer_names))
        if not artifact.verified:
            detail = f" ({artifact.verification_message})" if artifact.verification_message else ""
            yield (
                Code.MODEL_NOT_VERIFIED,
                path,
                f"{what} has no verified signature{detail}; sign it with "
                f"`modelshield model sign` using the key of one of: {trusted}",
            )
        elif artifact.signer not in requirement.signer_names:
            yield (
                Code.MODEL_SIGNER_UNTRUSTED,
                path,
                f"{what} is signed by {artifact.signer!r}, not by one of: {trusted}",
            )
    if (
        artifact.expected_digest is not None
        and artifact.verified
        and artifact.verified_digest != artifact.expected_digest
    ):
        yield (
            Code.MODEL_DIGEST_MISMATCH,
            path,
            f"{what} verified as {artifact.verified_digest}, but spec.digest expects "
            f"{artifact.expected_digest}; the files changed: re-sign or fix spec.digest",
        )
    if requirement.require_scan:
        if not artifact.scanned:
            yield (
                Code.MODEL_NOT_SCANNED,
                path,
                f"{what} has not been scanned; wait until the operator has scanned it",
            )
            return
        blocking = [
            f for f in artifact.findings if f.severity.rank >= requirement.block_at_or_above.rank
        ]
        if blocking:
            shown = "; ".join(f"{f.severity.value} in {f.file}: {f.reason}" for f in blocking[:3])
            more = f" (and {len(blocking) - 3} more)" if len(blocking) > 3 else ""
            yield (
                Code.MODEL_SCAN_FINDINGS,
                path,
                f"{what} has scan findings at or above {requirement.block_at_or_above.value}: "
                f"{shown}{more}; use a safe format such as safetensors",
            )
