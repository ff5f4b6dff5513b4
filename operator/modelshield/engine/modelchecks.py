"""Checks of the ``models`` requirement block, against the facts in ModelArtifact status."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator, Mapping
from typing import Any

from modelshield.engine import (
    compiling,
    downloads,
    facts,
    modelsigners,
    provenancechecks,
    redacting,
    s3endpoints,
    startup,
    workloads,
)
from modelshield.engine.decisions import Code
from modelshield.engine.imagechecks import Finding

#: How much older than its recheckInterval a ModelArtifact's verdict may be: the timer's
#: period, a queue of due checks and one check's hard stop (twice the default fetch
#: deadline of an hour) fit in it. Older, the operator is not renewing it: refused.
VERDICT_GRACE = datetime.timedelta(hours=2, minutes=15)

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


@dataclasses.dataclass(frozen=True)
class StartupCheck:
    """How the init container of ``models.verifyAtStartup`` is judged.

    Admission knows the image its mutating webhook injects (``--startup-image``), and so
    do the operator's status and audit (given the same flag): an init container exactly as
    ``startup.build_init_container`` makes it for the workload is exempt from image
    requirements (never from runtime ones), and a Pod governed by a policy that asks for it
    must carry it. The offline CLI judges manifests as written,
    before that webhook, and knows no image (``image=None``): nothing is exempt, a Pod
    is expected to receive the container at admission, so only a Pod that cannot (no
    model volume) or that carries its own container of that name is reported.
    """

    image: str | None
    #: On an UPDATE: the startup containers the object already had. Init containers
    #: cannot change after creation, so one built for this model with an earlier verified
    #: digest or signer is still the one that ran at the pod's start.
    previous: tuple[Mapping[str, Any], ...] = ()
    #: On an UPDATE: the ephemeral containers the pod already had (judged when added;
    #: they cannot change), so only those this request adds are judged.
    earlier_ephemeral: tuple[Mapping[str, Any], ...] = ()


#: Manifests as written, before the mutating webhook (``modelshield test``).
BEFORE_ADMISSION = StartupCheck(image=None)


def startup_target(
    workload: workloads.Workload, source: facts.FactSource
) -> tuple[facts.ArtifactFacts, str, str] | None:
    """The model the init container re-verifies: (artifact, digest, signer), when verified."""
    found = (find_artifact(workload, r, source) for r in workload.models)
    artifact = next((a for a in found if a is not None), None)
    if artifact is None or not (artifact.current and artifact.verified):
        return None
    digest = artifact.verified_digest or artifact.expected_digest
    if digest is None or artifact.signer is None:
        return None
    return artifact, digest, artifact.signer


def _built_for(
    container: workloads.Container, target: tuple[facts.ArtifactFacts, str, str], image: str
) -> bool:
    artifact, digest, signer = target
    pod = container.pod.spec
    if not startup.keys_volume_intact(pod):
        return False
    expected = startup.for_pod(
        pod, image=image, digest=digest, artifact=artifact.name, signer=signer
    )
    return expected is not None and startup.is_built(container.spec, expected, pod)


def startup_containers(
    workload: workloads.Workload, source: facts.FactSource, check: StartupCheck | None
) -> frozenset[str]:
    """Paths of the init containers that are exactly the one modelshield injects."""
    if check is None or check.image is None:
        return frozenset()
    image = check.image
    named = [
        c
        for c in workload.containers
        if c.field == "initContainers" and c.name == startup.CONTAINER_NAME
    ]
    target = startup_target(workload, source) if named else None
    if target is None:
        return frozenset()
    genuine = set()
    for container in named:
        if _built_for(container, target, image):
            genuine.add(container.path)
            continue
        was = startup.built_with(container.spec) if container.spec in check.previous else None
        if was is not None and _built_for(container, (target[0], *was), image):
            genuine.add(container.path)
    return frozenset(genuine)


def without_startup_container(
    workload: workloads.Workload, genuine: frozenset[str]
) -> workloads.Workload:
    """The workload minus the init containers exactly as modelshield injects them.

    Its image is the administrator's ``--startup-image``, not the author's, so it is not
    verified against the workload's image requirements (the webhook's admission and the
    operator's status and audit alike). Any other container, whatever its name, is.
    """
    if not genuine:
        return workload
    kept = tuple(c for c in workload.containers if c.path not in genuine)
    return dataclasses.replace(workload, containers=kept)


def check_startup(
    workload: workloads.Workload,
    source: facts.FactSource,
    check: StartupCheck,
    genuine: frozenset[str],
) -> Iterator[Finding]:
    """A Pod without the init container that re-verifies its model at start, and why."""
    if workload.kind == "Pod" and genuine:
        yield from _unbound(workload, check, genuine)
    if workload.kind != "Pod" or genuine:
        return
    named = [c for c in workload.containers if c.name == startup.CONTAINER_NAME]
    pod_spec = named[0].pod.spec if named else next((c.pod.spec for c in workload.containers), {})
    path = named[0].path if named else "spec.initContainers"
    asked = "a policy asks to re-verify the model when the pod starts (models.verifyAtStartup)"
    target = startup_target(workload, source)
    if target is None:
        found = (find_artifact(workload, r, source) for r in workload.models)
        artifact = next((a for a in found if a is not None), None)
        named_model = f"model {artifact.name!r}" if artifact else "the model"
        yield (
            Code.MODEL_STARTUP_VERIFICATION_MISSING,
            path,
            f"{asked}, but {named_model} has no verified digest and signer to re-verify "
            "against; sign it with `modelshield model sign` and wait until "
            "`kubectl get modelartifact` shows it Ready",
        )
        return
    if startup.model_mount(pod_spec) is None:
        yield (
            Code.MODEL_STARTUP_VERIFICATION_MISSING,
            "spec.containers[0].volumeMounts",
            f"{asked}, but the first container mounts no volume; mount the model from a "
            "volume (its name containing 'model')",
        )
        return
    if named:
        what = "this admission" if check.image is not None else "admission"
        yield (
            Code.MODEL_STARTUP_VERIFICATION_MISSING,
            path,
            f"{asked}, and container {startup.CONTAINER_NAME!r} is not the one modelshield "
            f"injects (`modelshield model verify` of {target[0].name!r} at {target[1]} with "
            f"the configured startup image, hardened, and the {startup.KEYS_CONFIG_MAP!r} "
            f"ConfigMap volume); {what} accepts only that exact container: remove yours "
            "from the pod spec and let the mutating webhook inject it",
        )
    elif check.image is not None:
        yield (
            Code.MODEL_STARTUP_VERIFICATION_MISSING,
            path,
            f"{asked}, but the pod has no init container {startup.CONTAINER_NAME!r} "
            f"re-verifying model {target[0].name!r}; the mutating webhook injects it into "
            "pods it sees created: make sure it is enabled (chart value webhook.mutating) "
            "and reaches this pod, then create the pod again",
        )


def _unbound(
    workload: workloads.Workload, check: StartupCheck, genuine: frozenset[str]
) -> Iterator[Finding]:
    """Where the servers read something other than what the startup check verified."""
    ours = [c for c in workload.containers if c.path in genuine]
    pod_spec = ours[0].pod.spec
    # kubectl debug adds ephemeral containers to a running pod (an UPDATE of the
    # ephemeralcontainers subresource): judged even when the rest was admitted before.
    problems = startup.ephemeral_problems(pod_spec, check.earlier_ephemeral)
    if not all(c.spec in check.previous for c in ours):
        problems = startup.binding_problems(pod_spec) + problems
    # else an UPDATE of a Pod admitted before: its init containers cannot change
    for path, problem in problems:
        yield (
            Code.MODEL_STARTUP_VERIFICATION_MISSING,
            path,
            f"a policy asks to re-verify the model when the pod starts "
            f"(models.verifyAtStartup), but {problem}",
        )


def check_workload(
    workload: workloads.Workload,
    requirement: compiling.CompiledModels,
    source: facts.FactSource,
    now: datetime.datetime,
    store: s3endpoints.ModelStore = s3endpoints.DEFAULT,
) -> Iterator[Finding]:
    """Every way the workload's model fails the requirement (``store``: where the
    operator fetches ModelArtifacts from, which the pods must download from too)."""
    if workload.kind in workloads.MODELLESS_KINDS and not workload.models:
        # A ServingRuntime serves the models its InferenceServices name; they are checked.
        return
    if not workload.models:
        path = f"{workloads.template_metadata_path(workload.kind)}.annotations"
        yield (Code.MODEL_NOT_DECLARED, path, f"the workload names no model; {_HOW_TO_DECLARE}")
        return
    for reference in workload.models:
        if reference.endpoint is not None:
            if not store.serves(reference.endpoint):
                yield (Code.MODEL_SOURCE_UNVERIFIABLE, reference.path, _elsewhere(reference, store))
            continue
        unverifiable = _unverifiable(reference)
        if unverifiable is not None:
            yield (Code.MODEL_SOURCE_UNVERIFIABLE, reference.path, unverifiable)
            continue
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
        yield from _check_artifact(reference.path, artifact, requirement, now)
        yield from provenancechecks.check_artifact(
            reference.path, artifact, requirement.provenance, source, workload.namespace, now
        )


def _elsewhere(reference: workloads.ModelReference, store: s3endpoints.ModelStore) -> str:
    """Why the S3 server a reference names is not the one ModelArtifacts come from."""
    if not reference.endpoint:
        told = f"{reference.unresolved}, not from {store.describe()}"
    elif store.s3_endpoint is None:
        told = (
            f"{reference.unresolved}, while the operator fetches ModelArtifacts from "
            f"{store.describe()}"
        )
    else:
        told = (
            f"{reference.unresolved}, which is not the S3 endpoint ModelArtifacts are "
            f"fetched from, {store.describe()}"
        )
    return (
        f"the model this loads cannot be told before it runs: {told}; the same URI on "
        "another server is another model"
    )


def _unverifiable(reference: workloads.ModelReference) -> str | None:
    """Why a model source can never match a verified ModelArtifact, or None."""
    if reference.unresolved:
        return (
            f"the model this loads cannot be told before it runs: {reference.unresolved}; "
            "an annotation never stands in for it"
        )
    if reference.storage_uri is not None:
        problem = downloads.download_boundary_problem(reference.storage_uri)
        if problem is not None:
            return f"model source {reference.storage_uri!r}: {problem}"
    return None


def _check_artifact(
    path: str,
    artifact: facts.ArtifactFacts,
    requirement: compiling.CompiledModels,
    now: datetime.datetime,
) -> Iterator[Finding]:
    what = f"model {artifact.name!r} ({redacting.redact(artifact.uri)})"
    if not artifact.current:
        yield (
            Code.MODEL_NOT_VERIFIED,
            path,
            f"{what} has not been checked since its spec changed; wait until "
            f"`kubectl get modelartifact {artifact.name}` shows Ready",
        )
        return
    if artifact.last_checked is None:
        # The operator stamps every verdict it writes; one without a time (hand-written,
        # or written by something else) cannot be shown to be recent: fail closed.
        yield (
            Code.MODEL_VERDICT_STALE,
            path,
            f"{what} has a verdict with no status.lastChecked, so how old it is cannot be "
            "told; let the modelshield operator check the model (it records the time), or "
            "record lastChecked with hand-written facts",
        )
        return
    if now - artifact.last_checked > artifact.recheck_interval + VERDICT_GRACE:
        yield (
            Code.MODEL_VERDICT_STALE,
            path,
            f"{what} was last checked at {artifact.last_checked.isoformat()}, longer ago than "
            f"its recheckInterval plus {VERDICT_GRACE} of grace: the files may have changed "
            "since; make sure the modelshield operator runs and can fetch the model",
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
        elif not modelsigners.trusted_by(requirement.signers, artifact):
            # By key or identity, not name: another governing policy may name its own key
            # like one of this policy's signers, and the operator verifies against both.
            because = modelsigners.untrusted_reason(requirement.signers, artifact)
            yield (
                Code.MODEL_SIGNER_UNTRUSTED,
                path,
                f"{what} {because}, not by one of: {trusted}",
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
