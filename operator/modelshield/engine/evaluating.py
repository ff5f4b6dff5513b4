"""The engine's entry point: one workload, the policies, the facts → a decision."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from modelshield.api.v1alpha1.policies import Enforcement
from modelshield.engine import (
    compiling,
    decisions,
    facts,
    imagechecks,
    modelchecks,
    runtimechecks,
    s3endpoints,
    workloads,
)
from modelshield.engine.decisions import Code


def governing_policies(
    workload: workloads.Workload,
    policy_set: compiling.PolicySet,
    namespace_labels: Mapping[str, str],
) -> tuple[compiling.CompiledPolicy, ...]:
    """The policies that govern the workload; none for kinds that run no pods."""
    if workload.kind not in workloads.SUPPORTED_KINDS:
        return ()
    label_sets = workload.label_sets or (workload.labels,)
    if workload.kind in workloads.CLUSTER_SCOPED_KINDS:
        return policy_set.governing_cluster_wide(label_sets)
    if not policy_set.could_govern(workload.namespace):
        return ()
    return policy_set.governing_any(workload.namespace, label_sets, namespace_labels)


def image_requests(
    workload: workloads.Workload, governing: tuple[compiling.CompiledPolicy, ...]
) -> list[tuple[str, compiling.CompiledImages]]:
    """The (image, requirement) pairs whose facts the evaluation will look up, deduplicated.

    A requirement whose ``allowedRegistries`` refuse the image asks nothing: it fails on
    the registry whatever a verification would find, and the webhook must not fetch from
    whichever host a workload names. An image is thus fetched only for the requirements
    (of Enforce and Audit policies alike) that would allow it; one refused by every
    requirement that verifies it is never fetched at all.
    """
    seen: set[tuple[str, str]] = set()
    requests = []
    for policy in governing:
        images = policy.images
        if images is None or not images.needs_verification:
            continue
        for container in workload.containers:
            image = container.image
            key = (image, images.key)
            if image and key not in seen and imagechecks.allows_registry(images, image):
                seen.add(key)
                requests.append((image, images))
    return requests


@dataclasses.dataclass(frozen=True)
class _Startup:
    """The startup re-verification as this evaluation sees it."""

    check: modelchecks.StartupCheck | None
    #: Paths of the init containers exactly as modelshield injects them.
    genuine: frozenset[str]


def _policy_findings(
    workload: workloads.Workload,
    policy: compiling.CompiledPolicy,
    source: facts.FactSource,
    now: datetime.datetime,
    memo: dict[int, list[imagechecks.Finding]],
    at_start: _Startup,
    store: s3endpoints.ModelStore,
) -> list[imagechecks.Finding]:
    found: list[imagechecks.Finding] = [
        (Code.WORKLOAD_MALFORMED, path, f"{problem}; the workload cannot be checked")
        for path, problem in workload.problems
    ]
    # Blocks are interned at compile time, so equal blocks of several policies share an id
    # and their checks run once per evaluation.
    if policy.images is not None:
        images = policy.images
        if id(images) not in memo:
            memo[id(images)] = [
                finding
                for container in workload.containers
                # The injected init container runs the administrator's image, not the
                # author's: exempt from image requirements (runtime ones still apply).
                if container.image and container.path not in at_start.genuine
                for finding in imagechecks.check_container(container, images, source, now)
            ]
        found.extend(memo[id(images)])
    if policy.runtime is not None:
        runtime = policy.runtime
        if id(runtime) not in memo:
            memo[id(runtime)] = [
                finding
                for container in workload.containers
                if not container.borrowed
                for finding in runtimechecks.check_container(container, runtime)
            ]
        found.extend(memo[id(runtime)])
    if policy.models is not None:
        models = policy.models
        if id(models) not in memo:
            memo[id(models)] = list(
                modelchecks.check_workload(workload, models, source, now, store)
            )
        found.extend(memo[id(models)])
        # Asked only of a model that passes otherwise: its own findings say what to fix.
        if models.verify_at_startup and at_start.check is not None and not memo[id(models)]:
            key = id(modelchecks.check_startup)
            if key not in memo:
                memo[key] = list(
                    modelchecks.check_startup(workload, source, at_start.check, at_start.genuine)
                )
            found.extend(memo[key])
    return found


def _patches(
    workload: workloads.Workload,
    governing: tuple[compiling.CompiledPolicy, ...],
    source: facts.FactSource,
) -> tuple[dict[str, Any], ...]:
    patches: dict[str, dict[str, Any]] = {}
    for policy in governing:
        if policy.images is None or not policy.images.mutate_to_digest:
            continue
        for container in workload.containers:
            patch = imagechecks.digest_patch(
                container, source.image(container.image, policy.images.key)
            )
            if patch is not None:
                patches.setdefault(patch["path"], patch)
    return tuple(patches.values())


def evaluate_workload(
    workload: workloads.Workload,
    policy_set: compiling.PolicySet,
    namespace_labels: Mapping[str, str],
    source: facts.FactSource,
    now: datetime.datetime,
) -> decisions.Decision:
    """Decide on a parsed workload. Violations of Enforce policies deny; Audit ones warn."""
    governing = governing_policies(workload, policy_set, namespace_labels)
    return decide(workload, governing, source, now)


def decide(
    workload: workloads.Workload,
    governing: tuple[compiling.CompiledPolicy, ...],
    source: facts.FactSource,
    now: datetime.datetime,
    *,
    startup: modelchecks.StartupCheck | None = None,
    store: s3endpoints.ModelStore = s3endpoints.DEFAULT,
) -> decisions.Decision:
    """Decide on a parsed workload given the policies that govern it.

    ``startup`` says how the init container of ``models.verifyAtStartup`` is judged
    (``modelchecks.StartupCheck``; the webhook and the operator pass one); without it
    (``modelshield test``, judging manifests before injection) that container is a
    container like any other and no Pod is asked to carry it. ``store``: the S3 server
    the operator fetches ModelArtifacts from (``--s3-endpoint``), the only one a storage
    initializer may download them from.
    """
    if not governing:
        return decisions.ALLOWED_UNGOVERNED
    violations: list[decisions.Violation] = []
    warnings: list[decisions.Violation] = []
    memo: dict[int, list[imagechecks.Finding]] = {}
    at_start = _Startup(startup, modelchecks.startup_containers(workload, source, startup))
    for policy in governing:
        bucket = violations if policy.enforcement is Enforcement.ENFORCE else warnings
        findings = _policy_findings(workload, policy, source, now, memo, at_start, store)
        for code, path, message in findings:
            bucket.append(
                decisions.Violation(
                    code=code,
                    path=path,
                    message=message,
                    policy=policy.ref,
                    enforcement=policy.enforcement,
                )
            )
    return decisions.Decision(
        allowed=not violations,
        violations=tuple(violations),
        warnings=tuple(warnings),
        patches=_patches(workload, governing, source),
        governed_by=tuple(policy.ref for policy in governing),
    )


def evaluate(
    obj: Any,
    policy_set: compiling.PolicySet,
    namespace_labels: Mapping[str, str],
    source: facts.FactSource,
    now: datetime.datetime,
    *,
    namespace: str | None = None,
    startup: modelchecks.StartupCheck | None = modelchecks.BEFORE_ADMISSION,
    store: s3endpoints.ModelStore = s3endpoints.DEFAULT,
) -> decisions.Decision:
    """Decide on one Kubernetes object given as a dict; never raises on malformed input.

    ``namespace`` overrides the object's own (an AdmissionReview names it in the request
    when the object leaves it empty). ``startup``: by default the object is a manifest as
    written, before the mutating webhook (what ``modelshield test`` checks).
    """
    header = workloads.read_header(obj)
    effective_namespace = header.namespace if namespace is None else namespace
    # Most objects are governed by nothing: decide that from the header alone, before
    # reading containers, so that they are admitted at the cost of a few dict lookups.
    if header.kind not in workloads.SUPPORTED_KINDS:
        return decisions.ALLOWED_UNGOVERNED
    if header.kind in workloads.CLUSTER_SCOPED_KINDS:
        governing = policy_set.governing_cluster_wide(header.label_sets)
    elif not policy_set.could_govern(effective_namespace):
        return decisions.ALLOWED_UNGOVERNED
    else:
        governing = policy_set.governing_any(
            effective_namespace, header.label_sets, namespace_labels
        )
    if not governing:
        return decisions.ALLOWED_UNGOVERNED
    workload = workloads.complete(header, effective_namespace)
    return decide(workload, governing, source, now, startup=startup, store=store)
